"""The app factory: `create_app(settings)` in tests, `uvicorn --factory app.main:create_app` or `python -m app`."""

from __future__ import annotations

import logging
import sys

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from app.api.routes import health, me, testing
from app.auth import JwksCache, TokenVerifier
from app.core.config import ConfigError, LoadedSettings, Settings, load_settings
from app.core.logging import configure_logging
from app.middleware import RequestContextMiddleware

logger = logging.getLogger("canvalo.app")


def create_app(settings: Settings | None = None) -> FastAPI:
    if settings is None:
        settings = load_settings_or_exit().settings
    app = FastAPI(
        title="Canvalo API",
        version="1.0.0",
        # The schema is public documentation of the API; interactive docs only where developers work.
        docs_url="/api/docs" if settings.environment == "development" else None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.settings = settings
    app.state.token_verifier = (
        TokenVerifier(
            jwks=JwksCache(
                settings.jwks_url,
                ttl_seconds=settings.jwks_cache_seconds,
                timeout_seconds=settings.jwks_timeout_seconds,
            ),
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
        if settings.auth_enabled
        else None
    )
    health.add_liveness_route(app, settings.app_version)
    app.include_router(health.api_router, prefix="/api")
    app.include_router(me.router, prefix="/api/v1")
    if settings.enable_test_routes:
        app.include_router(testing.router, prefix="/api/_test")

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error", extra={"path": request.url.path})
        return JSONResponse({"detail": "internal error"}, status_code=500)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            # Bearer tokens travel in a header, never in cookies: no credentials mode needed.
            allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
            max_age=600,
        )
    app.add_middleware(RequestContextMiddleware)
    return app


def load_settings_or_exit() -> LoadedSettings:
    """Settings for a real start: one clear line and exit 2 instead of a half-configured service."""
    try:
        loaded = load_settings()
    except ConfigError as error:
        configure_logging()
        logger.critical("configuration error: %s", error)
        sys.exit(2)
    configure_logging(loaded.settings.log_level)
    logger.info(
        "configuration loaded from %s",
        loaded.source,
        extra={"config_source": loaded.source, "environment": loaded.settings.environment.value},
    )
    return loaded
