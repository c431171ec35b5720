"""`GET /metrics`: this API process's Prometheus metrics (rte/metrics.py), for viewers and up.

Behind an API key like every other read: configure Prometheus with a viewer key as its bearer
token (`authorization: {credentials: <key>}` in the scrape config). The worker's Temporal SDK
metrics have their own port (RTE_WORKER_METRICS_ADDRESS).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import ViewerKey

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text exposition"}},
)
async def metrics(_key: ViewerKey) -> Response:
    """Prometheus metrics: API requests and latency by route and status, executions started."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
