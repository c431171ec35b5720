"""Definitions and compilations through the API: versions, diagnostics, artifacts."""

from __future__ import annotations

import uuid

from rte.store.api_keys import Role
from tests.api.conftest import ApiServer


def source(definition_id: str, greeting: str = "Hello") -> str:
    return f"""
id: {definition_id}
description: Greets someone
inputs:
  type: object
  required: [name]
  properties:
    name: {{type: string}}
steps:
  - id: hello
    kind: set
    with: {{text: "{greeting} ${{ .inputs.name }}"}}
outputs: "${{ .steps.hello.output.text }}"
"""


def new_id() -> str:
    return f"def-{uuid.uuid4().hex[:8]}"


async def test_saving_creates_a_version_per_change_and_keeps_the_old_ones(api_server: ApiServer) -> None:
    definition_id = new_id()
    async with api_server.client(Role.ADMIN) as http:
        first = await http.post("/definitions", json={"source": source(definition_id)})
        assert first.status_code == 201, first.text
        assert first.json()["definition"]["version"] == "1" and first.json()["changed"] is True
        same = await http.post("/definitions", json={"source": source(definition_id)})
        assert same.status_code == 200 and same.json()["changed"] is False
        assert same.json()["definition"]["version"] == "1"
        second = await http.put(f"/definitions/{definition_id}", json={"source": source(definition_id, "Hi")})
        assert second.status_code == 201 and second.json()["definition"]["version"] == "2"

        latest = (await http.get(f"/definitions/{definition_id}")).json()
        assert latest["version"] == "2" and "Hi ${" in latest["source"]
        assert latest["plan"]["definition_id"] == definition_id
        old = (await http.get(f"/definitions/{definition_id}", params={"version": "1"})).json()
        assert "Hello ${" in old["source"] and old["plan_hash"] != latest["plan_hash"]
        versions = (await http.get(f"/definitions/{definition_id}/versions")).json()
        assert [v["version"] for v in versions] == ["1", "2"]
        listed = {d["id"]: d for d in (await http.get("/definitions")).json()}
        assert listed[definition_id]["version"] == "2"
        assert listed[definition_id]["description"] == "Greets someone"
        missing = await http.get(f"/definitions/{definition_id}", params={"version": "9"})
        assert missing.status_code == 404 and "has no version '9'" in missing.json()["detail"]


async def test_source_that_does_not_compile_is_a_422_with_located_diagnostics_and_saves_nothing(
    api_server: ApiServer,
) -> None:
    definition_id = new_id()
    broken = f"""id: {definition_id}
steps:
  - id: fetch
    kind: set
    with: {{a: 1}}
  - id: report
    kind: set
    needs: [fetchh]
    with: {{b: 2}}
"""
    async with api_server.client(Role.ADMIN) as http:
        response = await http.post("/definitions", json={"source": broken, "filename": "broken.yaml"})
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert "fetchh" in problem["detail"] and "at 8:" in problem["detail"]
        diagnostic = problem["diagnostics"][0]
        assert diagnostic["code"] == "E103" and diagnostic["location"].startswith("8:")
        record = (await http.get(f"/compilations/{problem['compilation_id']}")).json()
        assert record["ok"] is False and record["artifacts"] is None
        assert any(stage["status"] == "failed" for stage in record["stages"])
        assert (await http.get(f"/definitions/{definition_id}")).status_code == 404


async def test_compiling_answers_stages_diagnostics_and_artifacts_and_keeps_the_record(
    api_server: ApiServer,
) -> None:
    definition_id = new_id()
    async with api_server.client(Role.ADMIN) as http:
        response = await http.post("/compilations", json={"source": source(definition_id)})
        assert response.status_code == 201, response.text
        compiled = response.json()
    assert compiled["ok"] is True and compiled["definition_id"] == definition_id
    assert [stage["name"] for stage in compiled["stages"]][:2] == ["parse", "schema"]
    assert all(stage["duration_ms"] >= 0 for stage in compiled["stages"])
    artifacts = compiled["artifacts"]
    assert artifacts["mermaid"].startswith("flowchart")
    assert artifacts["input_schema"]["required"] == ["name"]
    assert "hello" in artifacts["code_preview"]
    assert artifacts["plan"]["definition_id"] == definition_id
    assert artifacts["stats"]["critical_path"] == ["hello"]
    async with api_server.client(Role.VIEWER) as http:
        again = await http.get(f"/compilations/{compiled['id']}")
        assert again.status_code == 200 and again.json() == compiled
        unknown = await http.get("/compilations/nope")
        assert unknown.status_code == 404 and "no compilation with id 'nope'" in unknown.json()["detail"]


async def test_put_refuses_a_source_whose_id_is_another_definition(api_server: ApiServer) -> None:
    async with api_server.client(Role.ADMIN) as http:
        response = await http.put("/definitions/some-other", json={"source": source(new_id())})
    assert response.status_code == 409
    assert "PUT /definitions/some-other" in response.json()["detail"]


async def test_deleting_a_definition_removes_every_version(api_server: ApiServer) -> None:
    definition_id = new_id()
    async with api_server.client(Role.ADMIN) as http:
        await http.post("/definitions", json={"source": source(definition_id)})
        await http.post("/definitions", json={"source": source(definition_id, "Hi")})
        assert (await http.delete(f"/definitions/{definition_id}")).status_code == 204
        assert (await http.get(f"/definitions/{definition_id}")).status_code == 404
        assert (await http.get(f"/definitions/{definition_id}/versions")).status_code == 404
        again = await http.delete(f"/definitions/{definition_id}")
        assert again.status_code == 404 and definition_id in again.json()["detail"]
