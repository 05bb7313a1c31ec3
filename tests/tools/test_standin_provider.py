"""Bad input to `python -m tools.standin_provider`: one line naming what was wrong and what to do, non-zero."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.standin_provider.__main__ import main


def test_a_stack_with_a_type_of_another_provider_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = tmp_path / "cdk.tf.json"
    stack.write_text(json.dumps({"resource": {"google_storage_bucket": {"site": {"name": "x"}}}}))
    assert main(["build", str(tmp_path / "plugins"), str(stack)]) == 1
    error = capsys.readouterr().err
    assert error == (
        "cannot derive the provider schema: google_storage_bucket is not an AWS provider type"
        " (it does not start with aws_)\n"
    )
    assert not (tmp_path / "plugins").exists()


def test_an_unknown_command_prints_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve"]) == 2
    assert capsys.readouterr().err.startswith("usage: python -m tools.standin_provider serve <schema.json>")
