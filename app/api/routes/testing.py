"""Routes for the shutdown tests only: mounted when ENABLE_TEST_ROUTES is on, which Settings refuses outside development."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Query

router = APIRouter(tags=["testing"], include_in_schema=False)
logger = logging.getLogger("canvalo.testing")


@router.get("/slow")
async def slow(seconds: float = Query(default=1.0, ge=0, le=10)) -> dict[str, float]:
    # The shutdown test waits for this line to know the request is in flight before it sends SIGTERM.
    logger.info("slow request started")
    await asyncio.sleep(seconds)
    return {"slept": seconds}
