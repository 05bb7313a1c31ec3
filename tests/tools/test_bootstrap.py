"""`make bootstrap STAGE=...`: apply bootstrap-<stage>, move its state into its bucket, prove the bucket holds it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from pipelines.terraform_stage import Completed, Terraform
from tests.support.config import hermetic_environment
from tools.bootstrap import BootstrapError, Target, bootstrap, main

ACCOUNT, REGION = "222222222222", "eu-west-1"
BUCKET = f"canvalo-tfstate-{ACCOUNT}-{REGION}"


@dataclass
class ScriptedTerraform:
    """Each `plan` answers the next of `plans` (True: changes); every call is recorded as (subcommand, args)."""

    plans: list[bool]
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def __call__(self, args: Sequence[str], cwd: Path, capture: bool) -> Completed:
        self.calls.append(tuple(args))
        if args[0] == "plan":
            return Completed(2 if self.plans.pop(0) else 0)
        return Completed(0)

    def commands(self) -> list[str]:
        return [
            " ".join(a for a in call if a in ("init", "plan", "apply", "-migrate-state", "-force-copy"))
            for call in self.calls
        ]


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.session.Session]:
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
    with mock_aws():
        yield boto3.session.Session(region_name=REGION)


def target(tmp_path: Path) -> Target:
    (tmp_path / "cdktf.out" / "stacks" / "bootstrap-gamma").mkdir(parents=True)
    return Target("gamma", ACCOUNT, REGION, BUCKET, root=tmp_path)


def run(place: Target, session: boto3.session.Session, terraform: ScriptedTerraform, answer: str = "yes") -> list[str]:
    """Bootstraps `place`; returns the bootstrap states it synthesized with, in order."""
    synthesized: list[str] = []

    def synth(state: str, environ: Mapping[str, str]) -> None:
        synthesized.append(state)
        if state == "local" and not place.local_state.exists():
            place.local_state.write_text("{}")

    bootstrap(place, terraform=Terraform(terraform), session=session, environ={}, ask=lambda _: answer, synth=synth)
    return synthesized


@pytest.mark.req("R4.6")
def test_a_first_bootstrap_applies_locally_migrates_into_the_bucket_and_proves_it(
    tmp_path: Path, session: boto3.session.Session
) -> None:
    place, terraform = target(tmp_path), ScriptedTerraform(plans=[True, False])
    assert run(place, session, terraform) == ["local", "s3"]
    assert terraform.commands() == ["init", "plan", "apply", "init -migrate-state -force-copy", "plan"]
    assert not place.local_state.exists() and place.local_state.with_name(place.local_state.name + ".migrated").exists()


@pytest.mark.req("R4.6")
def test_a_migration_whose_plan_is_not_empty_stops_and_keeps_the_local_state(
    tmp_path: Path, session: boto3.session.Session
) -> None:
    place = target(tmp_path)
    with pytest.raises(BootstrapError, match=r"the plan against s3://\S+ is not empty after the migration"):
        run(place, session, ScriptedTerraform(plans=[True, True]))
    assert place.local_state.exists(), "the local state stays where it was until the bucket is proven"


@pytest.mark.req("R4.6")
def test_a_later_run_plans_and_applies_in_the_bucket_without_migrating(
    tmp_path: Path, session: boto3.session.Session
) -> None:
    s3 = session.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket=BUCKET, Key="bootstrap-gamma/terraform.tfstate", Body=b"{}")
    place, terraform = target(tmp_path), ScriptedTerraform(plans=[True])
    assert run(place, session, terraform) == ["s3"]
    assert terraform.commands() == ["init", "plan", "apply"]


@pytest.mark.req("R4.6")
def test_nothing_is_applied_without_a_yes(tmp_path: Path, session: boto3.session.Session) -> None:
    place, terraform = target(tmp_path), ScriptedTerraform(plans=[True])
    with pytest.raises(BootstrapError, match=r"bootstrap-gamma: not applied \(no 'yes'\)"):
        run(place, session, terraform, answer="y")
    assert terraform.commands() == ["init", "plan"]


@pytest.mark.req("R4.6")
def test_credentials_of_another_account_stop_before_any_plan(
    tmp_path: Path, session: boto3.session.Session, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MOTO_ACCOUNT_ID", "999999999999")
    terraform = ScriptedTerraform(plans=[])
    environ = hermetic_environment({"CANVALO_GAMMA_ACCOUNT_ID": ACCOUNT})
    assert main(["--stage", "gamma"], terraform=Terraform(terraform), session=session, environ=environ) == 1
    error = capsys.readouterr().err.strip()
    assert error == (
        f"error: these credentials are for account 999999999999, but bootstrap-gamma belongs to {ACCOUNT}: sign in as "
        f"an administrator of {ACCOUNT} (or fix CANVALO_GAMMA_ACCOUNT_ID)"
    )
    assert terraform.calls == []


def test_an_unknown_stage_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stage", "qa"], environ=hermetic_environment({})) == 2
    assert capsys.readouterr().err.startswith("error: unknown stage 'qa'")
