"""`python -m tools.run_env`: a laptop gets the environment the pipeline stack gives its actions."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.stage_credentials import main as stage_credentials
from tests.support.config import action_environment, hermetic_environment
from tools.run_env import main


def test_it_exports_what_the_pipeline_stack_synthesizes_and_the_scripts_then_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main([], hermetic_environment({})) == 0
    exported = dict(line.removeprefix("export ").split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert exported == action_environment()
    argv = ["--stage", "gamma", "--role", "deploy", "--arn", "--config-file", str(tmp_path / "c")]
    assert stage_credentials(argv, environ=exported) == 0
    assert capsys.readouterr().out == "arn:aws:iam::222222222222:role/canvalo/canvalo-deploy\n"


def test_a_bad_configuration_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], hermetic_environment({"CANVALO_GAMMA_ACCOUNT_ID": "12"})) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: stage gamma: account_id='12' is invalid")
