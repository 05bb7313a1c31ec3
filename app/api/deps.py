"""Request dependencies: the settings and the verified user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth import DEVELOPMENT_USER, AuthError, AuthUnavailableError, TokenVerifier, User
from app.core.config import Settings

# auto_error=False: a missing header must give our 401 (with WWW-Authenticate), not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="Supabase user access token")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _verifier(request: Request) -> TokenVerifier | None:
    verifier: TokenVerifier | None = request.app.state.token_verifier
    return verifier


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def current_user(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    verifier: Annotated[TokenVerifier | None, Depends(_verifier)],
) -> User:
    if verifier is None:
        # Auth is off: only development allows that (Settings refuses it elsewhere), R7.7.
        return DEVELOPMENT_USER
    if credentials is None:
        raise _unauthorized("missing bearer token: send 'Authorization: Bearer <Supabase access token>'")
    try:
        return await verifier.verify(credentials.credentials)
    except AuthError as error:
        raise _unauthorized(str(error)) from None
    except AuthUnavailableError:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="cannot verify tokens right now: try again shortly"
        ) from None


SettingsDep = Annotated[Settings, Depends(get_settings)]
CurrentUser = Annotated[User, Depends(current_user)]
