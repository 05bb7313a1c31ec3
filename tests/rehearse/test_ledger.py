"""The fidelity ledger names every stand-in the rehearsal runs, and the rehearsal prints it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.rehearse.__main__ import ledger_rows, print_ledger, rehearsal_stand_ins
from tools.rehearse.codebuild import toolkit_environment_stand_ins


@pytest.mark.req("R4.1")
def test_every_stand_in_of_the_rehearsal_has_a_row_in_the_ledger(tmp_path: Path) -> None:
    rows = ledger_rows()
    assert rows and all(len(row) == 4 and all(row) for row in rows)
    named = " ".join(row[0] for row in rows)
    stand_ins = [*rehearsal_stand_ins(tmp_path / "world.json"), *toolkit_environment_stand_ins(tmp_path, "0" * 64)]
    missing = [s.command_starts for s in stand_ins if f"`{s.command_starts}`" not in named]
    # The build image's tools and the engine are stand-ins too, launched rather than substituted.
    missing += [tool for tool in ("`docker`", "`curl`", "`tools/rehearse/terraform.py`") if tool not in named]
    assert missing == []


@pytest.mark.req("R4.1")
def test_the_rehearsal_prints_each_stand_in_with_its_real_check(capsys: pytest.CaptureFixture[str]) -> None:
    print_ledger()
    printed = capsys.readouterr().out
    for stand_in, _, _, real_check in ledger_rows():
        assert f"- {stand_in}\n  real check: {real_check}" in printed
