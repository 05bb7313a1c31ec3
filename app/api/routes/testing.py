"""Routes for the shutdown tests only: mounted when ENABLE_TEST_ROUTES is on, which Settings refuses outside development."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query

router = APIRouter(tags=["testing"], include_in_schema=False)


@router.get("/slow")
async def slow(seconds: float = Query(default=1.0, ge=0, le=10)) -> dict[str, float]:
    await asyncio.sleep(seconds)
    return {"slept": seconds}
