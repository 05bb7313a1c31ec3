"""The frontend's own suite (tsc + Vitest) and its per-stage build through `make frontend STAGE=...`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.config import hermetic_environment
from tools.requirements import PROJECT_ROOT

FRONTEND = PROJECT_ROOT / "frontend"
INSTALLED = FRONTEND / "node_modules" / ".canvalo-installed"
BIN = Path(sys.executable).parent


def run(
    command: list[str], *, cwd: Path = PROJECT_ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module", autouse=True)
def _installed() -> None:
    if not INSTALLED.exists():
        pytest.fail("frontend/node_modules is not installed: run `make frontend-deps` (make test does it first)")


def make_frontend(stage: str, dist: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    # -o: never reinstall Python or npm packages from inside a test, whatever their timestamps say.
    return run(
        ["make", "--no-print-directory", "-o", str(PROJECT_ROOT / ".venv" / ".synced"), "-o", str(INSTALLED),
         "frontend", f"STAGE={stage}", f"FRONTEND_DIST={dist}"],
        env=hermetic_environment({**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **environ}),
    )  # fmt: skip


def bundle(dist: Path) -> str:
    scripts = list((dist / "assets").glob("index-*.js"))
    assert len(scripts) == 1, scripts
    return scripts[0].read_text()


@pytest.mark.req("R10.2")
def test_typescript_is_strict_clean_and_the_vitest_suite_passes() -> None:
    typecheck = run([str(BIN / "npx"), "tsc", "--noEmit", "-p", "."], cwd=FRONTEND)
    assert typecheck.returncode == 0, typecheck.stdout[-4000:]
    vitest = run([str(BIN / "npx"), "vitest", "run", "--reporter=dot"], cwd=FRONTEND)
    assert vitest.returncode == 0, vitest.stdout[-6000:] + vitest.stderr[-2000:]
    assert " passed" in vitest.stdout and " failed" not in vitest.stdout


@pytest.mark.req("R3.5", "R8.1", "R8.3")
def test_the_prod_build_calls_the_api_domain_from_the_stage_config(tmp_path: Path) -> None:
    result = make_frontend("prod", tmp_path / "dist-prod", CANVALO_PROD_DOMAIN_NAME="canvalo.example.org")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "VITE_API_URL='https://api.canvalo.example.org'" in result.stdout
    code = bundle(tmp_path / "dist-prod")
    assert "https://api.canvalo.example.org" in code
    assert '"prod"' in code or "`prod`" in code
    assert (tmp_path / "dist-prod" / "index.html").read_text().count("/assets/index-") == 2


@pytest.mark.req("R3.5", "R8.1", "R8.2")
@pytest.mark.parametrize("stage", ["beta", "gamma"])
def test_beta_and_gamma_builds_call_the_api_on_their_own_origin(tmp_path: Path, stage: str) -> None:
    result = make_frontend(stage, tmp_path / f"dist-{stage}")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "VITE_API_URL=''" in result.stdout
    code = bundle(tmp_path / f"dist-{stage}")
    # Same origin: the bundle calls /api/* on the page's host, which CloudFront sends to the stage's ALB.
    assert "VITE_API_URL:``" in code or 'VITE_API_URL:""' in code
    assert "api.canvalo" not in code
    assert f'"{stage}"' in code or f"`{stage}`" in code


@pytest.mark.req("R3.5")
@pytest.mark.parametrize(
    ("stage", "message"),
    [("qa", "error: unknown stage 'qa': the stages are beta, gamma, prod"), ("", "error: make frontend needs STAGE=")],
)
def test_a_build_for_an_unknown_stage_is_refused_with_one_line(tmp_path: Path, stage: str, message: str) -> None:
    result = make_frontend(stage, tmp_path / "dist")
    assert result.returncode != 0
    assert result.stderr.splitlines()[0].startswith(message), result.stderr
    assert not (tmp_path / "dist").exists()
