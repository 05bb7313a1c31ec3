"""Token verification against a JWKS on 127.0.0.1, and what each environment demands (R7.4, R7.7)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from app.core.config import ConfigError, load_settings
from tests.app.conftest import client_for
from tests.support.tokens import JwksServer, SigningKey

DEPLOYED = ["beta", "gamma", "prod"]


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.req("R7.4")
@pytest.mark.parametrize("environment", DEPLOYED)
def test_deployed_environments_accept_a_valid_token_and_return_its_claims(
    environment: str, supabase: tuple[str, JwksServer], signing_key: SigningKey
) -> None:
    url, _ = supabase
    client = client_for(environment=environment, supabase_url=url)
    token = signing_key.sign(url, sub="user-42", email="ada@example.com")

    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["sub"] == "user-42"
    assert body["email"] == "ada@example.com"
    assert body["role"] == "authenticated"
    assert body["exp"] > time.time()
    assert body["environment"] == environment
    assert body["anonymous"] is False


@pytest.mark.req("R7.4")
@pytest.mark.parametrize("environment", DEPLOYED)
def test_deployed_environments_refuse_a_request_without_a_token(
    environment: str, supabase: tuple[str, JwksServer]
) -> None:
    url, _ = supabase
    response = client_for(environment=environment, supabase_url=url).get("/api/v1/me")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "missing bearer token" in response.json()["detail"]


def _hmac_signed(header: dict[str, object], payload: str, secret: bytes) -> str:
    signing_input = f"{_b64(header)}.{payload}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def _forged_tokens(url: str, signing_key: SigningKey, other_key: SigningKey) -> dict[str, str]:
    now = int(time.time())
    valid = signing_key.sign(url)
    header, payload, _ = valid.split(".")
    return {
        "expired": signing_key.sign(url, iat=now - 7200, exp=now - 3600),
        "wrong key": other_key.sign(url),
        "wrong audience": signing_key.sign(url, aud="service_role"),
        "wrong issuer": signing_key.sign(url, iss="https://attacker.example/auth/v1"),
        "malformed": "not-a-jwt",
        "garbage segments": "a.b.c",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': signing_key.kid})}.{payload}.",
        # The classic confusion attack: HMAC "signed" with the public key's PEM, hoping the server uses it as a secret.
        "hs256 with public key": _hmac_signed(
            {"alg": "HS256", "typ": "JWT", "kid": signing_key.kid}, payload, signing_key.public_pem()
        ),
        "unknown kid": SigningKey(kid="rotated-away").sign(url),
        "no kid": jwt.encode(jwt.decode(valid, options={"verify_signature": False}), signing_key.private_key, "RS256"),
        "tampered payload": f"{header}.{_b64({**jwt.decode(valid, options={'verify_signature': False}), 'sub': 'admin'})}.{valid.split('.')[2]}",
        "no exp": signing_key.sign(url, exp=None),
    }


FORGERIES = [
    "expired",
    "wrong key",
    "wrong audience",
    "wrong issuer",
    "malformed",
    "garbage segments",
    "alg none",
    "hs256 with public key",
    "unknown kid",
    "no kid",
    "tampered payload",
    "no exp",
]


@pytest.mark.req("R7.4")
@pytest.mark.parametrize("case", FORGERIES)
def test_every_bad_token_gets_401_json_never_500(
    case: str, supabase: tuple[str, JwksServer], signing_key: SigningKey, other_key: SigningKey
) -> None:
    url, _ = supabase
    token = _forged_tokens(url, signing_key, other_key)[case]
    response = client_for(environment="prod", supabase_url=url).get(
        "/api/v1/me", headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 401, f"{case}: {response.status_code} {response.text}"
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response.json()["detail"], str)


@pytest.mark.req("R7.4")
@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "token abc"])
def test_a_header_that_is_not_a_bearer_token_gets_401(header: str, supabase: tuple[str, JwksServer]) -> None:
    url, _ = supabase
    response = client_for(environment="beta", supabase_url=url).get("/api/v1/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["detail"]


@pytest.mark.req("R7.4")
def test_jwks_is_fetched_once_and_cached(supabase: tuple[str, JwksServer], signing_key: SigningKey) -> None:
    url, server = supabase
    client = client_for(environment="gamma", supabase_url=url)
    for _ in range(5):
        token = signing_key.sign(url)
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert server.requests == 1


@pytest.mark.req("R7.4")
def test_a_rotated_key_is_picked_up_from_the_jwks(supabase: tuple[str, JwksServer], signing_key: SigningKey) -> None:
    url, server = supabase
    client = client_for(environment="prod", supabase_url=url, jwks_cache_seconds=0.01)
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {signing_key.sign(url)}"}).status_code == 200
    new_key = SigningKey(kid="test-key-2")
    server.keys = [new_key.public_jwk()]
    time.sleep(0.02)

    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {new_key.sign(url)}"})

    assert response.status_code == 200, response.text


@pytest.mark.req("R7.4")
def test_unreachable_jwks_gives_503_not_500(signing_key: SigningKey) -> None:
    from tests.support.servers import free_port

    url = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    client = client_for(environment="prod", supabase_url=url, jwks_timeout_seconds=1)

    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {signing_key.sign(url)}"})

    assert response.status_code == 503
    assert "try again" in response.json()["detail"]


@pytest.mark.req("R7.7", "R7.4")
def test_development_without_supabase_answers_with_an_anonymous_user() -> None:
    response = client_for(environment="development").get("/api/v1/me")

    assert response.status_code == 200
    assert response.json() == {
        "sub": "development-user",
        "email": None,
        "role": "anonymous",
        "exp": None,
        "environment": "development",
        "anonymous": True,
    }


@pytest.mark.req("R7.4")
def test_development_with_supabase_configured_verifies_tokens(
    supabase: tuple[str, JwksServer], signing_key: SigningKey
) -> None:
    url, _ = supabase
    client = client_for(environment="development", supabase_url=url)
    assert client.get("/api/v1/me").status_code == 401
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {signing_key.sign(url)}"})
    assert response.status_code == 200
    assert response.json()["anonymous"] is False


def refusal(monkeypatch: pytest.MonkeyPatch, **variables: str) -> str:
    for name, value in variables.items():
        monkeypatch.setenv(name.upper(), value)
    with pytest.raises(ConfigError) as raised:
        load_settings(env_file=None)
    return str(raised.value)


@pytest.mark.req("R7.4")
@pytest.mark.parametrize("environment", DEPLOYED)
@pytest.mark.parametrize("off", ["false", "0", "off", "no"])
def test_deployed_environments_refuse_to_start_with_auth_off(
    environment: str, off: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = refusal(
        monkeypatch, environment=environment, supabase_url="https://project.supabase.co", auth_enabled=off
    )

    assert message == f"AUTH_ENABLED=false is refused in {environment}: only development may run without auth"


@pytest.mark.req("R7.4", "R7.7")
def test_development_may_turn_auth_off_even_with_supabase_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("SUPABASE_URL", "https://project.supabase.co")
    monkeypatch.setenv("AUTH_ENABLED", "false")

    settings = load_settings(env_file=None).settings

    assert settings.auth_enabled is False


@pytest.mark.req("R7.4")
@pytest.mark.parametrize("environment", DEPLOYED)
@pytest.mark.parametrize("unset", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_deployed_environments_refuse_to_start_without_supabase(
    environment: str, unset: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    variables = {"environment": environment} if unset is None else {"environment": environment, "supabase_url": unset}

    message = refusal(monkeypatch, **variables)

    assert message.startswith(f"auth is on in {environment} but SUPABASE_URL is not set: ")


@pytest.mark.req("R7.4")
@pytest.mark.parametrize("environment", DEPLOYED)
@pytest.mark.parametrize("url", ["http://project.supabase.co", "http://127.0.0.1:54321"])
def test_deployed_environments_refuse_an_http_supabase_url(
    environment: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = refusal(monkeypatch, environment=environment, supabase_url=url)

    assert message == (
        f"SUPABASE_URL must start with https:// in {environment}: http:// is accepted only in development"
    )


@pytest.mark.req("R7.4")
@pytest.mark.parametrize("environment", DEPLOYED)
def test_deployed_environments_start_with_an_https_supabase_url_and_auth_on(
    environment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVIRONMENT", environment)
    monkeypatch.setenv("SUPABASE_URL", "https://project.supabase.co/")

    settings = load_settings(env_file=None).settings

    assert settings.supabase_url == "https://project.supabase.co"
    assert settings.auth_enabled is True


@pytest.mark.req("R7.4", "R7.7")
def test_development_accepts_an_http_url_for_a_local_supabase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("SUPABASE_URL", "http://127.0.0.1:54321")

    settings = load_settings(env_file=None).settings

    assert settings.supabase_url == "http://127.0.0.1:54321"
    assert settings.auth_enabled is True


@pytest.mark.req("R7.4")
@pytest.mark.parametrize("value", ["staging", "Production", "", "dev"])
def test_an_unknown_environment_refuses_to_start(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", value)

    with pytest.raises(ConfigError, match="ENVIRONMENT: Input should be 'development', 'beta', 'gamma' or 'prod'"):
        load_settings(env_file=None)
