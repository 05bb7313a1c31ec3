"""Backend test fixtures: a clean settings environment, a signing key and its JWKS on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from tests.app.tls import https_jwks_server
from tests.support.tokens import JwksServer, SigningKey

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
def supabase(
    signing_key: SigningKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, JwksServer]]:
    """A Supabase JWKS on https://127.0.0.1 (deployed environments refuse http://), trusted through SSL_CERT_FILE."""
    with https_jwks_server([signing_key.public_jwk()], tmp_path) as (url, state, ca_file):
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        yield url, state


def make_settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def client_for(**values: Any) -> TestClient:
    return TestClient(create_app(make_settings(**values)))
