"""Dependencies as `Annotated` aliases, so route signatures read like prose.

`ViewerKey`, `OperatorKey`, `AdminKey` check the caller's API key (header `Authorization: Bearer
rte_…` or `X-API-Key: rte_…`) and its role; every route takes exactly one of them. Both headers are
declared as OpenAPI security schemes (either one suffices), so `/docs` can authorize requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from api.errors import Problem
from rte.claim_check import PayloadStore
from rte.config import Settings
from rte.store import Store
from rte.store.api_keys import ApiKeyInfo, InvalidApiKey, Role
from rte.temporal import connect

DEVELOPMENT_KEY = ApiKeyInfo.model_construct(id="development", name="auth disabled", role=Role.ADMIN)


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_temporal(request: Request) -> Client:
    client = request.app.state.temporal
    if client is None:
        try:
            request.app.state.temporal = client = await connect(request.app.state.settings)
        except Exception as error:  # noqa: BLE001 - any failure means the same thing to the caller
            raise Problem(503, "Temporal unavailable", f"cannot reach Temporal: {error}") from None
    return client


@dataclass(frozen=True)
class Offload:
    """Where large values in a request go before they enter Temporal (rte/claim_check.py)."""

    payloads: PayloadStore
    threshold_bytes: int


def get_offload(request: Request) -> Offload:
    return Offload(request.app.state.store.payloads, request.app.state.settings.payload_offload_bytes)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StoreDep = Annotated[Store, Depends(get_store)]
TemporalClientDep = Annotated[Client, Depends(get_temporal)]
OffloadDep = Annotated[Offload, Depends(get_offload)]


# Declared for the OpenAPI document; `_presented_key` reads the headers itself, to answer a wrong
# scheme with a clear 401 rather than ignore it.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="API key",
    description="An API key (`rte keys create`).",
)
_api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="apiKey",
    description="The same API key, in its own header.",
)


def _presented_key(request: Request) -> str | None:
    header, api_key = request.headers.get("authorization"), request.headers.get("x-api-key")
    if not header:
        return api_key
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Problem(401, "Unauthorized", "use 'Authorization: Bearer <API key>'")
    if api_key is not None and api_key != value.strip():
        # Ambiguous credentials are refused rather than one of them silently ignored.
        raise Problem(401, "Unauthorized", "two different API keys (Authorization and X-API-Key): send one")
    return value.strip()


def require(role: Role):  # type: ignore[no-untyped-def]
    async def check(
        request: Request,
        _bearer_key: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        _header_key: Annotated[str | None, Depends(_api_key_header)],
    ) -> ApiKeyInfo:
        if not request.app.state.settings.api_auth:
            return DEVELOPMENT_KEY
        key = _presented_key(request)
        if not key:
            raise Problem(401, "Unauthorized", "an API key is required: create one with `rte keys create`")
        try:
            info = await request.app.state.store.api_keys.verify(key)
        except InvalidApiKey as error:
            raise Problem(401, "Unauthorized", error.message) from None
        if not info.role.allows(role):
            raise Problem(
                403,
                "Forbidden",
                f"this needs the {role.value} role; the key '{info.name}' is {info.role.value}",
            )
        request.state.api_key = info
        return info

    check.required_role = role  # type: ignore[attr-defined]  # read by api.openapi
    return check


ViewerKey = Annotated[ApiKeyInfo, Depends(require(Role.VIEWER))]
OperatorKey = Annotated[ApiKeyInfo, Depends(require(Role.OPERATOR))]
AdminKey = Annotated[ApiKeyInfo, Depends(require(Role.ADMIN))]
