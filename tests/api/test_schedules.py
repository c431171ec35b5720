"""Scheduled runs through Temporal Schedules, over real HTTP: interval and cron schedules, pause,
unpause, trigger, delete, and the validation a caller sees."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from temporalio.client import Client

from rte import temporal as sa
from rte.store import Store
from rte.store.api_keys import Role
from tests.api.conftest import ApiServer
from workflows.compiler import compile_source

GREET = """
id: ID
inputs:
  type: object
  required: [name]
  properties:
    name: {type: string, minLength: 1}
    times: {type: integer, minimum: 1, default: 1}
steps:
  - id: hello
    kind: set
    with: {text: "Hello ${ .inputs.name } x${ .inputs.times }"}
outputs: "${ .steps.hello.output.text }"
"""


async def saved_definition(store: Store, prefix: str = "greet") -> str:
    """A definition saved in the store, as POST /definitions would; answers its id."""
    source = GREET.replace("ID", f"{prefix}-{uuid.uuid4().hex[:8]}")
    plan = compile_source(source).plan
    assert plan is not None
    await store.definitions.save(
        plan.definition_id,
        plan.name,
        "",
        "native",
        source,
        plan.model_dump(mode="json", by_alias=True),
        plan.hash,
    )
    return plan.definition_id


async def first_run(http: httpx.AsyncClient, schedule_id: str) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            schedule = (await http.get(f"/schedules/{schedule_id}")).json()
            if schedule["recent_runs"]:
                return schedule["recent_runs"][0]
            await asyncio.sleep(0.2)


async def test_an_interval_schedule_starts_runs_marked_as_scheduled(
    api_server: ApiServer, client: Client, store: Store
) -> None:
    definition = await saved_definition(store)
    async with api_server.client(Role.OPERATOR) as http:
        response = await http.post(
            "/schedules",
            json={
                "id": f"{definition}-often",
                "definition_id": definition,
                "params": {"name": "Ada"},
                "every": "1s",
            },
        )
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["params"] == {"name": "Ada", "times": 1}  # defaults applied once, at creation
        assert created["every_s"] == 1.0 and created["definition_version"] == "1"
        assert not created["paused"] and created["next_runs"]
        run = await first_run(http, created["id"])
        assert run["execution_id"].startswith(f"{definition}-often-")
        handle = client.get_workflow_handle(run["execution_id"])
        assert await handle.result() == "Hello Ada x1"
        description = await handle.describe()
        assert description.typed_search_attributes.get(sa.TRIGGER_TYPE) == "schedule"
        assert description.typed_search_attributes.get(sa.DEFINITION_ID) == definition

        paused = (await http.post(f"/schedules/{created['id']}/pause", json={"note": "maintenance"})).json()
        assert paused["paused"] is True and paused["note"] == "maintenance"
        assert paused["next_runs"] == []  # nothing is due while paused
        assert (await http.get(f"/schedules/{created['id']}")).json()["next_runs"] == []
        unpaused = (await http.post(f"/schedules/{created['id']}/unpause")).json()
        assert unpaused["paused"] is False and unpaused["next_runs"]
        assert (await http.delete(f"/schedules/{created['id']}")).status_code == 204
        gone = await http.get(f"/schedules/{created['id']}")
        assert gone.status_code == 404 and gone.headers["content-type"] == "application/problem+json"


async def test_a_cron_schedule_keeps_its_time_zone_and_can_be_triggered_and_listed(
    api_server: ApiServer, client: Client, store: Store
) -> None:
    definition = await saved_definition(store)
    async with api_server.client(Role.OPERATOR) as http:
        response = await http.post(
            "/schedules",
            json={
                "definition_id": definition,
                "params": {"name": "Grace", "times": 2},
                "cron": ["0 6 * * MON-FRI"],
                "time_zone": "Europe/Paris",
                "paused": True,
                "note": "starts next week",
            },
        )
        assert response.status_code == 201, response.text
        schedule = response.json()
        assert schedule["id"].startswith(f"{definition}-") and schedule["cron"] == ["0 6 * * MON-FRI"]
        assert schedule["paused"] and schedule["note"] == "starts next week"
        assert schedule["next_runs"] == []  # created paused: nothing is due
        triggered = await http.post(f"/schedules/{schedule['id']}/trigger")
        assert triggered.status_code == 202
        run = await first_run(http, schedule["id"])
        assert await client.get_workflow_handle(run["execution_id"]).result() == "Hello Grace x2"
        async with api_server.client(Role.VIEWER) as viewer, asyncio.timeout(15):
            while True:  # visibility is eventually consistent
                listed = (await viewer.get("/schedules", params={"definition_id": definition})).json()
                if listed:
                    break
                await asyncio.sleep(0.2)
        assert [item["id"] for item in listed] == [schedule["id"]]
        assert listed[0]["paused"] and listed[0]["time_zone"] == "Europe/Paris"
        assert listed[0]["next_runs"] == []
        unpaused = (await http.post(f"/schedules/{schedule['id']}/unpause")).json()
        assert unpaused["next_runs"]
        for due in unpaused["next_runs"]:
            local = datetime.fromisoformat(due).astimezone(ZoneInfo("Europe/Paris"))
            assert (local.hour, local.minute) == (6, 0) and local.weekday() < 5
        assert (await http.delete(f"/schedules/{schedule['id']}")).status_code == 204


async def test_schedule_requests_are_checked_before_anything_is_scheduled(
    api_server: ApiServer, store: Store
) -> None:
    definition = await saved_definition(store)
    base = {"definition_id": definition, "params": {"name": "Ada"}, "every": "1h"}
    async with api_server.client(Role.VIEWER) as viewer:
        assert (await viewer.post("/schedules", json=base)).status_code == 403
    async with api_server.client(Role.OPERATOR) as http:
        bad_params = await http.post("/schedules", json=base | {"params": {"times": 0}})
        assert bad_params.status_code == 422
        assert {v["path"] for v in bad_params.json()["violations"]} == {"$.name", "$.times"}
        cases = {
            "no_when": ({"every": None}, 422),
            "bad_cron": ({"cron": ["61 * * * *"]}, 422),
            "bad_zone": ({"time_zone": "Mars/Olympus"}, 422),
            "bad_every": ({"every": "soon"}, 422),
            "too_often": ({"every": "100ms"}, 422),
            "unknown_definition": ({"definition_id": "no-such-definition"}, 404),
            "unknown_version": ({"version": "99"}, 404),
        }
        for name, (change, expected) in cases.items():
            response = await http.post("/schedules", json=base | change)
            assert response.status_code == expected, (name, response.text)
            assert response.headers["content-type"] == "application/problem+json"
        created = await http.post("/schedules", json=base | {"id": f"{definition}-once", "paused": True})
        assert created.status_code == 201, created.text
        again = await http.post("/schedules", json=base | {"id": f"{definition}-once"})
        assert again.status_code == 409
        assert (await http.post("/schedules/nope-nope/pause")).status_code == 404
        assert (await http.delete(f"/schedules/{definition}-once")).status_code == 204
