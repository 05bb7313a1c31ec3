"""Run the real backend (`python -m app`) in a subprocess on 127.0.0.1 for tests that need a live server.

with run_backend({"ENVIRONMENT": "development"}) as base_url:
    httpx.get(f"{base_url}/health")
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the OS picks it; another process could still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_http(url: str, timeout: float) -> None:
    """Poll `url` until it answers 200; TimeoutError naming the last failure after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_failure = "no attempt"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
                last_failure = f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            last_failure = f"HTTP {error.code}"
        except (OSError, urllib.error.URLError) as error:
            last_failure = str(error)
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s (last: {last_failure})")


class BackendFailedError(RuntimeError):
    pass


def backend_environment(env: Mapping[str, str] | None, port: int) -> dict[str, str]:
    """The child's environment: this one's (fake AWS credentials, PATH) plus `env`, on 127.0.0.1:`port`."""
    defaults = {"ENVIRONMENT": "development", "LOG_LEVEL": "INFO"}
    environ = {**os.environ, **defaults, **(env or {}), "HOST": LOOPBACK, "PORT": str(port), "PYTHONUNBUFFERED": "1"}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), (env or {}).get("PYTHONPATH")]))
    return environ


@dataclass(frozen=True)
class Backend:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def output(self) -> str:
        """Everything the process wrote so far (JSON log lines)."""
        return self.log_path.read_text(errors="replace")


@contextmanager
def backend_process(
    env: Mapping[str, str] | None = None, *, port: int | None = None, python: str | None = None
) -> Iterator[Backend]:
    """Like `run_backend`, but yields the process and its output for tests that signal it or read its logs."""
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="canvalo-backend-") as workdir:
        log_path = Path(workdir) / "backend.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [python or sys.executable, "-m", "app"],
                cwd=workdir,
                env=backend_environment(env, port),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        backend = Backend(process, f"http://{LOOPBACK}:{port}", log_path)
        try:
            _wait_until_serving(process, f"{backend.base_url}/health", log_path)
            yield backend
        finally:
            stop_backend(process)


@contextmanager
def run_backend(env: Mapping[str, str] | None = None, *, port: int | None = None) -> Iterator[str]:
    """Start `python -m app` on 127.0.0.1, wait for /health, yield its base URL, then SIGTERM it.

    `env` adds to (and overrides) this process's environment; without it the backend runs as a
    development server (auth off unless `env` sets SUPABASE_URL). The working directory is an empty
    temporary directory, so a developer's `.env` never leaks into a test. The process's output is
    shown when it fails to start.
    """
    with backend_process(env, port=port) as backend:
        yield backend.base_url


def _wait_until_serving(process: subprocess.Popen[bytes], health_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BackendFailedError(
                f"backend exited with {process.returncode} before serving:\n{log_path.read_text(errors='replace')}"
            )
        try:
            wait_for_http(health_url, timeout=0.5)
            return
        except TimeoutError:
            continue
    stop_backend(process)
    raise BackendFailedError(
        f"backend did not answer {health_url} within {STARTUP_TIMEOUT_SECONDS:.0f} s:\n"
        f"{log_path.read_text(errors='replace')}"
    )


def stop_backend(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_SECONDS) -> int:
    """SIGTERM, then SIGKILL if it has not exited after `timeout` seconds; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return process.returncode
