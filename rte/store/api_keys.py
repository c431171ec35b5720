"""API keys: created once (the full key is shown only then), stored as a hash, checked per request.

A key reads `rte_<id>_<secret>`: the id finds the row, the secret is compared against its SHA-256
(keys are 32 random bytes, so a fast hash is enough — no password stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select, update

from rte.errors import EngineError, ErrorCategory
from rte.store.repositories import SessionFactory
from rte.store.tables import ApiKey

LAST_USED_RESOLUTION = timedelta(minutes=1)
_KEY_FORMAT = re.compile(r"^rte_([a-z0-9]{12})_([A-Za-z0-9_-]{20,})$")


class Role(StrEnum):
    VIEWER = "viewer"  # read
    OPERATOR = "operator"  # run, cancel, retry, approve, debug
    ADMIN = "admin"  # definitions, connections, settings, keys

    def allows(self, needed: Role) -> bool:
        order = [Role.VIEWER, Role.OPERATOR, Role.ADMIN]
        return order.index(self) >= order.index(needed)


class ApiKeyInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: str
    name: str
    role: Role
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class CreatedApiKey(BaseModel):
    info: ApiKeyInfo
    key: str  # shown once, never stored


class InvalidApiKey(EngineError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCategory.AUTH, message)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeyRepository:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def create(self, name: str, role: Role | str, expires_in: timedelta | None = None) -> CreatedApiKey:
        role = Role(role)
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        row = ApiKey(
            id=key_id,
            name=name,
            role=role.value,
            secret_hash=_hash(secret),
            created_at=now,
            expires_at=now + expires_in if expires_in else None,
        )
        async with self._sessions() as session:
            session.add(row)
            await session.commit()
            info = ApiKeyInfo.model_validate(row)
        return CreatedApiKey(info=info, key=f"rte_{key_id}_{secret}")

    async def verify(self, key: str) -> ApiKeyInfo:
        """The key's record, or InvalidApiKey saying what is wrong (never which part matched)."""
        match = _KEY_FORMAT.match(key.strip())
        if not match:
            raise InvalidApiKey("malformed API key: expected rte_<id>_<secret>")
        key_id, secret = match.groups()
        async with self._sessions() as session:
            row = await session.get(ApiKey, key_id)
            if row is None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
                raise InvalidApiKey("unknown API key")
            now = datetime.now(UTC)
            if row.revoked_at is not None:
                raise InvalidApiKey("this API key was revoked")
            if row.expires_at is not None and row.expires_at <= now:
                raise InvalidApiKey("this API key has expired; create a new one with `rte keys create`")
            info = ApiKeyInfo.model_validate(row)
            # Recording use costs a write per request: once a minute per key is precise enough.
            if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
                await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
                await session.commit()
            return info

    async def list(self) -> list[ApiKeyInfo]:
        async with self._sessions() as session:
            rows = await session.scalars(select(ApiKey).order_by(ApiKey.created_at))
            return [ApiKeyInfo.model_validate(row) for row in rows]

    async def revoke(self, key_id: str) -> bool:
        async with self._sessions() as session:
            result = await session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            await session.commit()
            return bool(result.rowcount)
