"""Backend test fixtures: a clean settings environment, a signing key and its JWKS on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from tests.support.tokens import JwksServer, SigningKey, jwks_server

SETTING_VARIABLES = [name.upper() for name in Settings.model_fields]


@pytest.fixture(autouse=True)
def clean_settings_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the machine or another test."""
    for name in SETTING_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey(kid="test-key-1")


@pytest.fixture(scope="session")
def other_key() -> SigningKey:
    """Same key id as `signing_key`, different key: a forger who knows the kid."""
    return SigningKey(kid="test-key-1")


@pytest.fixture
def supabase(signing_key: SigningKey) -> Iterator[tuple[str, JwksServer]]:
    with jwks_server([signing_key.public_jwk()]) as served:
        yield served


def make_settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def client_for(**values: Any) -> TestClient:
    return TestClient(create_app(make_settings(**values)))
