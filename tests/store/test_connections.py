from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from activities.base import ConnectionResolver, ResolvedConnection
from rte.config import Settings
from rte.errors import EngineError, ErrorCategory
from rte.store import ConnectionStore, SecretBox, Store
from rte.store.tables import Connection

TOKEN = "tok-SUPER-secret-4242"

VALID: list[tuple[str, dict[str, Any], dict[str, str], dict[str, Any]]] = [
    # type, config given, secret, config stored
    (
        "bearer",
        {"base_url": "https://api.notion.com"},
        {"token": TOKEN},
        {"base_url": "https://api.notion.com"},
    ),
    ("api_key", {}, {"key": TOKEN}, {"header": "X-API-Key"}),
    ("api_key", {"query_param": "apikey"}, {"key": TOKEN}, {"query_param": "apikey"}),
    ("basic", {"username": "ada"}, {"password": TOKEN}, {"username": "ada"}),
    (
        "openai",
        {"base_url": "http://127.0.0.1:11434/v1"},
        {"api_key": TOKEN},
        {"base_url": "http://127.0.0.1:11434/v1"},
    ),
]


@pytest.mark.parametrize(("type_", "config", "secret", "stored_config"), VALID, ids=[v[0] for v in VALID])
async def test_a_connection_round_trips_with_its_secret(
    store: Store, type_: str, config: dict[str, Any], secret: dict[str, str], stored_config: dict[str, Any]
) -> None:
    info = await store.connections.put("svc", type_, config, secret)
    assert (info.id, info.type, info.config, info.secret_fields) == (
        "svc",
        type_,
        stored_config,
        sorted(secret),
    )
    resolved = await store.connections.resolve("svc")
    assert isinstance(resolved, ResolvedConnection)
    assert (resolved.id, resolved.type, resolved.config, resolved.secret) == (
        "svc",
        type_,
        stored_config,
        secret,
    )


async def test_the_store_satisfies_the_activities_resolver_protocol(store: Store) -> None:
    resolver: ConnectionResolver = store.connections
    await store.connections.put("notion", "bearer", {}, {"token": TOKEN})
    assert (await resolver.resolve("notion")).secret == {"token": TOKEN}


async def test_the_database_never_holds_the_plaintext_secret(store: Store, settings: Settings) -> None:
    await store.connections.put("notion", "bearer", {"base_url": "https://api.notion.com"}, {"token": TOKEN})
    async with store.sessions() as session:
        row = (await session.scalars(select(Connection))).one()
        assert TOKEN not in row.secret_encrypted
        assert TOKEN not in repr(row)
        assert all(TOKEN not in str(value) for value in (row.config, row.secret_fields))
    if settings.resolved_database_url.startswith("sqlite"):
        await store.close()  # checkpoint the WAL, then look at every byte SQLite wrote
        database = Path(settings.resolved_database_url.split("///", 1)[1])
        for path in database.parent.glob(f"{database.name}*"):
            assert TOKEN.encode() not in path.read_bytes(), path


async def test_the_public_view_says_which_secrets_are_set_but_never_their_values(store: Store) -> None:
    await store.connections.put("db", "basic", {"username": "ada"}, {"password": TOKEN})
    await store.connections.put("ai", "openai", {"base_url": "https://api.openai.com/v1"}, {"api_key": TOKEN})
    info = await store.connections.get_public("db")
    assert info is not None
    assert info.secret_fields == ["password"]
    assert TOKEN not in info.model_dump_json() and TOKEN not in repr(info)
    listed = await store.connections.list_public()
    assert [(item.id, item.type) for item in listed] == [("ai", "openai"), ("db", "basic")]
    assert all(TOKEN not in item.model_dump_json() for item in listed)
    assert await store.connections.get_public("missing") is None


async def test_putting_again_replaces_the_secret_and_keeps_the_creation_time(store: Store) -> None:
    first = await store.connections.put("notion", "bearer", {}, {"token": "old-token"})
    await asyncio.sleep(0.01)
    second = await store.connections.put("notion", "bearer", {}, {"token": TOKEN})
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert (await store.connections.resolve("notion")).secret == {"token": TOKEN}


async def test_delete_removes_a_connection(store: Store) -> None:
    await store.connections.put("notion", "bearer", {}, {"token": TOKEN})
    assert await store.connections.delete("notion") is True
    assert await store.connections.get_public("notion") is None
    assert await store.connections.delete("notion") is False


async def test_an_unknown_connection_says_how_to_create_it(store: Store) -> None:
    with pytest.raises(EngineError) as caught:
        await store.connections.resolve("x")
    assert caught.value.category is ErrorCategory.CONFIGURATION
    assert caught.value.retryable is False
    assert caught.value.message == "connection 'x' is not defined; create it with `rte connections set x ...`"


async def test_a_secret_stored_under_another_key_is_a_clear_error(store: Store) -> None:
    await store.connections.put("notion", "bearer", {}, {"token": TOKEN})
    other = ConnectionStore(store.sessions, SecretBox(key=Fernet.generate_key().decode()))
    with pytest.raises(EngineError) as caught:
        await other.resolve("notion")
    assert caught.value.category is ErrorCategory.CONFIGURATION
    assert "cannot be decrypted with the current key" in caught.value.message
    assert "rte connections set notion" in caught.value.message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_a_malformed_key_is_a_clear_error(store: Store) -> None:
    broken = ConnectionStore(store.sessions, SecretBox(key="not-a-fernet-key"))
    with pytest.raises(EngineError) as caught:
        await broken.put("notion", "bearer", {}, {"token": TOKEN})
    assert caught.value.category is ErrorCategory.CONFIGURATION
    assert "RTE_SECRET_KEY" in caught.value.message and "not a valid Fernet key" in caught.value.message
    assert "not-a-fernet-key" not in caught.value.message


