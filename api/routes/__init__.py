"""One module per area, each exposing `router`; `api.main` includes every module found here."""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import APIRouter
from fastapi.routing import APIRoute


def all_routers() -> list[APIRouter]:
    """Every area's routes in one router, fixed paths before parameterised ones.

    Starlette matches routes in order, so `/executions/stream` (live.py) must come before
    `/executions/{execution_id}` (executions.py) whatever the modules' names are.
    """
    combined = APIRouter()
    routes = []
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        router = getattr(module, "router", None)
        if isinstance(router, APIRouter):
            routes.extend(router.routes)
    routes.sort(key=lambda route: _specificity(route.path) if isinstance(route, APIRoute) else [])
    combined.routes.extend(routes)
    return [combined]


def _specificity(path: str) -> list[bool]:
    # A parameter segment sorts after a fixed one at the same position; the sort is stable.
    return [segment.startswith("{") for segment in path.strip("/").split("/")]
