"""Every configuration path (R9): Secrets Manager (moto, in-process), environment, `.env`, and each failure."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from app.core.config import ConfigError, Environment, load_settings

REGION = "eu-west-1"
SECRET_NAME = "canvalo/beta/app"
# Values no message may ever contain.
SERVICE_KEY = "sentinel-service-key-5f2c"
PUB_KEY = "sentinel-pub-key-91ab"
# A value the secret may not set; it must never appear in a message either.
REFUSED_VALUE = "sentinel-refused-value-c4a7"
# Exactly what a secret may hold: the three Supabase keys.
SECRET_VALUES = {
    "SUPABASE_URL": "https://beta-project.supabase.co",
    "SUPABASE_SERVICE_KEY": SERVICE_KEY,
    "SUPABASE_PUB_KEY": PUB_KEY,
}


@pytest.fixture
def secretsmanager(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_REGION", REGION)
    with mock_aws():
        yield boto3.client("secretsmanager", region_name=REGION)


def use_secret(monkeypatch: pytest.MonkeyPatch, name: str = SECRET_NAME) -> None:
    monkeypatch.setenv("AWS_SECRETS_NAME", name)
    monkeypatch.setenv("ENVIRONMENT", "beta")


@pytest.mark.req("R5.1", "R9.4", "R9.5", "R9.1")
def test_a_secret_supplies_the_supabase_keys_and_wins_over_the_environment(
    secretsmanager: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secretsmanager.create_secret(Name=SECRET_NAME, SecretString=json.dumps(SECRET_VALUES))
    use_secret(monkeypatch)
    monkeypatch.setenv("SUPABASE_URL", "https://from-the-environment.supabase.co")
    monkeypatch.setenv("CORS_ORIGINS", "https://beta.example.com")
    env_file = tmp_path / ".env"
    env_file.write_text("BEDROCK_MODEL_ID=from-dotenv\n")

    loaded = load_settings(env_file=env_file)

    settings = loaded.settings
    assert loaded.source == f"AWS Secrets Manager secret '{SECRET_NAME}'"
    assert settings.supabase_url == "https://beta-project.supabase.co"
    assert settings.supabase_service_key is not None
    assert settings.supabase_service_key.get_secret_value() == SERVICE_KEY
    assert settings.supabase_pub_key is not None
    assert settings.supabase_pub_key.get_secret_value() == PUB_KEY
    # Everything but the Supabase keys comes from the deploy's environment (and .env), never from the secret.
    assert settings.bedrock_model_id == "from-dotenv"
    assert settings.cors_origins == ["https://beta.example.com"]
    assert settings.environment is Environment.BETA
    assert settings.auth_enabled is True
    assert SERVICE_KEY not in repr(settings)


@pytest.mark.req("R9.2", "R9.4")
def test_a_secret_may_also_carry_the_model_id_which_then_wins(
    secretsmanager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {**SECRET_VALUES, "BEDROCK_MODEL_ID": "eu.anthropic.from-the-secret"}
    secretsmanager.create_secret(Name=SECRET_NAME, SecretString=json.dumps(values))
    use_secret(monkeypatch)
    monkeypatch.setenv("BEDROCK_MODEL_ID", "from-the-environment")
    assert load_settings(env_file=None).settings.bedrock_model_id == "eu.anthropic.from-the-secret"


@pytest.mark.req("R5.1", "R9.4")
@pytest.mark.parametrize(
    "key",
    [
        "AUTH_ENABLED",
        "ENVIRONMENT",
        "CORS_ORIGINS",
        "ENABLE_TEST_ROUTES",
        "JWT_AUDIENCE",
        "auth_enabled",
        "NOT_A_SETTING",
    ],
)
def test_a_secret_holding_any_other_key_stops_startup_naming_the_key_not_its_value(
    key: str, secretsmanager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever can write the secret must not be able to switch auth off, widen CORS or mount test routes."""
    secretsmanager.create_secret(Name=SECRET_NAME, SecretString=json.dumps({**SECRET_VALUES, key: REFUSED_VALUE}))
    use_secret(monkeypatch)

    message = failure(monkeypatch)

    assert message == (
        f"Secrets Manager secret '{SECRET_NAME}' holds {key}: it may hold only SUPABASE_URL, SUPABASE_SERVICE_KEY, "
        "SUPABASE_PUB_KEY, BEDROCK_MODEL_ID; remove the others and set them in the service's environment"
    )
    assert REFUSED_VALUE not in message


