"""Connections through the API: secrets are write-only, encrypted, never returned; verify really calls."""

from __future__ import annotations

import logging
import uuid

import pytest
from sqlalchemy import text

from rte.store import Store
from rte.store.api_keys import Role
from tests.api.conftest import ApiServer
from tests.support.http_server import Reply, TestServer

SECRET = "sup3r-s3cret-value"


async def test_a_secret_is_stored_encrypted_and_never_returned(
    api_server: ApiServer, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    connection_id = f"crm-{uuid.uuid4().hex[:6]}"
    body = {"type": "bearer", "config": {"base_url": "https://crm.example"}, "secret": {"token": SECRET}}
    async with api_server.client(Role.ADMIN) as http:
        put = await http.put(f"/connections/{connection_id}", json=body)
        assert put.status_code == 200, put.text
        one = await http.get(f"/connections/{connection_id}")
        listed = await http.get("/connections")
        bad = await http.put(f"/connections/{connection_id}", json=body | {"config": {"token": SECRET}})
    for response in (put, one, listed, bad):
        assert SECRET not in response.text
    assert one.json()["secret_fields"] == ["token"] and one.json()["config"] == {
        "base_url": "https://crm.example"
    }
    assert bad.status_code == 422 and "is a secret" in bad.json()["detail"]
    async with store.sessions() as session:
        stored = (
            await session.execute(
                text("SELECT secret_encrypted FROM connections WHERE id = :id"), {"id": connection_id}
            )
        ).scalar_one()
    assert SECRET not in stored
    assert (await store.connections.resolve(connection_id)).secret == {"token": SECRET}
    assert SECRET not in caplog.text
    spec = (await api_server.client(Role.VIEWER).get("/openapi.json")).json()
    secret_schema = spec["components"]["schemas"]["ConnectionIn"]["properties"]["secret"]
    assert secret_schema["writeOnly"] is True


async def test_viewers_read_connections_but_only_admins_change_them(api_server: ApiServer) -> None:
    body = {"type": "bearer", "config": {}, "secret": {"token": "x"}}
    async with api_server.client(Role.OPERATOR) as http:
        assert (await http.put("/connections/nope", json=body)).status_code == 403
        assert (await http.get("/connections")).status_code == 200
    async with api_server.client(Role.ADMIN) as http:
        assert (await http.delete("/connections/never-made")).status_code == 404
        assert (await http.get("/connections/never-made")).status_code == 404


async def test_verify_sends_a_real_request_with_the_credentials(
    api_server: ApiServer, http_server: TestServer
) -> None:
    http_server.route("GET", "/health", Reply(200, {"ok": True}), Reply(401, {"error": "bad token"}))
    connection_id = f"svc-{uuid.uuid4().hex[:6]}"
    body = {"type": "bearer", "config": {"base_url": http_server.url}, "secret": {"token": SECRET}}
    async with api_server.client(Role.ADMIN) as http:
        await http.put(f"/connections/{connection_id}", json=body)
        good = await http.post(f"/connections/{connection_id}/verify", json={"path": "/health"})
        refused = await http.post(f"/connections/{connection_id}/verify", json={"path": "/health"})
        await http.put(
            f"/connections/{connection_id}", json=body | {"config": {"base_url": "http://127.0.0.1:9"}}
        )
        unreachable = await http.post(f"/connections/{connection_id}/verify", json={"path": "/"})
        await http.put(f"/connections/{connection_id}", json=body | {"config": {}})
        nowhere = await http.post(f"/connections/{connection_id}/verify")
    assert good.status_code == 200 and good.json()["ok"] is True and good.json()["status_code"] == 200
    assert http_server.calls("/health")[0].headers["Authorization"] == f"Bearer {SECRET}"
    assert refused.json()["ok"] is False and "refused these credentials" in refused.json()["message"]
    assert unreachable.json()["ok"] is False and "cannot reach" in unreachable.json()["message"]
    assert nowhere.status_code == 409 and "base_url" in nowhere.json()["detail"]
    for response in (good, refused, unreachable, nowhere):
        assert SECRET not in response.text
