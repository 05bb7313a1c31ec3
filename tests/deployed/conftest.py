"""The deployed-environment tests take their stage from the environment, or start a local one.

Against a deployed stage (`make deployed-test`, the pipeline's post-deploy actions):
    BACKEND_URL   the backend's base URL (the ALB, or https://api.<domain> in prod)
    FRONTEND_URL  the frontend's URL (CloudFront)
    API_URL       the API base the frontend's pages call; default FRONTEND_URL (same origin, `/api/*`)
    EXPECT_AUTH   true where the API must refuse unauthenticated calls (every deployed stage)
    EXPECT_VERSION the release /health must report (the commit the pipeline deploys); empty: not checked
Without BACKEND_URL (`make test`), the same tests run against `local_stage`: the real backend and the
frontend published by the pipeline's uploader, on 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deployed.local_stage import Target, local_stage


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "smoke: a health check, run after every deploy (SUITE=smoke)")


def target_from_environment() -> Target | None:
    backend_url = os.environ.get("BACKEND_URL", "").rstrip("/")
    frontend_url = os.environ.get("FRONTEND_URL", "").rstrip("/")
    if not backend_url and not frontend_url:
        return None
    if not (backend_url and frontend_url):
        raise pytest.UsageError("set both BACKEND_URL and FRONTEND_URL (or neither, to test a local stage)")
    return Target(
        backend_url=backend_url,
        frontend_url=frontend_url,
        api_url=os.environ.get("API_URL", "").rstrip("/") or frontend_url,
        expect_auth=os.environ.get("EXPECT_AUTH", "").lower() == "true",
        expect_version=os.environ.get("EXPECT_VERSION", ""),
    )


@pytest.fixture(scope="session")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    configured = target_from_environment()
    if configured:
        yield configured
        return
    scratch: Path = tmp_path_factory.mktemp("frontend-build")
    with local_stage(scratch) as local:
        yield local
