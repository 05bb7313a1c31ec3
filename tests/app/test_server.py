"""The backend for real: `python -m app` under uvicorn in a subprocess on 127.0.0.1 (R1.2-R1.5, R9.5)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from tests.support.servers import LOOPBACK, Backend, backend_environment, backend_process, free_port

SERVICE_KEY = "sentinel-service-key-77d1"


def log_lines(backend: Backend) -> list[dict[str, Any]]:
    return [json.loads(line) for line in backend.output().splitlines() if line.strip()]


def wait_for_log(backend: Backend, message: str, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(entry["message"] == message for entry in log_lines(backend)) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} {message!r} log lines after {timeout} s:\n{backend.output()}")


@pytest.mark.req("R1.4", "R1.2")
def test_health_answers_within_5_seconds_even_when_supabase_is_down() -> None:
    unreachable_supabase = f"https://{LOOPBACK}:{free_port()}"
    environment = {"ENVIRONMENT": "prod", "SUPABASE_URL": unreachable_supabase, "APP_VERSION": "0f3c2a1"}
    with backend_process(environment) as backend:
        started = time.monotonic()
        response = httpx.get(f"{backend.base_url}/health", timeout=5)
        elapsed = time.monotonic() - started
        api_health = httpx.get(f"{backend.base_url}/api/health", timeout=5)

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": "0f3c2a1"}, "the release this process runs"
    assert elapsed < 5
    assert api_health.json() == {"status": "ok", "version": "0f3c2a1", "environment": "prod"}


@pytest.mark.req("R9.5", "R9.3", "R1.3")
def test_startup_logs_the_environment_source_once_and_no_value() -> None:
    env = {
        "ENVIRONMENT": "beta",
        "SUPABASE_URL": f"https://{LOOPBACK}:{free_port()}",
        "SUPABASE_SERVICE_KEY": SERVICE_KEY,
        "BEDROCK_MODEL_ID": "anthropic.model-under-test",
    }
    with backend_process(env) as backend:
        response = httpx.get(f"{backend.base_url}/api/health", headers={"X-Request-ID": "trace-123"}, timeout=5)
        wait_for_log(backend, "request", 1)
        entries = log_lines(backend)

    source_lines = [entry for entry in entries if entry["message"].startswith("configuration loaded from")]
    assert [entry["message"] for entry in source_lines] == ["configuration loaded from environment variables"]
    assert source_lines[0]["environment"] == "beta"
    assert SERVICE_KEY not in json.dumps(entries)
    assert response.headers["x-request-id"] == "trace-123"
    access = [entry for entry in entries if entry["message"] == "request"]
    assert access[0] | {"duration_ms": 0, "time": ""} == {
        "time": "",
        "level": "INFO",
        "logger": "canvalo.access",
        "message": "request",
        "request_id": "trace-123",
        "method": "GET",
        "path": "/api/health",
        "status": 200,
        "duration_ms": 0,
    }


@pytest.mark.req("R1.5")
def test_sigterm_lets_every_in_flight_request_finish_and_exits_within_the_graceful_timeout() -> None:
    in_flight, request_seconds, graceful_seconds = 8, 1.5, 5
    env = {"ENABLE_TEST_ROUTES": "true", "GRACEFUL_SHUTDOWN_SECONDS": str(graceful_seconds)}
    with backend_process(env) as backend, ThreadPoolExecutor(max_workers=in_flight) as pool:
        slow_url = f"{backend.base_url}/api/_test/slow?seconds={request_seconds}"
        responses = [pool.submit(httpx.get, slow_url, timeout=30) for _ in range(in_flight)]
        wait_for_log(backend, "slow request started", in_flight)

        backend.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        refused = _new_connections_are_refused(backend.base_url)
        exit_code = backend.process.wait(timeout=graceful_seconds + 5)
        exit_seconds = time.monotonic() - signalled
        statuses = [future.result().status_code for future in responses]

    assert statuses == [200] * in_flight
    assert refused, "the server still accepted connections after SIGTERM"
    # uvicorn re-raises the SIGTERM it caught once it has drained, so the parent sees the signal.
    assert exit_code in {0, -signal.SIGTERM}
    assert exit_seconds < graceful_seconds


@pytest.mark.req("R1.5")
def test_a_request_longer_than_the_graceful_timeout_does_not_hold_the_exit() -> None:
    env = {"ENABLE_TEST_ROUTES": "true", "GRACEFUL_SHUTDOWN_SECONDS": "1"}
    with backend_process(env) as backend, ThreadPoolExecutor(max_workers=1) as pool:
        stuck = pool.submit(httpx.get, f"{backend.base_url}/api/_test/slow?seconds=8", timeout=30)
        wait_for_log(backend, "slow request started", 1)

        backend.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        backend.process.wait(timeout=6)
        exit_seconds = time.monotonic() - signalled
        cut_off = stuck.result()

    # uvicorn cancels what is still running at the timeout and answers it with a 500.
    assert cut_off.status_code == 500
    assert exit_seconds < 4, "the process waited for the stuck request instead of the 1 s graceful timeout"


def _new_connections_are_refused(base_url: str, within: float = 2.0) -> bool:
    port = int(base_url.rsplit(":", 1)[1])
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.2):
                pass
        except OSError:
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _secret_env(moto_endpoint: str, name: str) -> dict[str, str]:
    return {
        "ENVIRONMENT": "beta",
        "AWS_SECRETS_NAME": name,
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_endpoint,
    }


@pytest.mark.req("R9.2", "R9.5", "R9.1")
def test_a_server_configured_from_secrets_manager_names_the_secret_and_no_value(moto_endpoint: str) -> None:
    client = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=moto_endpoint)
    values = {
        "SUPABASE_URL": f"https://{LOOPBACK}:{free_port()}",
        "SUPABASE_SERVICE_KEY": SERVICE_KEY,
        "SUPABASE_PUB_KEY": "sentinel-pub-key-0c3e",
    }
    client.create_secret(Name="canvalo/beta/server-test", SecretString=json.dumps(values))

    with backend_process(_secret_env(moto_endpoint, "canvalo/beta/server-test")) as backend:
        me = httpx.get(f"{backend.base_url}/api/v1/me", timeout=5)
        output = backend.output()

    assert "configuration loaded from AWS Secrets Manager secret 'canvalo/beta/server-test'" in output
    assert SERVICE_KEY not in output
    assert "sentinel-pub-key-0c3e" not in output
    # Auth is on: the secret's SUPABASE_URL made this a beta server that needs a user.
    assert me.status_code == 401


def refused_start(environ: dict[str, str], cwd: Path, command: list[str] | None = None) -> str:
    """Start the backend as a real process that must refuse: exit 2 and one CRITICAL JSON line; returns its message."""
    result = subprocess.run(
        command or [sys.executable, "-m", "app"],
        cwd=cwd,  # an empty directory: no developer's .env
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    lines = (result.stdout + result.stderr).splitlines()
    assert result.returncode == 2, lines
    assert len(lines) == 1, lines
    entry = json.loads(lines[0])
    assert entry["level"] == "CRITICAL"
    message: str = entry["message"]
    return message


@pytest.mark.req("R9.2")
def test_a_missing_secret_exits_non_zero_with_one_line(moto_endpoint: str, tmp_path: Path) -> None:
    environ = backend_environment(_secret_env(moto_endpoint, "canvalo/beta/missing"), free_port())

    message = refused_start(environ, tmp_path)

    assert message.startswith("configuration error: Secrets Manager secret 'canvalo/beta/missing' does not exist")


@pytest.mark.req("R5.1", "R9.4")
def test_a_secret_that_tries_to_switch_auth_off_exits_naming_the_keys_never_their_values(
    moto_endpoint: str, tmp_path: Path
) -> None:
    client = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=moto_endpoint)
    sentinel = "sentinel-refused-value-1b7f"
    values = {
        "SUPABASE_URL": f"https://{LOOPBACK}:{free_port()}",
        "SUPABASE_SERVICE_KEY": SERVICE_KEY,
        "SUPABASE_PUB_KEY": "sentinel-pub-key-0c3e",
        "AUTH_ENABLED": sentinel,
        "ENVIRONMENT": sentinel,
        "CORS_ORIGINS": sentinel,
        "ENABLE_TEST_ROUTES": sentinel,
    }
    client.create_secret(Name="canvalo/beta/widened", SecretString=json.dumps(values))
    environ = backend_environment(_secret_env(moto_endpoint, "canvalo/beta/widened"), free_port())

    message = refused_start(environ, tmp_path)

    assert message == (
        "configuration error: Secrets Manager secret 'canvalo/beta/widened' holds AUTH_ENABLED, CORS_ORIGINS, "
        "ENABLE_TEST_ROUTES, ENVIRONMENT: it may hold only SUPABASE_URL, SUPABASE_SERVICE_KEY, SUPABASE_PUB_KEY, "
        "BEDROCK_MODEL_ID; "
        "remove the others and set them in the service's environment"
    )
    for value in (sentinel, SERVICE_KEY, "sentinel-pub-key-0c3e"):
        assert value not in message


@pytest.mark.req("R7.4")
@pytest.mark.parametrize(
    "command",
    [["-m", "app"], ["-m", "uvicorn", "--factory", "app.main:create_app", "--port", "0"]],
    ids=["python -m app", "uvicorn --factory"],
)
def test_a_process_without_environment_refuses_to_start(command: list[str], tmp_path: Path) -> None:
    environ = backend_environment({"SUPABASE_URL": "", "CORS_ORIGINS": "*"}, free_port())
    del environ["ENVIRONMENT"]

    message = refused_start(environ, tmp_path, [sys.executable, *command])

    assert message == (
        "configuration error: ENVIRONMENT is not set: set ENVIRONMENT=development for a laptop, or beta/gamma/prod"
    )


@pytest.mark.req("R7.4")
def test_a_prod_process_with_an_http_supabase_url_refuses_to_start(tmp_path: Path) -> None:
    environ = backend_environment({"ENVIRONMENT": "prod", "SUPABASE_URL": f"http://{LOOPBACK}:9"}, free_port())

    message = refused_start(environ, tmp_path)

    assert message == (
        "configuration error: SUPABASE_URL must start with https:// in prod: http:// is accepted only in development"
    )
