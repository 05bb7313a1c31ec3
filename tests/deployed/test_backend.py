"""The deployed backend: healthy in time, reachable where the frontend calls it, CORS and auth as configured."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.deployed.local_stage import Target

HEALTH_DEADLINE_SECONDS = 5.0
FOREIGN_ORIGIN = "https://attacker.example"


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.mark.smoke
@pytest.mark.req("R1.4", "R10.5", "R10.6", "R10.7")
def test_the_backend_answers_its_health_check_with_200_within_5_seconds(target: Target) -> None:
    started = time.monotonic()
    response = httpx.get(f"{target.backend_url}/health", timeout=HEALTH_DEADLINE_SECONDS)
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"
    assert elapsed < HEALTH_DEADLINE_SECONDS


@pytest.mark.smoke
@pytest.mark.req("R10.5", "R10.6", "R10.7")
def test_the_backend_runs_the_release_just_deployed(target: Target) -> None:
    if not target.expect_version:
        pytest.skip("EXPECT_VERSION is not set: the release is not checked")
    # Through the ALB and through CloudFront: a rolled-back service would answer with the previous release.
    for url in (f"{target.backend_url}/health", f"{target.api_url}/api/health"):
        version = httpx.get(url, timeout=HEALTH_DEADLINE_SECONDS).json().get("version")
        assert version == target.expect_version, f"{url} runs release {version!r}, not {target.expect_version!r}"


@pytest.mark.smoke
@pytest.mark.req("R10.5", "R10.6", "R10.7")
def test_the_api_answers_where_the_frontends_pages_call_it(target: Target) -> None:
    response = httpx.get(f"{target.api_url}/api/health", timeout=HEALTH_DEADLINE_SECONDS)
    assert response.status_code == 200, f"{target.api_url}/api/health: {response.status_code} {response.text[:200]}"
    assert response.json()["status"] == "ok"
    assert response.headers["content-type"].startswith("application/json")


@pytest.mark.req("R8.6", "R10.5")
def test_the_api_allows_the_frontends_origin_and_no_other(target: Target) -> None:
    frontend_origin = origin(target.frontend_url)
    if origin(target.api_url) == frontend_origin:
        pytest.skip("the pages call the API on their own origin: browsers send no CORS request")
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    allowed = httpx.options(f"{target.api_url}/api/v1/me", headers={"Origin": frontend_origin, **preflight}, timeout=10)
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers.get("access-control-allow-origin") == frontend_origin
    assert "authorization" in allowed.headers.get("access-control-allow-headers", "").lower()
    refused = httpx.options(f"{target.api_url}/api/v1/me", headers={"Origin": FOREIGN_ORIGIN, **preflight}, timeout=10)
    assert "access-control-allow-origin" not in refused.headers
    simple = httpx.get(f"{target.api_url}/api/health", headers={"Origin": FOREIGN_ORIGIN}, timeout=10)
    assert simple.headers.get("access-control-allow-origin") not in (FOREIGN_ORIGIN, "*")


@pytest.mark.req("R7.4", "R10.5")
def test_outside_development_the_api_refuses_calls_without_a_valid_token(target: Target) -> None:
    if not target.expect_auth:
        pytest.skip("EXPECT_AUTH is not true: this stage may run without auth (development)")
    anonymous = httpx.get(f"{target.api_url}/api/v1/me", timeout=10)
    assert anonymous.status_code == 401, anonymous.text
    forged = httpx.get(f"{target.api_url}/api/v1/me", headers={"Authorization": "Bearer not.a.jwt"}, timeout=10)
    assert forged.status_code == 401, forged.text