@pytest.mark.req("R5.1", "R9.4")
def test_refused_secret_keys_are_all_named_on_one_line_even_with_a_newline_in_a_name(
    secretsmanager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = {"AUTH_ENABLED": "false", "CORS_ORIGINS": "*", "X\nconfiguration loaded": REFUSED_VALUE}
    secretsmanager.create_secret(Name=SECRET_NAME, SecretString=json.dumps({**SECRET_VALUES, **extra}))
    use_secret(monkeypatch)

    message = failure(monkeypatch)

    assert message.startswith(
        f"Secrets Manager secret '{SECRET_NAME}' holds 'X\\nconfiguration loaded', AUTH_ENABLED, CORS_ORIGINS: "
    )
    assert REFUSED_VALUE not in message


@pytest.mark.req("R7.4")
def test_without_environment_the_backend_refuses_to_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SUPABASE_URL", "https://project.supabase.co")
    env_file = tmp_path / ".env"
    env_file.write_text("CORS_ORIGINS=*\nAUTH_ENABLED=false\n")

    with pytest.raises(ConfigError) as raised:
        load_settings(env_file=env_file)

    assert str(raised.value) == "ENVIRONMENT is not set: set ENVIRONMENT=development for a laptop, or beta/gamma/prod"


@pytest.mark.req("R7.4", "R7.7")
@pytest.mark.parametrize("where", ["environment", ".env"])
def test_environment_development_set_explicitly_starts_a_development_backend(
    where: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("ENVIRONMENT=development\n" if where == ".env" else "")
    if where == "environment":
        monkeypatch.setenv("ENVIRONMENT", "development")

    settings = load_settings(env_file=env_file).settings

    assert settings.environment is Environment.DEVELOPMENT
    assert settings.auth_enabled is False


@pytest.mark.req("R7.4", "R9.4")
def test_a_secret_cannot_supply_the_environment_either(secretsmanager: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    secretsmanager.create_secret(Name=SECRET_NAME, SecretString=json.dumps(SECRET_VALUES))
    use_secret(monkeypatch)
    monkeypatch.delenv("ENVIRONMENT")

    assert failure(monkeypatch).startswith("ENVIRONMENT is not set: ")


@pytest.mark.req("R9.3", "R9.5", "R1.3")
def test_without_a_secret_name_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "gamma")
    monkeypatch.setenv("SUPABASE_URL", "https://gamma-project.supabase.co")
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", SERVICE_KEY)
    monkeypatch.setenv("SUPABASE_PUB_KEY", PUB_KEY)
    monkeypatch.setenv("BEDROCK_MODEL_ID", "anthropic.claude-env")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    monkeypatch.setenv("CORS_ORIGINS", "https://d111.cloudfront.net, https://gamma.example.com/")

    loaded = load_settings(env_file=None)

    settings = loaded.settings
    assert loaded.source == "environment variables"
    assert settings.environment is Environment.GAMMA
    assert settings.supabase_url == "https://gamma-project.supabase.co"
    assert settings.bedrock_model_id == "anthropic.claude-env"
    assert settings.aws_region == "eu-central-1"
    assert settings.cors_origins == ["https://d111.cloudfront.net", "https://gamma.example.com"]


@pytest.mark.req("R9.3", "R7.7", "R9.5")
def test_a_developer_runs_with_only_a_dotenv_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "ENVIRONMENT=development\nSUPABASE_URL=https://dev-project.supabase.co\n"
        f"SUPABASE_PUB_KEY={PUB_KEY}\nBEDROCK_MODEL_ID=from-dotenv\nCORS_ORIGINS=http://localhost:5173\n"
    )
    monkeypatch.setenv("BEDROCK_MODEL_ID", "from-the-environment")

    loaded = load_settings(env_file=env_file)

    assert loaded.source == f"environment variables and {env_file}"
    assert loaded.settings.supabase_url == "https://dev-project.supabase.co"
    # The environment overrides .env, as pydantic-settings documents.
    assert loaded.settings.bedrock_model_id == "from-the-environment"
    assert loaded.settings.cors_origins == ["http://localhost:5173"]


@pytest.mark.req("R7.7")
def test_the_shipped_env_example_starts_a_development_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parents[2] / ".env.example"

    loaded = load_settings(env_file=example)

    assert loaded.settings.environment is Environment.DEVELOPMENT
    assert loaded.settings.auth_enabled is False


def failure(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as raised:
        load_settings(env_file=None, **kwargs)
    message = str(raised.value)
    assert "\n" not in message
    assert SERVICE_KEY not in message
    assert PUB_KEY not in message
    return message


@pytest.mark.req("R9.2")
def test_a_missing_secret_stops_startup_naming_it(secretsmanager: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    use_secret(monkeypatch, "canvalo/beta/absent")

    message = failure(monkeypatch)

    assert message.startswith("Secrets Manager secret 'canvalo/beta/absent' does not exist in region eu-west-1")
    assert "AWS_SECRETS_NAME" in message


@pytest.mark.req("R9.2")
def test_access_denied_stops_startup_saying_which_permission(monkeypatch: pytest.MonkeyPatch) -> None:
    use_secret(monkeypatch)
    client = boto3.client("secretsmanager", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_secret_value",
            service_error_code="AccessDeniedException",
            service_message="User is not authorized to perform secretsmanager:GetSecretValue",
            http_status_code=400,
            expected_params={"SecretId": SECRET_NAME},
        )
        message = failure(monkeypatch, secrets_client=client)

    assert f"access denied reading Secrets Manager secret '{SECRET_NAME}'" in message
    assert "secretsmanager:GetSecretValue" in message


@pytest.mark.req("R9.2", "R9.4")
@pytest.mark.parametrize(
    "secret_string", ["SUPABASE_URL=https://x.supabase.co", '["SUPABASE_URL"]', '"just a string"', "{", "null"]
)
def test_a_secret_that_is_not_a_json_object_stops_startup(
    secret_string: str, secretsmanager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secretsmanager.create_secret(Name=SECRET_NAME, SecretString=secret_string)
    use_secret(monkeypatch)

    message = failure(monkeypatch)

    assert message.startswith(f"Secrets Manager secret '{SECRET_NAME}' is not a JSON object")


@pytest.mark.req("R9.2")
def test_a_binary_secret_stops_startup(secretsmanager: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    secretsmanager.create_secret(Name=SECRET_NAME, SecretBinary=json.dumps(SECRET_VALUES).encode())
    use_secret(monkeypatch)

    assert "is binary: store a JSON object as its SecretString" in failure(monkeypatch)


@pytest.mark.req("R9.4")
@pytest.mark.parametrize("missing", ["SUPABASE_URL", "SUPABASE_SERVICE_KEY", "SUPABASE_PUB_KEY"])
def test_a_secret_missing_a_required_key_stops_startup_naming_the_key(
    missing: str, secretsmanager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {key: value for key, value in SECRET_VALUES.items() if key != missing}
    secretsmanager.create_secret(Name=SECRET_NAME, SecretString=json.dumps(values))
    use_secret(monkeypatch)

    message = failure(monkeypatch)

    assert message == f"Secrets Manager secret '{SECRET_NAME}' lacks {missing}: add them to its JSON object"


@pytest.mark.req("R9.4")
def test_an_invalid_value_in_the_secret_is_named_without_echoing_it(
    secretsmanager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {**SECRET_VALUES, "SUPABASE_URL": f"ftp://{SERVICE_KEY}"}
    secretsmanager.create_secret(Name=SECRET_NAME, SecretString=json.dumps(values))
    use_secret(monkeypatch)

    message = failure(monkeypatch)

    assert "SUPABASE_URL must start with https://" in message


@pytest.mark.req("R1.2")
@pytest.mark.parametrize(("value", "problem"), [("0", "PORT"), ("http", "PORT"), ("70000", "PORT")])
def test_a_bad_port_is_refused_by_name(value: str, problem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("PORT", value)
    assert failure(monkeypatch).startswith(f"{problem}: ")


@pytest.mark.req("R8.6")
@pytest.mark.parametrize("environment", ["beta", "gamma", "prod"])
def test_a_cors_wildcard_is_refused_outside_development(environment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", environment)
    monkeypatch.setenv("SUPABASE_URL", "https://project.supabase.co")
    monkeypatch.setenv("CORS_ORIGINS", "https://app.example.com,*")

    assert f"CORS_ORIGINS='*' is refused in {environment}" in failure(monkeypatch)


@pytest.mark.req("R1.5")
@pytest.mark.parametrize("environment", ["beta", "gamma", "prod"])
def test_test_routes_are_refused_outside_development(environment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", environment)
    monkeypatch.setenv("SUPABASE_URL", "https://project.supabase.co")
    monkeypatch.setenv("ENABLE_TEST_ROUTES", "true")

    assert f"ENABLE_TEST_ROUTES is refused in {environment}" in failure(monkeypatch)
