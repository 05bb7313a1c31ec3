"""Structured logs: JSON lines carrying the request id, which the response echoes."""

from __future__ import annotations

import json
import logging

import pytest

from app.core.logging import JsonFormatter, request_id_var
from tests.app.conftest import client_for


@pytest.mark.req("R1.3")
def test_each_response_carries_a_distinct_request_id_and_a_safe_caller_id_is_kept() -> None:
    client = client_for(environment="development")

    generated = {client.get("/api/health").headers["x-request-id"] for _ in range(3)}
    kept = client.get("/api/health", headers={"X-Request-ID": "abc-123.x"}).headers["x-request-id"]
    replaced = client.get("/api/health", headers={"X-Request-ID": "x" * 200}).headers["x-request-id"]

    assert len(generated) == 3
    assert kept == "abc-123.x"
    assert replaced != "x" * 200
    assert replaced.rsplit("-", 1)[0] == next(iter(generated)).rsplit("-", 1)[0]


@pytest.mark.req("R1.3")
def test_a_record_becomes_one_json_line_with_request_id_and_extras() -> None:
    token = request_id_var.set("req-7")
    try:
        record = logging.makeLogRecord(
            {"name": "canvalo.test", "levelname": "WARNING", "msg": "slow %s", "args": ("path",), "status": 503}
        )
        line = JsonFormatter().format(record)
    finally:
        request_id_var.reset(token)

    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "slow path"
    assert entry["request_id"] == "req-7"
    assert entry["status"] == 503
    assert entry["level"] == "WARNING"
