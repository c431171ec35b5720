"""Connections: named credentials for external services, with the secret part encrypted at rest.

Workflows and Temporal histories only ever carry a connection's id; an activity calls `resolve(id)`
to get the decrypted secret at the moment it needs it. Nothing here logs a secret, and no `repr()`
shows one.

`config.allowed_origins` binds the credentials to the origins an admin names
(`activities/connection_scope.py`); a connection without it is bound to its base_url's origin, and
one with neither sends its credentials nowhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

from cryptography.fernet import Fernet, InvalidToken
from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.base import ResolvedConnection
from activities.connection_scope import ALLOWED_ORIGINS, normalize_origin, origin_of
from rte.config import Settings
from rte.errors import EngineError, ErrorCategory
from rte.private_files import private_file
from rte.store.tables import Connection, utcnow

ConnectionType = Literal["bearer", "api_key", "basic", "openai"]
CONNECTION_TYPES: tuple[str, ...] = get_args(ConnectionType)
DEFAULT_API_KEY_HEADER = "X-API-Key"
KEY_FILE_NAME = "secret.key"
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class _TypeRules:
    secret_fields: tuple[str, ...]  # all required
    config_required: tuple[str, ...] = ()


_RULES: dict[str, _TypeRules] = {
    "bearer": _TypeRules(secret_fields=("token",)),
    "api_key": _TypeRules(secret_fields=("key",)),
    "basic": _TypeRules(secret_fields=("password",), config_required=("username",)),
    "openai": _TypeRules(secret_fields=("api_key",), config_required=("base_url",)),
}
# Names that must never sit in the (unencrypted) config, whatever the type.
_SECRET_NAMES = frozenset(name for rules in _RULES.values() for name in rules.secret_fields) | {"secret"}


class ConnectionInfo(BaseModel):
    """A connection as the API and the CLI show it: which secret fields are set, never their values."""

    model_config = ConfigDict(frozen=True)

    id: str
    type: ConnectionType
    config: dict[str, Any]
    secret_fields: list[str]
    created_at: datetime
    updated_at: datetime


class _SecretHidingConnection(ResolvedConnection):
    """A `ResolvedConnection` whose repr (in logs, tracebacks, debuggers) leaves the secret out."""

    def __repr__(self) -> str:
        hidden = {name: "***" for name in self.secret}
        return (
            f"ResolvedConnection(id={self.id!r}, type={self.type!r}, config={self.config!r}, secret={hidden})"
        )

    __str__ = __repr__


@dataclass
class SecretBox:
    """Encrypts and decrypts secret dicts with Fernet.

    The key is `settings.secret_key` if set, else `<data_dir>/secret.key`, generated (mode 0600, in a
    0700 folder) the first time a secret is stored or read, so a process that never touches a
    connection never needs one.
    """

    key: str | None = field(default=None, repr=False)
    key_file: Path | None = None
    _fernet: Fernet | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls(key=settings.secret_key, key_file=settings.data_dir / KEY_FILE_NAME)

    def encrypt(self, secret: dict[str, str]) -> str:
        return self._cipher().encrypt(json.dumps(secret).encode()).decode("ascii")

    def decrypt(self, token: str, *, connection_id: str) -> dict[str, str]:
        try:
            return json.loads(self._cipher().decrypt(token.encode("ascii")))
        except InvalidToken:
            raise EngineError(
                ErrorCategory.CONFIGURATION,
                f"the secret of connection {connection_id!r} cannot be decrypted with the current key "
                f"({self._key_origin()}); the key changed since it was stored. Restore the old key, or "
                f"set the connection again with `rte connections set {connection_id} ...`",
            ) from None

    def _cipher(self) -> Fernet:
        if self._fernet is None:
            key = self.key if self.key else self._key_from_file()
            try:
                self._fernet = Fernet(key)
            except (ValueError, TypeError):
                raise EngineError(
                    ErrorCategory.CONFIGURATION,
                    f"the secret key ({self._key_origin()}) is not a valid Fernet key: it must be 32 "
                    'url-safe base64-encoded bytes; generate one with `python -c "from cryptography.fernet '
                    'import Fernet; print(Fernet.generate_key().decode())"`',
                ) from None
        return self._fernet

    def _key_origin(self) -> str:
        return "RTE_SECRET_KEY" if self.key else f"key file {self.key_file}"

    def _key_from_file(self) -> str:
        if self.key_file is None:
            raise EngineError(
                ErrorCategory.CONFIGURATION, "no secret key: set RTE_SECRET_KEY or RTE_DATA_DIR"
            )
        path = self.key_file
        try:
            if not path.exists():
                _create_key_file(path)
            private_file(path)  # a key file copied in with a wider mode is tightened
            return path.read_text().strip()
        except OSError as err:
            raise EngineError(ErrorCategory.CONFIGURATION, f"cannot use key file {path}: {err}") from None


def _create_key_file(path: Path) -> None:
    """Write a fresh key atomically: a process racing us either wins or uses the winner's key."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        # Fails if the file appeared meanwhile: an existing key is never overwritten.
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _invalid(message: str) -> EngineError:
    return EngineError(ErrorCategory.VALIDATION, message)


