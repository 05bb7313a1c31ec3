"""CORS (the app side of R8.6): exactly the configured frontend origins, nothing else."""

from __future__ import annotations

import pytest

from tests.app.conftest import client_for

FRONTEND = "https://d1234abcd.cloudfront.net"


@pytest.mark.req("R8.6")
def test_the_configured_origin_may_call_the_api_with_a_token() -> None:
    client = client_for(environment="development", cors_origins=[FRONTEND, "https://app.example.com"])

    preflight = client.options(
        "/api/v1/me",
        headers={
            "Origin": FRONTEND,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    simple = client.get("/api/health", headers={"Origin": FRONTEND})

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == FRONTEND
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert simple.headers["access-control-allow-origin"] == FRONTEND
    assert "access-control-allow-credentials" not in simple.headers


@pytest.mark.req("R8.6")
@pytest.mark.parametrize(
    "origin",
    ["https://evil.example.com", "http://d1234abcd.cloudfront.net", "https://d1234abcd.cloudfront.net.evil.io"],
)
def test_any_other_origin_is_refused(origin: str) -> None:
    client = client_for(environment="development", cors_origins=[FRONTEND])

    preflight = client.options("/api/v1/me", headers={"Origin": origin, "Access-Control-Request-Method": "GET"})
    simple = client.get("/api/health", headers={"Origin": origin})

    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in simple.headers


@pytest.mark.req("R8.6")
def test_no_configured_origin_means_no_cross_origin_access() -> None:
    client = client_for(environment="development")

    response = client.get("/api/health", headers={"Origin": FRONTEND})

    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