async def test_a_damaged_key_file_is_a_clear_error_naming_the_file(store: Store, tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "secret.key"
    key_file.parent.mkdir()
    key_file.write_text("garbage\n")
    broken = ConnectionStore(store.sessions, SecretBox(key_file=key_file))
    with pytest.raises(EngineError, match=f"key file {key_file}.* not a valid Fernet key"):
        await broken.put("notion", "bearer", {}, {"token": TOKEN})


async def test_the_key_file_is_created_on_first_use_readable_only_by_its_owner(
    store: Store, settings: Settings
) -> None:
    key_file = settings.data_dir / "secret.key"
    await store.connections.list_public()
    assert not key_file.exists()  # nothing needed a key yet
    await store.connections.put("notion", "bearer", {}, {"token": TOKEN})
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.data_dir.stat().st_mode) == 0o700
    key = key_file.read_text().strip()
    Fernet(key)  # a valid key
    # Another process (the API beside the worker) shares the key and reads the same secret.
    reopened = await Store.open(settings)
    try:
        assert (await reopened.connections.resolve("notion")).secret == {"token": TOKEN}
    finally:
        await reopened.close()
    assert key_file.read_text().strip() == key


async def test_a_configured_key_is_used_instead_of_a_key_file(settings: Settings) -> None:
    key = Fernet.generate_key().decode()
    configured = settings.model_copy(update={"secret_key": key})
    async with await Store.open(configured) as store:
        await store.connections.put("notion", "bearer", {}, {"token": TOKEN})
        assert not (settings.data_dir / "secret.key").exists()
        async with store.sessions() as session:
            token = (await session.scalars(select(Connection.secret_encrypted))).one()
        assert Fernet(key.encode()).decrypt(token.encode()) == b'{"token": "tok-SUPER-secret-4242"}'


async def test_nothing_that_holds_a_secret_shows_it_in_its_repr(store: Store) -> None:
    key = Fernet.generate_key().decode()
    box = SecretBox(key=key)
    await store.connections.put("notion", "bearer", {}, {"token": TOKEN})
    resolved = await store.connections.resolve("notion")
    for holder in (resolved, box, store.connections, store, ConnectionStore(store.sessions, box)):
        assert TOKEN not in repr(holder) and key not in repr(holder), repr(holder)
    assert TOKEN not in str(resolved)
    assert "token" in repr(resolved)  # which field is set is fine to show


INVALID: list[tuple[str, str, dict[str, Any], dict[str, Any], str]] = [
    (
        "svc",
        "oauth",
        {},
        {"token": TOKEN},
        "unknown connection type 'oauth'; use one of bearer, api_key, basic, openai",
    ),
    ("svc", "bearer", {}, {}, "needs the secret field(s): token"),
    ("svc", "bearer", {}, {"token": ""}, "needs the secret field(s): token"),
    ("svc", "bearer", {}, {"token": TOKEN, "tokn": TOKEN}, "does not take the secret field(s) tokn"),
    ("svc", "bearer", {"token": TOKEN}, {"token": TOKEN}, "token is a secret; pass it in the secret"),
    ("svc", "api_key", {}, {"token": TOKEN}, "needs the secret field(s): key"),
    ("svc", "api_key", {"header": "X-Key", "query_param": "k"}, {"key": TOKEN}, "either config header or"),
    ("svc", "basic", {}, {"password": TOKEN}, "needs the config field(s): username"),
    ("svc", "basic", {"username": "ada"}, {}, "needs the secret field(s): password"),
    ("svc", "openai", {"base_url": "https://x"}, {}, "needs the secret field(s): api_key"),
    ("svc", "openai", {}, {"api_key": TOKEN}, "needs the config field(s): base_url"),
    ("svc", "openai", {"base_url": "ftp://x"}, {"api_key": TOKEN}, "base_url must be an http(s) URL"),
    ("svc", "bearer", {}, {"token": 42}, "must be strings"),
    ("has space", "bearer", {}, {"token": TOKEN}, "invalid connection id 'has space'"),
]


@pytest.mark.parametrize(
    ("id_", "type_", "config", "secret", "message"), INVALID, ids=[case[4][:40] for case in INVALID]
)
async def test_invalid_connections_are_rejected_with_a_clear_message(
    store: Store, id_: str, type_: str, config: dict[str, Any], secret: dict[str, Any], message: str
) -> None:
    with pytest.raises(EngineError) as caught:
        await store.connections.put(id_, type_, config, secret)
    assert caught.value.category is ErrorCategory.VALIDATION
    assert message in caught.value.message
    assert TOKEN not in caught.value.message
    assert await store.connections.list_public() == []


async def test_processes_racing_to_create_the_key_file_end_up_sharing_one_key(tmp_path: Path) -> None:
    key_file = tmp_path / "fresh" / "secret.key"
    boxes = [SecretBox(key_file=key_file) for _ in range(8)]
    tokens = await asyncio.gather(*(asyncio.to_thread(box.encrypt, {"token": TOKEN}) for box in boxes))
    reader = SecretBox(key_file=key_file)
    assert all(reader.decrypt(token, connection_id="x") == {"token": TOKEN} for token in tokens)
    assert [path.name for path in key_file.parent.iterdir()] == ["secret.key"]  # no temp files left
