"""schemathesis over the app's own OpenAPI schema, in-process: no 5xx, every response matches the schema."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from app.main import create_app
from tests.app.conftest import make_settings

# A deployed environment with a JWKS nobody serves: every auth path that a random token can take.
app = create_app(make_settings(environment="prod", supabase_url="https://127.0.0.1:9", jwks_timeout_seconds=0.5))
schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)


@pytest.mark.req("R1.4", "R7.4")
@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_responses_match_the_schema(case: Any) -> None:
    case.call_and_validate()