def validate_connection(
    id: str, type: str, config: dict[str, Any], secret: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Check a connection against its type's rules; answers the config with defaults filled in.

    Messages name fields, never values: the values may be secrets.
    """
    if not _ID_PATTERN.match(id or ""):
        raise _invalid(
            f"invalid connection id {id!r}: use letters, digits, '.', '_' or '-' (up to 100, "
            "starting with a letter or digit)"
        )
    rules = _RULES.get(type)
    if rules is None:
        raise _invalid(f"unknown connection type {type!r}; use one of {', '.join(CONNECTION_TYPES)}")
    if not isinstance(config, dict) or not isinstance(secret, dict):
        raise _invalid(f"connection {id!r}: config and secret must be objects")

    missing = [name for name in rules.secret_fields if not secret.get(name)]
    if missing:
        raise _invalid(f"connection {id!r} of type {type} needs the secret field(s): {', '.join(missing)}")
    unknown = sorted(set(secret) - set(rules.secret_fields))
    if unknown:
        raise _invalid(
            f"connection {id!r} of type {type} does not take the secret field(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(rules.secret_fields)}"
        )
    not_text = [name for name, value in secret.items() if not isinstance(value, str)]
    if not_text:
        raise _invalid(f"connection {id!r}: secret field(s) {', '.join(not_text)} must be strings")
    leaked = sorted(_SECRET_NAMES & set(config))
    if leaked:
        raise _invalid(
            f"connection {id!r}: {', '.join(leaked)} is a secret; pass it in the secret, not in the config"
        )

    config = dict(config)
    missing = [name for name in rules.config_required if not config.get(name)]
    if missing:
        raise _invalid(f"connection {id!r} of type {type} needs the config field(s): {', '.join(missing)}")
    if type == "api_key":
        if config.get("header") and config.get("query_param"):
            raise _invalid(f"connection {id!r}: set either config header or query_param, not both")
        if not config.get("query_param"):
            config["header"] = config.get("header") or DEFAULT_API_KEY_HEADER
    base_url = config.get("base_url")
    if base_url is not None and not (isinstance(base_url, str) and re.match(r"^https?://", base_url)):
        raise _invalid(f"connection {id!r}: config base_url must be an http(s) URL")
    if ALLOWED_ORIGINS in config:
        config[ALLOWED_ORIGINS] = _allowed_origins(id, config[ALLOWED_ORIGINS], base_url)
    try:
        json.dumps(config)
    except (TypeError, ValueError):
        raise _invalid(f"connection {id!r}: config must be plain JSON") from None
    return config, dict(secret)


def _allowed_origins(id: str, value: Any, base_url: str | None) -> list[str]:
    """The origins the credentials may go to, canonical; a comma-separated string (the CLI) too."""
    entries = value.split(",") if isinstance(value, str) else value
    if not isinstance(entries, list) or not [entry for entry in entries if entry]:
        raise _invalid(
            f"connection {id!r}: config allowed_origins must list origins such as https://api.example.com"
        )
    try:
        origins = list(dict.fromkeys(normalize_origin(str(entry).strip()) for entry in entries if entry))
        base_origin = origin_of(base_url) if base_url else None
    except ValueError as error:
        raise _invalid(f"connection {id!r}: {error}") from None
    if base_origin is not None and base_origin not in origins:
        raise _invalid(
            f"connection {id!r}: its base_url's origin {base_origin} is not among its allowed_origins"
        )
    return origins


class ConnectionStore:
    """Satisfies `activities.base.ConnectionResolver`."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], secrets: SecretBox) -> None:
        self._sessions = sessions
        self._secrets = secrets

    async def put(self, id: str, type: str, config: dict[str, Any], secret: dict[str, Any]) -> ConnectionInfo:
        """Create or replace a connection (the whole secret is replaced)."""
        config, secret = validate_connection(id, type, config, secret)
        token = self._secrets.encrypt(secret)
        fields = sorted(secret)
        for _ in range(2):  # a concurrent create of the same id turns our insert into an update
            async with self._sessions() as session:
                row = await session.get(Connection, id)
                if row is None:
                    row = Connection(
                        id=id, type=type, config=config, secret_fields=fields, secret_encrypted=token
                    )
                    session.add(row)
                else:
                    row.type, row.config, row.secret_fields = type, config, fields
                    row.secret_encrypted, row.updated_at = token, utcnow()
                try:
                    await session.commit()
                except IntegrityError:
                    await session.rollback()
                    continue
                return _public(row)
        raise EngineError(ErrorCategory.INTERNAL, f"could not save connection {id!r}: concurrent writes")

    async def get_public(self, id: str) -> ConnectionInfo | None:
        async with self._sessions() as session:
            row = await session.get(Connection, id)
            return _public(row) if row is not None else None

    async def list_public(self) -> list[ConnectionInfo]:
        async with self._sessions() as session:
            rows = await session.scalars(select(Connection).order_by(Connection.id))
            return [_public(row) for row in rows]

    async def delete(self, id: str) -> bool:
        async with self._sessions() as session:
            result = await session.execute(delete(Connection).where(Connection.id == id))
            await session.commit()
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def resolve(self, connection_id: str) -> ResolvedConnection:
        async with self._sessions() as session:
            row = await session.get(Connection, connection_id)
            if row is None:
                raise EngineError(
                    ErrorCategory.CONFIGURATION,
                    f"connection {connection_id!r} is not defined; create it with "
                    f"`rte connections set {connection_id} ...`",
                )
            type_, config, token = row.type, dict(row.config), row.secret_encrypted
        secret = self._secrets.decrypt(token, connection_id=connection_id)
        return _SecretHidingConnection(id=connection_id, type=type_, config=config, secret=secret)

    def __repr__(self) -> str:
        return f"ConnectionStore(secrets={self._secrets!r})"


def _public(row: Connection) -> ConnectionInfo:
    return ConnectionInfo(
        id=row.id,
        type=row.type,  # type: ignore[arg-type]
        config=dict(row.config),
        secret_fields=list(row.secret_fields),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
