"""`python -m pipelines.smoke_check`: the Apply's own check that the release just deployed answers."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest
from moto import mock_aws

from pipelines.smoke_check import Answer, SmokeError, check, fetch, main

BACKEND, FRONTEND = "https://api.canvalo.example.com", "https://canvalo.example.com"
HEALTHY = Answer(200, "application/json", b'{"status": "ok", "version": "app-new"}')
INDEX = Answer(200, "text/html; charset=utf-8", b"<!doctype html><html><div id=root></div></html>")


def answers(*health: Answer, index: Answer = INDEX) -> Any:
    """A stage whose /health answers each of `health` in turn (the last one from then on)."""
    sequence = list(health)
    calls: list[str] = []

    def get(url: str) -> Answer:
        calls.append(url)
        if url == f"{BACKEND}/health":
            return sequence.pop(0) if len(sequence) > 1 else sequence[0]
        return index

    get.calls = calls  # type: ignore[attr-defined]
    return get


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.req("R10.7")
def test_the_release_answering_with_its_version_and_the_html_index_passes() -> None:
    assert "runs app-new" in check(BACKEND, FRONTEND, "app-new", timeout=150, interval=10, get=answers(HEALTHY))


@pytest.mark.req("R10.7")
def test_old_tasks_still_answering_are_waited_for_within_the_timeout() -> None:
    old = Answer(200, "application/json", b'{"status": "ok", "version": "app-old"}')
    clock = Clock()
    get = answers(old, old, HEALTHY)
    check(BACKEND, FRONTEND, "app-new", timeout=150, interval=10, get=get, clock=clock, sleep=clock.sleep)
    assert clock.now == 20


@pytest.mark.req("R10.7", "R10.8")
@pytest.mark.parametrize(
    ("health", "index", "words"),
    [
        (Answer(502, "text/html", b"Bad Gateway"), INDEX, f"GET {BACKEND}/health answered 502"),
        (Answer(200, "application/json", b'{"status": "degraded"}'), INDEX, "answered status 'degraded', not 'ok'"),
        (
            Answer(200, "application/json", b'{"status": "ok", "version": "app-old"}'),
            INDEX,
            "runs release 'app-old', not the deployed 'app-new'",
        ),
        (HEALTHY, Answer(403, "application/xml", b"<Error>AccessDenied</Error>"), f"GET {FRONTEND} answered 403"),
        (HEALTHY, Answer(200, "application/json", b"{}"), "not the frontend's HTML index"),
    ],
)
def test_a_release_that_keeps_failing_fails_with_one_line_after_the_timeout(
    health: Answer, index: Answer, words: str
) -> None:
    clock = Clock()
    with pytest.raises(SmokeError) as failure:
        check(
            BACKEND,
            FRONTEND,
            "app-new",
            timeout=150,
            interval=10,
            get=answers(health, index=index),
            clock=clock,
            sleep=clock.sleep,
        )
    assert words in str(failure.value) and "\n" not in str(failure.value)
    assert str(failure.value).startswith("smoke check failed after 150 s")
    assert 140 <= clock.now <= 150, "bounded: it gives up once the next try would pass the timeout"


class _Stage(http.server.BaseHTTPRequestHandler):
    pages: ClassVar[dict[str, tuple[int, str, bytes]]] = {
        "/api/health": (200, "application/json", json.dumps({"status": "ok", "version": "app-new"}).encode()),
        "/": (200, "text/html", INDEX.body),
    }

    def do_GET(self) -> None:
        status, content_type, body = self.pages.get(self.path, (404, "text/plain", b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def served() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.req("R10.7")
def test_the_command_gets_the_stage_over_http(served: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["check", "--backend-url", f"{served}/api", "--frontend-url", f"{served}/", "--expect-version"]
    assert main([*args, "app-new"]) == 0
    assert main([*args, "app-newer", "--timeout", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"error: smoke check failed after 0 s: GET {served}/api/health runs release 'app-new', not the deployed 'app-newer'"
    )
    assert fetch(f"{served}/missing").status == 404
    with pytest.raises(OSError, match="not an http"):
        fetch("file:///etc/passwd")


@pytest.mark.req("R10.7")
def test_version_prints_the_release_of_the_applied_task_definition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with mock_aws():
        ecs = boto3.client("ecs", region_name="eu-west-1")
        arn = ecs.register_task_definition(
            family="canvalo-prod-backend",
            containerDefinitions=[
                {
                    "name": "api",
                    "image": "x:app-new",
                    "memory": 512,
                    "environment": [{"name": "APP_VERSION", "value": "app-new"}],
                }
            ],
        )["taskDefinition"]["taskDefinitionArn"]
        (tmp_path / "prod.json").write_text(
            json.dumps({"backend_cluster_name": "c", "backend_service_name": "s", "backend_task_definition_arn": arn})
        )
        assert main(["version", "--outputs", str(tmp_path)]) == 0
        assert capsys.readouterr().out.strip() == "app-new"
        (tmp_path / "prod.json").write_text(json.dumps({"backend_url": "https://api"}))
        assert main(["version", "--outputs", str(tmp_path)]) == 2
        assert capsys.readouterr().err.count("\n") == 1
