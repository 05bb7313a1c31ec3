"""Settings: a Secrets Manager secret when `AWS_SECRETS_NAME` is set, else environment variables, then `.env`.

`load_settings()` either returns complete, valid settings or raises `ConfigError` with one line that
names what is wrong and what to do. Nothing here ever puts a setting's value in a message or a log.

It fails closed: `ENVIRONMENT` has no default (a process that forgets it does not become a development
server), the secret may supply only the Supabase keys (so whoever can write the secret cannot switch auth,
CORS or test routes), and outside development auth is on, with an `https://` SUPABASE_URL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

DEFAULT_ENV_FILE = Path(".env")
# The keys a Secrets Manager secret must hold, with the same names as in `.env` (R9.4).
REQUIRED_SECRET_KEYS = ("SUPABASE_URL", "SUPABASE_SERVICE_KEY", "SUPABASE_PUB_KEY")
# What else it may hold: application settings that change no security posture (R9.4 names the model id).
# Everything that does (ENVIRONMENT, AUTH_ENABLED, CORS_ORIGINS, ...) comes only from the deploy's own
# environment: whoever can write the secret must not be able to switch auth off or widen CORS.
SECRET_KEYS = (*REQUIRED_SECRET_KEYS, "BEDROCK_MODEL_ID")
MISSING_ENVIRONMENT = "ENVIRONMENT is not set: set ENVIRONMENT=development for a laptop, or beta/gamma/prod"


class ConfigError(Exception):
    """Configuration that cannot start the service; the message is one line, free of secret values."""


class Environment(StrEnum):
    DEVELOPMENT = "development"
    BETA = "beta"
    GAMMA = "gamma"
    PROD = "prod"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=DEFAULT_ENV_FILE, env_file_encoding="utf-8", extra="ignore")

    # Required: no default, so that a process without it refuses to start instead of running as development.
    environment: Environment
    # Comma-separated in the environment; empty means no cross-origin caller is allowed.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    aws_secrets_name: str | None = None
    aws_region: str | None = None
    supabase_url: str | None = None
    supabase_service_key: SecretStr | None = None
    supabase_pub_key: SecretStr | None = None
    bedrock_model_id: str | None = None
    # None: on when Supabase is configured or outside development; only development may turn it off.
    auth_enabled: bool | None = None
    jwt_audience: str = "authenticated"
    jwks_cache_seconds: float = Field(default=600.0, gt=0)
    jwks_timeout_seconds: float = Field(default=3.0, gt=0, le=30)
    host: str = "0.0.0.0"  # noqa: S104 - a container must listen on its own interface for the ALB
    port: int = Field(default=8000, ge=1, le=65535)
    # Below the ECS stop timeout (30 s), which sends SIGKILL after it (stacks/config.py).
    graceful_shutdown_seconds: int = Field(default=20, gt=0, le=120)
    log_level: str = "INFO"
    # The release this process runs (the image tag the task definition sets): /health reports it, so the
    # post-deploy tests can tell the new release from tasks a rollback left running.
    app_version: str = Field(default="unreleased", min_length=1, max_length=128)
    # Mounts /api/_test/* (a slow route for shutdown tests); refused outside development.
    enable_test_routes: bool = False

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip().rstrip("/") for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("supabase_url", mode="before")
    @classmethod
    def _empty_url_is_unset(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().rstrip("/") or None
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level

    @model_validator(mode="before")
    @classmethod
    def _environment_is_set(cls, data: object) -> object:
        if isinstance(data, Mapping) and data.get("environment") is None:
            raise ValueError(MISSING_ENVIRONMENT)
        return data

    @model_validator(mode="after")
    def _safe_for_environment(self) -> Self:
        deployed = self.environment is not Environment.DEVELOPMENT
        if self.auth_enabled is None:
            self.auth_enabled = deployed or self.supabase_url is not None
        if deployed and not self.auth_enabled:
            raise ValueError(
                f"AUTH_ENABLED=false is refused in {self.environment}: only development may run without auth"
            )
        if self.auth_enabled and self.supabase_url is None:
            raise ValueError(
                f"auth is on in {self.environment} but SUPABASE_URL is not set: set it (and the Supabase keys), "
                "or in development set AUTH_ENABLED=false"
            )
        if self.supabase_url is not None and not self.supabase_url.startswith(("https://", "http://")):
            raise ValueError("SUPABASE_URL must start with https:// (http:// only for a local Supabase)")
        if deployed and self.supabase_url is not None and not self.supabase_url.startswith("https://"):
            raise ValueError(
                f"SUPABASE_URL must start with https:// in {self.environment}: http:// is accepted only in development"
            )
        if deployed and "*" in self.cors_origins:
            raise ValueError(f"CORS_ORIGINS='*' is refused in {self.environment}: list the frontend origin(s)")
        if deployed and self.enable_test_routes:
            raise ValueError(f"ENABLE_TEST_ROUTES is refused in {self.environment}: test routes are development-only")
        return self

    @property
    def jwks_url(self) -> str:
        return f"{self.supabase_url}/auth/v1/.well-known/jwks.json"

    @property
    def jwt_issuer(self) -> str:
        return f"{self.supabase_url}/auth/v1"


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    source: str  # says where the values came from, never what they are


class _SecretLocation(BaseSettings):
    """Only what is needed to find the secret, read before the secret decides everything else."""

    model_config = SettingsConfigDict(extra="ignore")
    aws_secrets_name: str | None = None
    aws_region: str | None = None


def load_settings(
    *, env_file: Path | None = DEFAULT_ENV_FILE, secrets_client: SecretsManagerClient | None = None
) -> LoadedSettings:
    """R9.1: the secret named by AWS_SECRETS_NAME wins; without it, environment variables, then `.env`."""
    location = _SecretLocation(_env_file=env_file)  # type: ignore[call-arg]
    if location.aws_secrets_name:
        name = location.aws_secrets_name
        values = _read_secret(name, location.aws_region, secrets_client)
        settings = _build(env_file, {key.lower(): value for key, value in values.items()})
        return LoadedSettings(settings, f"AWS Secrets Manager secret '{name}'")
    settings = _build(env_file, {})
    env_file_note = f" and {env_file}" if env_file is not None and env_file.is_file() else ""
    return LoadedSettings(settings, f"environment variables{env_file_note}")


def _build(env_file: Path | None, overrides: Mapping[str, Any]) -> Settings:
    known = {key: value for key, value in overrides.items() if key in Settings.model_fields}
    try:
        return Settings(_env_file=env_file, **known)  # type: ignore[call-arg]
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


def _describe(error: ValidationError) -> str:
    """One line naming each bad setting, without echoing its input (it may be a key)."""
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        setting = ".".join(str(part) for part in item["loc"]).upper()
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{setting}: {message}" if setting else message)
    return "; ".join(problems)


def _read_secret(name: str, region: str | None, client: SecretsManagerClient | None) -> dict[str, object]:
    # botocore is imported here so that a developer's start without Secrets Manager stays fast.
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if client is None:
            import boto3

            client = boto3.client(
                "secretsmanager",
                region_name=region or os.environ.get("AWS_DEFAULT_REGION"),
                config=Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"}),
            )
        response = client.get_secret_value(SecretId=name)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise ConfigError(
                f"Secrets Manager secret '{name}' does not exist in region {client.meta.region_name if client else region}: "
                "create it (docs/backend.md) or fix AWS_SECRETS_NAME / AWS_REGION"
            ) from None
        if code in {"AccessDeniedException", "AccessDenied", "UnrecognizedClientException"}:
            raise ConfigError(
                f"access denied reading Secrets Manager secret '{name}' ({code}): allow secretsmanager:GetSecretValue "
                "on it (and kms:Decrypt on its key) for this role"
            ) from None
        raise ConfigError(f"cannot read Secrets Manager secret '{name}': {code or 'error'}") from None
    except BotoCoreError as error:
        # botocore's messages name endpoints and missing credentials, never secret values.
        raise ConfigError(f"cannot read Secrets Manager secret '{name}': {error}") from None
    text = response.get("SecretString")
    if text is None:
        raise ConfigError(f"Secrets Manager secret '{name}' is binary: store a JSON object as its SecretString")
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        values = None
    if not isinstance(values, dict):
        raise ConfigError(
            f"Secrets Manager secret '{name}' is not a JSON object: store "
            '{"SUPABASE_URL": ..., "SUPABASE_SERVICE_KEY": ..., "SUPABASE_PUB_KEY": ...}'
        )
    refused = sorted(_printable_key(key) for key in values if key not in SECRET_KEYS)
    if refused:
        raise ConfigError(
            f"Secrets Manager secret '{name}' holds {', '.join(refused)}: it may hold only "
            f"{', '.join(SECRET_KEYS)}; remove the others and set them in the service's environment"
        )
    missing = [key for key in REQUIRED_SECRET_KEYS if not values.get(key)]
    if missing:
        raise ConfigError(f"Secrets Manager secret '{name}' lacks {', '.join(missing)}: add them to its JSON object")
    return values


def _printable_key(key: str) -> str:
    """A key's name for a one-line message: its repr when it holds control characters, cut to 64 characters."""
    shown = key if key.isprintable() else repr(key)
    return shown if len(shown) <= 64 else f"{shown[:61]}..."
