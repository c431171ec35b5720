"""Webhooks over real HTTP: a URL per definition that starts a run from its body, authenticated by
its own token (never an API key), with the trigger recorded on the execution."""

from __future__ import annotations

import asyncio

import httpx
from fastapi.routing import APIRoute
from temporalio.client import Client

from api.routes import webhooks
from rte import temporal as sa
from rte.store import Store
from rte.store.api_keys import Role
from tests.api.conftest import ApiServer
from tests.api.test_schedules import saved_definition


async def test_a_webhook_starts_a_run_from_its_body_with_its_own_token(
    api_server: ApiServer, client: Client, store: Store
) -> None:
    definition = await saved_definition(store, "hook")
    async with api_server.client(Role.ADMIN) as admin:
        response = await admin.post("/webhooks", json={"definition_id": definition, "name": "shop"})
    assert response.status_code == 201, response.text
    hook = response.json()
    assert hook["url"] == f"{api_server.url}/hooks/{definition}" and hook["token"].startswith("whk_")

    async with httpx.AsyncClient(timeout=30) as sender:  # another system: no API key at all
        by_header = await sender.post(
            hook["url"], json={"name": "Ada"}, headers={"X-Webhook-Token": hook["token"]}
        )
        by_query = await sender.post(
            hook["url"], params={"token": hook["token"]}, json={"name": "Bob", "times": 3}
        )
    assert by_header.status_code == 202, by_header.text
    assert by_query.status_code == 202, by_query.text
    started = by_header.json()
    assert started["definition_id"] == definition and started["version"] == "1"
    handle = client.get_workflow_handle(started["execution_id"])
    assert await handle.result() == "Hello Ada x1"
    assert await client.get_workflow_handle(by_query.json()["execution_id"]).result() == "Hello Bob x3"
    description = await handle.describe()
    assert description.typed_search_attributes.get(sa.TRIGGER_TYPE) == "webhook"

    async with api_server.client(Role.VIEWER) as viewer:
        state = (await viewer.get(f"/executions/{started['execution_id']}/state")).json()
        assert state["trigger"] == "webhook" and state["params"] == {"name": "Ada", "times": 1}
        listed = (await viewer.get("/webhooks", params={"definition_id": definition})).json()
        assert [item["id"] for item in listed] == [hook["id"]]
        assert "token" not in listed[0] and hook["token"] not in str(listed) and listed[0]["last_used_at"]
        async with asyncio.timeout(15):
            while (
                True
            ):  # the trigger is filterable in the execution list (visibility is eventually consistent)
                page = (
                    await viewer.get(
                        "/executions", params={"definition_id": definition, "trigger": "webhook"}
                    )
                ).json()
                if len(page["items"]) == 2:
                    break
                await asyncio.sleep(0.2)
        assert {item["trigger"] for item in page["items"]} == {"webhook"}


async def test_webhooks_refuse_missing_wrong_foreign_and_deleted_tokens(
    api_server: ApiServer, store: Store
) -> None:
    definition = await saved_definition(store, "hook")
    other = await saved_definition(store, "hook")
    async with api_server.client(Role.OPERATOR) as operator:
        refused = await operator.post("/webhooks", json={"definition_id": definition, "name": "x"})
        assert refused.status_code == 403  # webhooks mint credentials: admins only
    async with api_server.client(Role.ADMIN) as admin:
        hook = (await admin.post("/webhooks", json={"definition_id": definition, "name": "shop"})).json()
        foreign = (await admin.post("/webhooks", json={"definition_id": other, "name": "other"})).json()
        missing = await admin.post("/webhooks", json={"definition_id": "no-such-definition", "name": "x"})
        assert missing.status_code == 404
        # An admin's API key does not open a webhook: only its token does.
        with_api_key = await admin.post(f"/hooks/{definition}", json={"name": "Ada"})
        assert with_api_key.status_code == 401

    url = f"{api_server.url}/hooks/{definition}"
    async with httpx.AsyncClient(timeout=30) as sender:
        cases = {
            "wrong": {"X-Webhook-Token": hook["token"][:-4] + "xxxx"},
            "malformed": {"X-Webhook-Token": "let-me-in"},
            "of another definition": {"X-Webhook-Token": foreign["token"]},
        }
        for name, headers in cases.items():
            response = await sender.post(url, json={"name": "Ada"}, headers=headers)
            assert response.status_code == 401, (name, response.text)
            assert response.headers["content-type"] == "application/problem+json"
        invalid = await sender.post(url, json={"times": 0}, headers={"X-Webhook-Token": hook["token"]})
        assert invalid.status_code == 422
        assert {v["path"] for v in invalid.json()["violations"]} == {"$.name", "$.times"}
        not_an_object = await sender.post(url, json=[1, 2], headers={"X-Webhook-Token": hook["token"]})
        assert not_an_object.status_code == 422

        async with api_server.client(Role.ADMIN) as admin:
            assert (await admin.delete(f"/webhooks/{hook['id']}")).status_code == 204
            assert (await admin.delete(f"/webhooks/{hook['id']}")).status_code == 404
        revoked = await sender.post(url, json={"name": "Ada"}, headers={"X-Webhook-Token": hook["token"]})
        assert revoked.status_code == 401


def test_the_webhook_route_is_marked_as_token_authenticated_not_by_role() -> None:
    routes = {route.path: route for route in webhooks.router.routes if isinstance(route, APIRoute)}
    hook = routes["/hooks/{definition_id}"]
    assert hook.tags == ["webhooks"]
    calls = {dependency.call for dependency in hook.dependant.dependencies}
    assert webhooks.webhook in calls
    assert all(
        getattr(call, "__name__", "") != "check" for call in calls
    )  # no ViewerKey/OperatorKey/AdminKey
    assert all(
        "webhooks" not in route.tags for path, route in routes.items() if path != "/hooks/{definition_id}"
    )
