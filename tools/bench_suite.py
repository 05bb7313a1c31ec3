"""`make bench` section: the wall time of the whole test suite, warm (what `make test` runs after `make env`)."""

from __future__ import annotations

import sys

from tools.timed_run import timed_section

BUDGET_SECONDS = 180.0


def measure() -> str:
    return timed_section(
        title="Test suite: `make test`, warm",
        command=[sys.executable, "-m", "pytest", "-q", "-n", "2"],
        budget_seconds=BUDGET_SECONDS,
        budget_text=(
            f"<= {BUDGET_SECONDS:.0f} s end to end on the 2-core machine (pytest with 2 workers, which includes "
            "ruff, mypy --strict, checkov, Vitest and the browser tests)."
        ),
    )
