"""R1.1 without a container engine: the Dockerfile's contract, and the app group alone runs the service.

Building the image itself (`make image`: debootstrap + buildah) takes minutes, so it is not part of
`make test`; docs/backend.md records what that build proved.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.servers import backend_process

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "app" / "Dockerfile").read_text()
INSTRUCTIONS = [
    line.strip()
    for line in re.sub(r"\\\n\s*", " ", DOCKERFILE).splitlines()
    if line.strip() and not line.startswith("#")
]


def instructions(keyword: str) -> list[str]:
    return [line for line in INSTRUCTIONS if line.split(maxsplit=1)[0] == keyword]


@pytest.mark.req("R1.1")
def test_the_image_installs_exactly_the_locked_app_group() -> None:
    assert instructions("FROM") == ["FROM ${BASE_IMAGE} AS build", "FROM ${BASE_IMAGE} AS runtime"]
    assert any(line.startswith("ARG BASE_IMAGE=") for line in INSTRUCTIONS)
    assert "COPY pyproject.toml uv.lock ./" in INSTRUCTIONS
    sync = [line for line in instructions("RUN") if " sync " in line]
    assert len(sync) == 1
    assert all(flag in sync[0] for flag in ("--frozen", "--no-default-groups", "--group app"))
    assert "COPY --from=build /opt/venv /opt/venv" in INSTRUCTIONS


@pytest.mark.req("R1.5", "R1.2", "R1.4")
def test_the_image_runs_unprivileged_with_an_exec_form_command_and_a_curl_free_healthcheck() -> None:
    (user,) = instructions("USER")
    assert not user.split()[1].startswith(("0", "root"))
    # Exec form: the JSON array is the whole command, so SIGTERM reaches Python, not a shell.
    (command,) = instructions("CMD")
    assert json.loads(command.removeprefix("CMD ")) == ["python", "-m", "app"]
    (healthcheck,) = instructions("HEALTHCHECK")
    probe = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert probe[0] == "python"
    assert "/health" in probe[-1]
    assert "curl" not in healthcheck
    assert "PORT=8000" in " ".join(instructions("ENV"))
    assert "EXPOSE 8000" in INSTRUCTIONS


@pytest.mark.req("R1.1")
def test_the_build_context_holds_only_what_the_image_needs() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[1] == "*"
    assert {"!pyproject.toml", "!uv.lock", "!app/"} <= set(ignored)


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


@pytest.mark.req("R1.1", "R1.4")
def test_the_app_group_alone_is_enough_to_serve(tmp_path: Path) -> None:
    """The same `uv sync` as the Dockerfile, into a fresh venv: the service runs from it, without any dev package."""
    venv = tmp_path / "venv"
    sync = subprocess.run(
        [*_uv(), "sync", "--frozen", "--no-default-groups", "--group", "app", "--no-install-project", "--quiet"],
        cwd=ROOT,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert sync.returncode == 0, sync.stderr[-3000:]
    python = str(venv / "bin" / "python")
    absent = subprocess.run(
        [
            python,
            "-c",
            "import importlib.util as u; print([m for m in ('pytest', 'moto', 'cdktn', 'checkov') if u.find_spec(m)])",
        ],
        cwd=tmp_path,  # not the repository, whose checkov/ folder would import as a namespace package
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert absent.stdout.strip() == "[]"

    with backend_process(python=python) as backend:
        response = httpx.get(f"{backend.base_url}/health", timeout=5)

    assert response.json() == {"status": "ok", "version": "unreleased"}
