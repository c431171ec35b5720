"""Webhooks: a URL per definition that starts a run from the request body.

`POST /hooks/{definition_id}` is called by other systems, so it is authenticated by the webhook's
own token (header `X-Webhook-Token`, or `?token=` for senders that cannot set headers — it then
shows in access logs, so prefer the header), never by an API key: it carries the `webhook`
dependency instead of a role, and the tag "webhooks". Managing webhooks mints credentials, like API
keys, so creating and deleting them is for admins; viewers may list them (never their tokens).
Each run records `RteTriggerType = 'webhook'`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, status
from fastapi.security import APIKeyHeader, APIKeyQuery
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AdminKey, SettingsDep, StoreDep, TemporalClientDep, ViewerKey
from api.errors import Problem
from api.models import DEFINITION_ID, VERSION, RunConfig, RunStarted
from api.routes.definitions import load_definition
from api.routes.runs import customised_plan, run_started
from rte.claim_check import refuse_references
from rte.executions import start_execution
from rte.store.webhooks import InvalidWebhookToken, WebhookInfo
from workflows.params import validate_params
from workflows.plan import Plan

router = APIRouter()
_MANAGE = ["triggers"]

DefinitionId = Annotated[str, Path(pattern=DEFINITION_ID, max_length=200, examples=["orders"])]
_token_header = APIKeyHeader(
    name="X-Webhook-Token", auto_error=False, scheme_name="WebhookToken", description="The webhook's token."
)
_token_query = APIKeyQuery(
    name="token", auto_error=False, scheme_name="WebhookTokenQuery", description="The webhook's token."
)


async def webhook(
    definition_id: DefinitionId,
    request: Request,
    header: Annotated[str | None, Depends(_token_header)],
    query: Annotated[str | None, Depends(_token_query)],
) -> WebhookInfo:
    """Marker dependency of webhook routes: the caller proves itself with the webhook's token, not an API key."""
    if header and query and header != query:  # ambiguous: refused rather than one silently ignored
        raise Problem(
            401, "Unauthorized", "two different webhook tokens (X-Webhook-Token and ?token=): send one"
        )
    token = header or query
    if not token:
        raise Problem(401, "Unauthorized", "a webhook token is required: header X-Webhook-Token or ?token=")
    try:
        return await request.app.state.store.webhooks.verify(definition_id, token)
    except InvalidWebhookToken as error:
        raise Problem(401, "Unauthorized", error.message) from None


WebhookToken = Annotated[WebhookInfo, Depends(webhook)]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition_id: str = Field(pattern=DEFINITION_ID, max_length=200, examples=["orders"])
    name: str = Field(min_length=1, max_length=200, examples=["shop checkout"])
    version: str | None = Field(
        None,
        pattern=VERSION,
        max_length=20,
        description="Pin a version; default: each call runs the latest version.",
    )


class WebhookOut(BaseModel):
    id: str = Field(examples=["3f2a9c1d2e4b"])
    definition_id: str = Field(examples=["orders"])
    definition_version: str | None = Field(
        description="Pinned version; null runs the latest.", examples=[None]
    )
    name: str = Field(examples=["shop checkout"])
    url: str = Field(examples=["https://rte.example/hooks/orders"])
    created_at: datetime
    last_used_at: datetime | None = None


class WebhookCreated(WebhookOut):
    token: str = Field(
        description="Send it as header X-Webhook-Token. It is shown only in this response.",
        examples=["whk_3f2a9c1d2e4b_Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0"],
    )


def _out(info: WebhookInfo, request: Request) -> WebhookOut:
    url = str(request.url_for("run_from_webhook", definition_id=info.definition_id))
    return WebhookOut(url=url, **info.model_dump())


@router.post("/webhooks", tags=_MANAGE, status_code=status.HTTP_201_CREATED, response_model=WebhookCreated)
async def create_webhook(body: WebhookIn, request: Request, store: StoreDep, _: AdminKey) -> WebhookCreated:
    """Create a webhook for a definition; its token is returned once."""
    await load_definition(store, body.definition_id, body.version)
    created = await store.webhooks.create(body.definition_id, body.name, body.version)
    return WebhookCreated(**_out(created.info, request).model_dump(), token=created.token)


@router.get("/webhooks", tags=_MANAGE, response_model=list[WebhookOut])
async def list_webhooks(
    request: Request,
    store: StoreDep,
    _: ViewerKey,
    definition_id: Annotated[str | None, Query(pattern=DEFINITION_ID, max_length=200)] = None,
) -> list[WebhookOut]:
    """List webhooks and their URLs (never their tokens)."""
    return [_out(info, request) for info in await store.webhooks.list(definition_id)]


@router.delete("/webhooks/{webhook_id}", tags=_MANAGE, status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(webhook_id: str, store: StoreDep, _: AdminKey) -> Response:
    """Delete a webhook: its token stops working at once."""
    if not await store.webhooks.delete(webhook_id):
        raise Problem(404, "Not found", f"no webhook with id '{webhook_id}'")
    return Response(status_code=204)


@router.post(
    "/hooks/{definition_id}",
    name="run_from_webhook",
    tags=["webhooks"],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunStarted,
    responses={
        401: {"description": "Missing or wrong webhook token (problem+json)"},
        404: {"description": "The definition (or its pinned version) is gone (problem+json)"},
        422: {"description": "The body does not match the input schema; every violation listed"},
    },
)
async def run_from_webhook(
    definition_id: DefinitionId,
    hook: WebhookToken,
    store: StoreDep,
    client: TemporalClientDep,
    settings: SettingsDep,
    body: Annotated[
        Any,
        Body(description="The run's parameters (a JSON object).", examples=[{"order_id": 42, "total": 99.5}]),
    ] = None,
) -> RunStarted:
    """Start a run with the request body as its parameters (authenticated by the webhook token)."""
    row = await load_definition(store, definition_id, hook.definition_version)
    plan = Plan.model_validate(row.plan)
    params = validate_params(plan.input_schema, body)
    refuse_references(params)
    plan = await customised_plan(store, plan, {}, RunConfig())
    handle = await start_execution(
        client,
        plan,
        params,
        task_queue=settings.task_queue,
        step_task_queues=settings.step_task_queues(),
        trigger="webhook",
        definition_version=row.version,
        payloads=store.payloads,
        offload_bytes=settings.payload_offload_bytes,
    )
    return run_started(handle, row, plan, settings)
