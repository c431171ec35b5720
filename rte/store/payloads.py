"""The payload store: content-addressed blobs behind claim-check references (rte/claim_check.py)."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from rte.claim_check import PayloadNotFound
from rte.errors import EngineError, ErrorCategory
from rte.store.repositories import SessionFactory
from rte.store.tables import Payload, utcnow


class PayloadRepository:
    """Implements `rte.claim_check.PayloadStore` on the SQL store."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def put(self, key: str, data: bytes) -> None:
        """Store `data` under its SHA-256 `key`; storing the same content again changes nothing."""
        if hashlib.sha256(data).hexdigest() != key:
            raise EngineError(ErrorCategory.INTERNAL, f"payload key {key} is not the SHA-256 of its data")
        async with self._sessions() as session:
            insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
            statement = (
                insert(Payload)
                .values(key=key, size=len(data), data=data, created_at=utcnow())
                .on_conflict_do_nothing(index_elements=["key"])
            )
            await session.execute(statement)
            await session.commit()

    async def get(self, key: str) -> bytes:
        async with self._sessions() as session:
            data = await session.scalar(select(Payload.data).where(Payload.key == key))
        if data is None:
            raise PayloadNotFound(key)
        return bytes(data)

    async def size(self, key: str) -> int | None:
        """The stored size of a payload, or None when it is not stored."""
        async with self._sessions() as session:
            return await session.scalar(select(Payload.size).where(Payload.key == key))
