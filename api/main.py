"""Assemble the FastAPI app: settings, the lifespan (SQL store, Temporal client), errors, routers.

The app keeps no business state of its own — everything lives in Temporal and the SQL store — so
any number of replicas can serve behind a load balancer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from api.errors import MethodNotAllowed, UnexpectedErrors, install_error_handlers
from api.json_guard import JsonBodyGuard
from api.limits import BodySizeLimit
from api.openapi import declare_error_responses, with_problem_schema
from api.routes import all_routers
from rte import __version__
from rte.config import Settings, get_settings
from rte.metrics import RequestMetrics
from rte.store import Store
from rte.telemetry import enable_tracing, instrument_app
from rte.temporal import connect

log = logging.getLogger("rte.api")


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """The API; pass `store` to share an open store (tests), else one is opened at start-up."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.api_auth:
            log.warning(
                "!!! API AUTHENTICATION IS DISABLED (RTE_API_AUTH=false): every caller is admin. "
                "Never run like this outside local development. !!!"
            )
        app.state.settings = settings
        app.state.store = store or await Store.open(settings)
        try:
            app.state.temporal = await connect(settings)
        except Exception as error:  # noqa: BLE001 - /health reports it; routes retry on use
            log.warning("Temporal is not reachable yet at %s: %s", settings.temporal_address, error)
            app.state.temporal = None
        yield
        if store is None:
            await app.state.store.close()

    app = FastAPI(
        title="Runtime Engine API",
        version=__version__,
        description="Run, watch, inspect and recover durable workflows. Authenticate with "
        "`Authorization: Bearer <API key>` or `X-API-Key: <API key>` (create keys with `rte keys create`)."
        "\n\nErrors are `application/problem+json` (RFC 9457). A method a path does not support is "
        "answered 405 with an `Allow` header listing the ones it does.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.state.api_routes = []  # every APIRoute, for the `Allow` of 405 answers
    for router in all_routers():
        declare_error_responses(router)
        app.state.api_routes += [route for route in router.routes if isinstance(route, APIRoute)]
        app.include_router(router)
    with_problem_schema(app)
    # The last added runs first: errors wrap everything, the size limit bounds what the guard reads.
    app.add_middleware(JsonBodyGuard)
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(MethodNotAllowed, routes=app.state.api_routes)
    app.add_middleware(UnexpectedErrors)
    app.add_middleware(RequestMetrics)  # outermost: counts every answer, errors included
    if enable_tracing():  # OTEL_EXPORTER_OTLP_ENDPOINT set (rte/telemetry.py)
        instrument_app(app)
    return app


def app() -> FastAPI:
    """Factory for `uvicorn --factory api.main:app`."""
    return create_app()
