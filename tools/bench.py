"""`make bench`: measure the project's performance budgets and write them as Markdown tables.

This file measures synth (cold and warm, time and peak memory); every other `tools/bench_*.py`
module contributes a section through its `measure() -> str`. A benchmark reports, it never fails a
build: compare the numbers with the budgets in each table.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tools.requirements import PROJECT_ROOT

SYNTH_BUDGET_SECONDS = 5.0
SYNTH_BUDGET_RSS_MB = 1200.0
PAGE_KB = os.sysconf("SC_PAGE_SIZE") / 1024


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_mb: float


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def _tree_rss_mb(root: int) -> float:
    total_pages = 0
    for pid in _descendants(root):
        try:
            total_pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError):
            continue
    return total_pages * PAGE_KB / 1024


def measure_command(command: list[str], environ: dict[str, str]) -> Run:
    """Wall time and the peak summed RSS of the process and its children (Python plus jsii's Node.js)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_mb(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate(timeout=300)
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {stderr.decode()[-2000:]}")
    return Run(elapsed, peak)


def synth_section(runs: int) -> str:
    environ = {**os.environ, "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}
    command = [sys.executable, "-O", "main.py"]
    with tempfile.TemporaryDirectory() as outdir:
        environ["CDKTF_OUTDIR"] = outdir
        cold: list[Run] = []
        for _ in range(max(1, runs // 2)):
            with tempfile.TemporaryDirectory() as empty_cache:
                cold.append(measure_command(command, {**environ, "JSII_RUNTIME_PACKAGE_CACHE_ROOT": empty_cache}))
        measure_command(command, environ)  # fill the default jsii package cache
        warm = [measure_command(command, environ) for _ in range(runs)]
        stacks = len(list(Path(outdir, "stacks").glob("*/cdk.tf.json")))

    def row(name: str, results: list[Run]) -> str:
        seconds = statistics.median(r.seconds for r in results)
        rss = max(r.peak_rss_mb for r in results)
        verdict = "ok" if seconds <= SYNTH_BUDGET_SECONDS and rss <= SYNTH_BUDGET_RSS_MB else "OVER BUDGET"
        return f"| {name} | {len(results)} | {seconds:.2f} s | {rss:.0f} MB | {verdict if name == 'warm' else '-'} |"

    return "\n".join(
        [
            f"## Synth: `python -O main.py`, all {stacks} stacks in one process",
            "",
            f"Budget (warm): <= {SYNTH_BUDGET_SECONDS:.0f} s and <= {SYNTH_BUDGET_RSS_MB:.0f} MB peak RSS "
            "(Python plus the jsii Node.js process, summed). Cold: jsii's package cache emptied.",
            "",
            "| run | runs | median time | peak RSS | budget |",
            "|---|---|---|---|---|",
            row("cold", cold),
            row("warm", warm),
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="warm runs per measurement (median reported)")
    parser.add_argument("--write", type=Path, help="write the report to this Markdown file")
    parser.add_argument("--only", help="comma-separated sections: synth, or a tools/bench_<name>.py name")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else None
    sections = [f"# Benchmarks\n\nMeasured by `make bench` on {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}."]
    if wanted is None or "synth" in wanted:
        sections.append(synth_section(args.runs))
    for module_path in sorted(Path(__file__).parent.glob("bench_*.py")):
        name = module_path.stem.removeprefix("bench_")
        if wanted is not None and name not in wanted:
            continue
        module = importlib.import_module(f"tools.{module_path.stem}")
        sections.append(module.measure())
    report = "\n\n".join(sections) + "\n"
    print(report)
    if args.write:
        args.write.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
