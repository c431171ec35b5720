"""API keys (admin): create (the key is returned once), list, revoke."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AdminKey, StoreDep
from api.errors import Problem
from rte.store.api_keys import ApiKeyInfo, Role

router = APIRouter(prefix="/keys", tags=["access control"])


class KeyCreate(BaseModel):
    model_config = ConfigDict(strict=True)  # JSON types as documented (api.models._In)

    name: str = Field(min_length=1, max_length=200, examples=["ci pipeline"])
    role: Role = Field(examples=["operator"], strict=False)  # an enum: its JSON form is text
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class KeyCreated(BaseModel):
    id: str
    name: str
    role: Role
    key: str = Field(description="The full key. It is shown only in this response.")
    expires_at: datetime | None


@router.post("", status_code=status.HTTP_201_CREATED, response_model=KeyCreated)
async def create_key(body: KeyCreate, store: StoreDep, _: AdminKey) -> KeyCreated:
    """Create an API key with a role."""
    expires = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    created = await store.api_keys.create(body.name, body.role, expires)
    info = created.info
    return KeyCreated(id=info.id, name=info.name, role=info.role, key=created.key, expires_at=info.expires_at)


@router.get("", response_model=list[ApiKeyInfo])
async def list_keys(store: StoreDep, _: AdminKey) -> list[ApiKeyInfo]:
    """List API keys (never their secrets)."""
    return await store.api_keys.list()


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_key(key_id: str, store: StoreDep, _: AdminKey) -> Response:
    """Revoke a key at once."""
    if not await store.api_keys.revoke(key_id):
        raise Problem(404, "Not found", f"no active API key with id '{key_id}'")
    return Response(status_code=204)
