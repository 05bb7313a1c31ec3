"""`make bench` section: the wall time of `make rehearse`, every scenario, and its closing line."""

from __future__ import annotations

import sys

from tools.timed_run import timed_section

BUDGET_SECONDS = 600.0


def measure() -> str:
    return timed_section(
        title="Rehearsal: `make rehearse`, every scenario",
        command=[sys.executable, "-m", "tools.rehearse"],
        budget_seconds=BUDGET_SECONDS,
        budget_text=f"<= {BUDGET_SECONDS / 60:.0f} minutes on the 2-core machine.",
    )
