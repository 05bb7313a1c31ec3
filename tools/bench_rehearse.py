"""`make bench` section: the wall time of `make rehearse`, every scenario, and its closing line."""

from __future__ import annotations

import subprocess
import sys
import time

from tools.requirements import PROJECT_ROOT

BUDGET_SECONDS = 600.0


def measure() -> str:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "tools.rehearse"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    elapsed = time.perf_counter() - started
    lines = result.stdout.strip().splitlines()
    summary = lines[-1] if lines else "no output"
    verdict = "ok" if elapsed <= BUDGET_SECONDS and result.returncode == 0 else "OVER BUDGET or FAILED"
    return "\n".join(
        [
            "## Rehearsal: `make rehearse`, every scenario",
            "",
            f"Budget: <= {BUDGET_SECONDS / 60:.0f} minutes on the 2-core machine.",
            "",
            "| wall time | closing line | budget |",
            "|---|---|---|",
            f"| {elapsed:.0f} s | {summary} | {verdict} |",
        ]
    )
