"""Saved run presets: CRUD, and starting a run from one."""

from __future__ import annotations

import uuid

from temporalio.client import Client

from rte.store.api_keys import Role
from tests.api.conftest import ApiServer

SOURCE = """
id: {id}
inputs:
  type: object
  properties:
    name: {{type: string, default: World}}
    punctuation: {{type: string, default: "."}}
steps:
  - id: hello
    kind: set
    with: {{text: "Hello ${{ .inputs.name }}${{ .inputs.punctuation }}"}}
outputs: "${{ .steps.hello.output.text }}"
"""


async def test_presets_are_saved_listed_changed_and_deleted(api_server: ApiServer) -> None:
    definition_id = f"pre-{uuid.uuid4().hex[:8]}"
    async with api_server.client(Role.ADMIN) as admin:
        assert (
            await admin.post("/definitions", json={"source": SOURCE.format(id=definition_id)})
        ).status_code == 201
    async with api_server.client(Role.OPERATOR) as http:
        created = await http.post(
            "/presets",
            json={
                "definition_id": definition_id,
                "name": "nightly",
                "params": {"name": "Night"},
                "config": {"error_mode": "continue", "timeout_s": 60},
            },
        )
        assert created.status_code == 201, created.text
        preset = created.json()
        assert preset["config"]["error_mode"] == "continue" and preset["config"]["timeout_s"] == 60
        duplicate = await http.post("/presets", json={"definition_id": definition_id, "name": "nightly"})
        assert (
            duplicate.status_code == 409
            and "already has a preset named 'nightly'" in duplicate.json()["detail"]
        )
        orphan = await http.post("/presets", json={"definition_id": "no-such-def", "name": "x"})
        assert orphan.status_code == 404

        changed = await http.patch(f"/presets/{preset['id']}", json={"params": {"name": "Moon"}})
        assert changed.status_code == 200 and changed.json()["params"] == {"name": "Moon"}
        assert changed.json()["name"] == "nightly"  # untouched fields stay
        listed = (await http.get("/presets", params={"definition_id": definition_id})).json()
        assert [item["name"] for item in listed] == ["nightly"]
        assert (await http.get(f"/presets/{preset['id']}")).json()["params"] == {"name": "Moon"}

        assert (await http.delete(f"/presets/{preset['id']}")).status_code == 204
        assert (await http.get(f"/presets/{preset['id']}")).status_code == 404
        assert (await http.delete(f"/presets/{preset['id']}")).status_code == 404


async def test_a_run_from_a_preset_uses_its_values_and_the_request_overrides_them(
    api_server: ApiServer, client: Client
) -> None:
    definition_id = f"pre-{uuid.uuid4().hex[:8]}"
    async with api_server.client(Role.ADMIN) as admin:
        await admin.post("/definitions", json={"source": SOURCE.format(id=definition_id)})
    async with api_server.client(Role.OPERATOR) as http:
        preset = (
            await http.post(
                "/presets",
                json={
                    "definition_id": definition_id,
                    "name": "loud",
                    "params": {"name": "Ada", "punctuation": "!"},
                },
            )
        ).json()
        plain = await http.post(f"/definitions/{definition_id}/runs", json={"preset_id": preset["id"]})
        overridden = await http.post(
            f"/definitions/{definition_id}/runs", json={"preset_id": preset["id"], "params": {"name": "Bob"}}
        )
        unknown = await http.post(f"/definitions/{definition_id}/runs", json={"preset_id": "nope"})
    assert plain.status_code == 202 and overridden.status_code == 202
    assert await client.get_workflow_handle(plain.json()["execution_id"]).result() == "Hello Ada!"
    assert await client.get_workflow_handle(overridden.json()["execution_id"]).result() == "Hello Bob!"
    assert unknown.status_code == 422 and "no preset with id 'nope'" in unknown.json()["detail"]
    assert unknown.json()["violations"][0]["path"] == "$.preset_id"
