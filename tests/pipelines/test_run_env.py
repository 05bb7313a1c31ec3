"""The pipeline's scripts read stage data only from their environment: a missing value is one line naming the
variable and who synthesizes it, and exit 2."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from pipelines import bake, drift, stage_credentials
from tests.support.config import action_environment

Main = Callable[[list[str], Mapping[str, str]], int]
STAGE_VALUES = ["APP_NAME", "GAMMA_REGION", "GAMMA_PLAN_ROLE_ARN", "GAMMA_ALARM_PREFIX"]
COMMANDS: dict[str, tuple[Main, list[str]]] = {
    "stage_credentials": (
        lambda argv, environ: stage_credentials.main(argv, environ=environ),
        ["--stage", "gamma", "--role", "plan", "--arn"],
    ),
    "bake": (
        lambda argv, environ: bake.main(argv, cloudwatch=object(), environ=environ),
        ["--stage", "gamma", "--minutes", "0"],
    ),
    "drift deployed-commit": (
        lambda argv, environ: drift.main(argv, ssm=object(), environ=environ),  # type: ignore[arg-type]
        ["deployed-commit", "--stage", "gamma"],
    ),
    "drift store-applied": (
        lambda argv, environ: drift.main(argv, s3=object(), environ=environ),  # type: ignore[arg-type]
        ["store-applied", "--stage", "gamma", "--stack-json", "cdk.tf.json", "--commit", "0" * 40],
    ),
    "drift": (
        lambda argv, environ: drift.main(
            argv,
            sns=object(),  # type: ignore[arg-type]
            ssm=object(),  # type: ignore[arg-type]
            s3=object(),  # type: ignore[arg-type]
            environ=environ,
        ),
        ["--stage", "gamma", "--topic-arn", "arn:aws:sns:eu-west-1:111111111111:topic"],
    ),
}
# What every command reads of the stage it works in; the drift check and the Apply's store of what it applied
# also read the artifact bucket.
MISSING = [
    *((command, missing) for command in COMMANDS for missing in STAGE_VALUES),
    ("drift store-applied", "ARTIFACT_BUCKET"),
    ("drift", "ARTIFACT_BUCKET"),
]


@pytest.mark.parametrize(("command", "missing"), MISSING)
def test_a_missing_value_names_the_variable_and_the_pipeline_stack_that_synthesizes_it(
    capsys: pytest.CaptureFixture[str], command: str, missing: str, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    run, argv = COMMANDS[command]
    environ = {name: value for name, value in action_environment().items() if name != missing}
    assert run(argv, environ) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {missing} is not set: the pipeline stack synthesizes it"), line
    assert "cdktn deploy pipeline" in line


@pytest.mark.parametrize("command", list(COMMANDS))
def test_none_of_them_reads_the_configuration(
    capsys: pytest.CaptureFixture[str], command: str, tmp_path: Path, monkeypatch: Any
) -> None:
    """`CANVALO_*` settings and cdktf.json are the synth's: an empty environment is refused, not filled from them."""
    monkeypatch.chdir(tmp_path)
    run, argv = COMMANDS[command]
    assert run(argv, {"CANVALO_GAMMA_ACCOUNT_ID": "444444444444"}) == 2
    assert "is not set: the pipeline stack synthesizes it" in capsys.readouterr().err
