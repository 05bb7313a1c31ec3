"""A `make bench` section that times one command end to end and reports its closing line against a budget."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence

from tools.requirements import PROJECT_ROOT


def timed_section(*, title: str, command: Sequence[str], budget_seconds: float, budget_text: str) -> str:
    started = time.perf_counter()
    result = subprocess.run(list(command), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=3600, check=False)
    elapsed = time.perf_counter() - started
    lines = result.stdout.strip().splitlines()
    summary = lines[-1] if lines else "no output"
    verdict = "ok" if elapsed <= budget_seconds and result.returncode == 0 else "OVER BUDGET or FAILED"
    return "\n".join(
        [
            f"## {title}",
            "",
            f"Budget: {budget_text}",
            "",
            "| wall time | closing line | budget |",
            "|---|---|---|",
            f"| {elapsed:.0f} s | {summary} | {verdict} |",
        ]
    )
