"""Access control: keys with roles, checked on every endpoint."""

from __future__ import annotations

from datetime import timedelta

import httpx

from rte.store import Store
from rte.store.api_keys import Role
from tests.api.conftest import ApiServer


async def test_health_needs_no_key_and_reports_dependencies(api_server: ApiServer) -> None:
    async with api_server.client(role=None) as http:
        response = await http.get("/health")
    assert response.status_code == 200
    assert response.json()["checks"] == {"temporal": "ok", "database": "ok"}


async def test_missing_malformed_unknown_and_expired_keys_are_401_problems(
    api_server: ApiServer, store: Store
) -> None:
    expired = await store.api_keys.create("old", Role.ADMIN, expires_in=timedelta(seconds=-1))
    revoked = await store.api_keys.create("gone", Role.ADMIN)
    await store.api_keys.revoke(revoked.info.id)
    cases = {
        None: "an API key is required",
        "Basic abc": "use 'Authorization: Bearer <API key>'",
        "Bearer nonsense": "malformed API key",
        "Bearer rte_000000000000_" + "x" * 40: "unknown API key",
        f"Bearer {expired.key}": "expired",
        f"Bearer {revoked.key}": "revoked",
    }
    async with httpx.AsyncClient(base_url=api_server.url) as http:
        for header, message in cases.items():
            response = await http.get("/keys", headers={"Authorization": header} if header else {})
            assert response.status_code == 401, (header, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert message in response.json()["detail"]


async def test_roles_are_ordered_viewer_operator_admin() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR) and Role.OPERATOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.OPERATOR) and not Role.OPERATOR.allows(Role.ADMIN)


async def test_key_management_is_admin_only_and_never_returns_secrets(api_server: ApiServer) -> None:
    async with api_server.client(Role.OPERATOR) as http:
        response = await http.post("/keys", json={"name": "ci", "role": "viewer"})
        assert response.status_code == 403
        assert "needs the admin role" in response.json()["detail"]
    async with api_server.client(Role.ADMIN) as http:
        created = await http.post("/keys", json={"name": "ci", "role": "viewer"})
        assert created.status_code == 201
        key = created.json()["key"]
        listed = (await http.get("/keys")).json()
        assert key not in str(listed)
        assert any(item["name"] == "ci" and item["role"] == "viewer" for item in listed)
        bad = await http.post("/keys", json={"name": "x", "role": "root"})
        assert bad.status_code == 422
        assert bad.json()["violations"][0]["path"] == "$.role"
    async with httpx.AsyncClient(base_url=api_server.url, headers={"Authorization": f"Bearer {key}"}) as http:
        assert (await http.get("/keys")).status_code == 403  # a viewer cannot read keys
    async with api_server.client(Role.ADMIN) as http:
        key_id = created.json()["id"]
        assert (await http.delete(f"/keys/{key_id}")).status_code == 204
        assert (await http.delete(f"/keys/{key_id}")).status_code == 404
    async with httpx.AsyncClient(base_url=api_server.url, headers={"Authorization": f"Bearer {key}"}) as http:
        assert "revoked" in (await http.get("/keys")).json()["detail"]
