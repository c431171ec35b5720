"""Webhooks: a URL per definition that starts runs, each with its own secret token.

A token reads `whk_<id>_<secret>` and is shown once, at creation; only the SHA-256 of its secret is
kept (32 random bytes: a fast hash is enough, as for API keys). The id finds the row, so checking a
token is one primary-key read and a constant-time compare.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, select, update

from rte.errors import EngineError, ErrorCategory
from rte.store.repositories import SessionFactory
from rte.store.tables import Webhook

_TOKEN_FORMAT = re.compile(r"^whk_([a-z0-9]{12})_([A-Za-z0-9_-]{20,})$")


class WebhookInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: str
    definition_id: str
    definition_version: str | None
    name: str
    created_at: datetime
    last_used_at: datetime | None = None


class CreatedWebhook(BaseModel):
    info: WebhookInfo
    token: str  # shown once, never stored


class InvalidWebhookToken(EngineError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCategory.AUTH, message)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class WebhookRepository:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def create(
        self, definition_id: str, name: str, definition_version: str | None = None
    ) -> CreatedWebhook:
        hook_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        row = Webhook(
            id=hook_id,
            definition_id=definition_id,
            definition_version=definition_version,
            name=name,
            secret_hash=_hash(secret),
            created_at=datetime.now(UTC),
        )
        async with self._sessions() as session:
            session.add(row)
            await session.commit()
            info = WebhookInfo.model_validate(row)
        return CreatedWebhook(info=info, token=f"whk_{hook_id}_{secret}")

    async def verify(self, definition_id: str, token: str) -> WebhookInfo:
        """The webhook the token belongs to, if it is one of `definition_id`'s; InvalidWebhookToken otherwise."""
        match = _TOKEN_FORMAT.match(token.strip())
        if not match:
            raise InvalidWebhookToken("malformed webhook token: expected whk_<id>_<secret>")
        hook_id, secret = match.groups()
        async with self._sessions() as session:
            row = await session.get(Webhook, hook_id)
            if (
                row is None
                or not hmac.compare_digest(row.secret_hash, _hash(secret))
                or row.definition_id != definition_id
            ):
                raise InvalidWebhookToken(f"this token does not open the webhook of '{definition_id}'")
            now = datetime.now(UTC)
            await session.execute(update(Webhook).where(Webhook.id == hook_id).values(last_used_at=now))
            await session.commit()
            return WebhookInfo.model_validate(row).model_copy(update={"last_used_at": now})

    async def list(self, definition_id: str | None = None) -> list[WebhookInfo]:
        stmt = select(Webhook).order_by(Webhook.created_at)
        if definition_id is not None:
            stmt = stmt.where(Webhook.definition_id == definition_id)
        async with self._sessions() as session:
            return [WebhookInfo.model_validate(row) for row in await session.scalars(stmt)]

    async def delete(self, hook_id: str) -> bool:
        async with self._sessions() as session:
            result = await session.execute(delete(Webhook).where(Webhook.id == hook_id))
            await session.commit()
            return bool(result.rowcount)  # type: ignore[attr-defined]
