"""The rehearsal's fake `terraform init -lockfile=readonly` refuses what Terraform refuses: a directory without
the dependency lock, or a lock of another provider version; with the right lock it initializes and leaves the
lock as it was (the pipeline copies the committed pipelines/terraform.lock.hcl in before every init)."""

from __future__ import annotations

import pytest

from tests.rehearse.conftest import Rehearsal
from tests.rehearse.test_fake_terraform import admin, assert_ok, assert_refused, config

# A lock in Terraform's own format, as `terraform providers lock` writes it (the hashes are not checked here).
LOCK = """# This file is maintained automatically by "terraform init".
provider "registry.terraform.io/hashicorp/aws" {
  version     = "6.0.0"
  constraints = "6.0.0"
  hashes = [
    "zh:0000000000000000000000000000000000000000000000000000000000000000",
  ]
}
"""


@pytest.mark.req("R4.6")
def test_init_with_a_read_only_lock_needs_the_lock_of_the_required_version(rehearsal: Rehearsal) -> None:
    caller = admin(rehearsal.account("beta"))
    stack = rehearsal.stack("app", config())
    lock = stack / ".terraform.lock.hcl"
    assert_refused(
        rehearsal.run(stack, "init", "-lockfile=readonly", caller=caller), "Provider dependency changes detected"
    )
    lock.write_text(LOCK.replace('"6.0.0"', '"5.99.0"'))
    assert_refused(
        rehearsal.run(stack, "init", "-lockfile=readonly", caller=caller),
        "locked provider registry.terraform.io/hashicorp/aws 5.99.0 does not match configured version constraint 6.0.0",
    )
    lock.write_text(LOCK)
    assert_ok(rehearsal.run(stack, "init", "-lockfile=readonly", caller=caller))
    assert lock.read_text() == LOCK, "a read-only lock is never rewritten"
