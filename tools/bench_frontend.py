"""`make bench` section: the gzip size of the frontend's main JavaScript bundle against its budget."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from tools.requirements import PROJECT_ROOT

FRONTEND = PROJECT_ROOT / "frontend"
MAIN_BUNDLE_BUDGET_KB = 150.0
ENTRY_SCRIPT = re.compile(r'<script type="module"[^>]*src="/(assets/[^"]+\.js)"')


def gzip_kb(path: Path) -> float:
    # Level 9 is at least as small as what CloudFront's automatic compression serves.
    return len(gzip.compress(path.read_bytes(), compresslevel=9)) / 1024


def production_build(outdir: Path) -> None:
    bin_dir = Path(sys.executable).parent
    environ = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "VITE_API_URL": "",
        "VITE_STAGE": "bench",
    }
    subprocess.run(
        [str(bin_dir / "npx"), "vite", "build", "--logLevel", "error", "--emptyOutDir", "--outDir", str(outdir)],
        cwd=FRONTEND, env=environ, check=True, capture_output=True, timeout=300,
    )  # fmt: skip


def measure() -> str:
    with tempfile.TemporaryDirectory(prefix="canvalo-bench-frontend-") as directory:
        outdir = Path(directory)
        production_build(outdir)
        entry = ENTRY_SCRIPT.search((outdir / "index.html").read_text())
        if entry is None:
            raise RuntimeError("the build's index.html has no module script: cannot find the main bundle")
        main_bundle = outdir / entry.group(1)
        main_kb = gzip_kb(main_bundle)
        assets = sorted((outdir / "assets").iterdir())
        total_kb = sum(gzip_kb(asset) for asset in assets if asset.suffix in (".js", ".css"))
        raw_kb = main_bundle.stat().st_size / 1024
    verdict = "ok" if main_kb <= MAIN_BUNDLE_BUDGET_KB else "OVER BUDGET"
    return "\n".join(
        [
            "## Frontend: production bundle (`vite build`)",
            "",
            f"Budget: main JavaScript bundle <= {MAIN_BUNDLE_BUDGET_KB:.0f} KB gzip. React 19 and react-dom, no UI "
            "framework, no supabase-js.",
            "",
            "| bundle | raw | gzip | budget |",
            "|---|---|---|---|",
            f"| main (`{entry.group(1)}`) | {raw_kb:.1f} KB | {main_kb:.1f} KB | {verdict} |",
            f"| all JS and CSS ({len(assets)} files) | - | {total_kb:.1f} KB | - |",
        ]
    )


if __name__ == "__main__":
    print(measure())
