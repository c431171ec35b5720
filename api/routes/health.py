"""Liveness and dependencies (no API key needed: load balancers call it)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import StoreDep, get_temporal
from rte import __version__

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request, store: StoreDep) -> JSONResponse:
    """Liveness and the state of Temporal and the SQL store (503 when one is down)."""
    checks: dict[str, str] = {}
    try:
        client = await get_temporal(request)
        await client.service_client.check_health()
        checks["temporal"] = "ok"
    except Exception as error:  # noqa: BLE001 - reported, not raised
        checks["temporal"] = f"unreachable: {getattr(error, 'detail', error)}"
    try:
        await store.definitions.list_latest()
        checks["database"] = "ok"
    except Exception as error:  # noqa: BLE001 - reported, not raised
        checks["database"] = f"error: {type(error).__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", "version": __version__, "checks": checks},
        status_code=200 if healthy else 503,
    )
