"""The caller's identity: proves the frontend's token reaches the backend and is verified."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from app.api.deps import CurrentUser, SettingsDep

router = APIRouter(tags=["users"])


class Error(BaseModel):
    detail: str


class Me(BaseModel):
    sub: str
    email: str | None
    role: str | None
    exp: int | None
    environment: str
    anonymous: bool


@router.get(
    "/me",
    response_model=Me,
    summary="The verified user's claims",
    responses={401: {"model": Error}, 503: {"model": Error}},
)
async def me(user: CurrentUser, settings: SettingsDep) -> Me:
    return Me(
        sub=user.sub,
        email=user.email,
        role=user.role,
        exp=user.exp,
        environment=settings.environment.value,
        anonymous=user.anonymous,
    )
