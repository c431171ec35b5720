"""Assemble the FastAPI app: lifespan (Temporal client, SQL store) and the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from rte import __version__
from rte.config import Settings, get_settings
from rte.store import Store
from rte.temporal import connect


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.store = await Store.open(settings)
        app.state.temporal = None
        try:
            app.state.temporal = await connect(settings)
        except Exception:  # noqa: BLE001 - /health reports it; the API still serves what it can
            app.state.temporal = None
        yield
        await app.state.store.close()

    app = FastAPI(title="Runtime Engine API", version=__version__, lifespan=lifespan)

    @app.get("/health", tags=["health"])
    async def health() -> JSONResponse:
        """Liveness and dependencies: Temporal and the SQL store."""
        checks: dict[str, str] = {}
        client = app.state.temporal
        try:
            if client is None:
                app.state.temporal = client = await connect(settings)
            await client.service_client.check_health()
            checks["temporal"] = "ok"
        except Exception as error:  # noqa: BLE001
            checks["temporal"] = f"unreachable: {error}"
        try:
            await app.state.store.definitions.list_latest()
            checks["database"] = "ok"
        except Exception as error:  # noqa: BLE001
            checks["database"] = f"error: {type(error).__name__}"
        healthy = all(value == "ok" for value in checks.values())
        return JSONResponse(
            {"status": "ok" if healthy else "degraded", "version": __version__, "checks": checks},
            status_code=200 if healthy else 503,
        )

    return app


def app() -> FastAPI:
    """Factory for `uvicorn --factory api.main:app`."""
    return create_app()
