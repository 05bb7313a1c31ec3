"""`make bench` section: the wall time of the whole test suite, warm (what `make test` runs after `make env`)."""

from __future__ import annotations

import subprocess
import sys
import time

from tools.requirements import PROJECT_ROOT

BUDGET_SECONDS = 180.0


def measure() -> str:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "2"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    elapsed = time.perf_counter() - started
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "no output"
    verdict = "ok" if elapsed <= BUDGET_SECONDS and result.returncode == 0 else "OVER BUDGET or FAILED"
    return "\n".join(
        [
            "## Test suite: `make test`, warm",
            "",
            f"Budget: <= {BUDGET_SECONDS:.0f} s end to end on the 2-core machine (pytest with 2 workers, which "
            "includes ruff, mypy --strict, checkov, Vitest and the browser tests).",
            "",
            "| wall time | result | budget |",
            "|---|---|---|",
            f"| {elapsed:.0f} s | {summary} | {verdict} |",
        ]
    )
