"""Liveness: answers from memory, touching neither Supabase nor AWS, so a dependency outage never kills tasks."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from app.api.deps import SettingsDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"]


class ApiHealth(Health):
    environment: str


@router.get("/health", response_model=Health, summary="Liveness for the ALB and the container HEALTHCHECK")
async def health() -> dict[str, str]:
    return {"status": "ok"}


api_router = APIRouter(tags=["health"])


@api_router.get("/health", response_model=ApiHealth, summary="Liveness through CloudFront's /api/* behaviour")
async def api_health(settings: SettingsDep) -> dict[str, str]:
    return {"status": "ok", "environment": settings.environment.value}
