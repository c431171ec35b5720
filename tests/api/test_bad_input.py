"""Bad input is a clear 4xx problem and never changes what is stored: malformed JSON, wrong types,
unknown fields, huge bodies, unknown ids, invalid cursors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from rte.store import Store
from rte.store.api_keys import Role
from tests.api.conftest import ApiServer

SOURCE = """
id: {id}
steps:
  - id: hello
    kind: set
    with: {{text: hello}}
"""


def assert_problem(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    for word in words:
        assert word in problem["detail"], (word, problem["detail"])


@pytest.fixture
async def stored(api_server: ApiServer) -> AsyncIterator[dict[str, str]]:
    """A definition, a connection and a preset that the bad requests aim at."""
    suffix = uuid.uuid4().hex[:8]
    names = {"definition": f"bad-{suffix}", "connection": f"conn-{suffix}"}
    async with api_server.client(Role.ADMIN) as http:
        assert (
            await http.post("/definitions", json={"source": SOURCE.format(id=names["definition"])})
        ).status_code == 201
        connection = {
            "type": "bearer",
            "config": {"base_url": "https://a.example"},
            "secret": {"token": "keep-me"},
        }
        assert (await http.put(f"/connections/{names['connection']}", json=connection)).status_code == 200
        preset = await http.post(
            "/presets", json={"definition_id": names["definition"], "name": "kept", "params": {"a": 1}}
        )
        names["preset"] = preset.json()["id"]
    yield names


async def snapshot(http: httpx.AsyncClient, names: dict[str, str]) -> list[object]:
    return [
        (await http.get(f"/definitions/{names['definition']}/versions")).json(),
        (await http.get(f"/definitions/{names['definition']}")).json()["source"],
        (await http.get(f"/connections/{names['connection']}")).json(),
        (await http.get(f"/presets/{names['preset']}")).json(),
    ]


async def test_malformed_json_wrong_types_and_unknown_fields_are_422_problems(
    api_server: ApiServer, stored: dict[str, str], store: Store
) -> None:
    async with api_server.client(Role.ADMIN) as http:
        before = await snapshot(http, stored)
        definition, connection, preset = stored["definition"], stored["connection"], stored["preset"]
        malformed = await http.put(
            f"/connections/{connection}",
            content=b'{"type": "bearer", "secret": {',
            headers={"content-type": "application/json"},
        )
        assert_problem(malformed, 422, "JSON")
        wrong_type = await http.post("/definitions", json={"source": 42})
        assert_problem(wrong_type, 422)
        assert wrong_type.json()["violations"][0]["path"] == "$.source"
        unknown_field = await http.patch(f"/presets/{preset}", json={"params": {}, "colour": "red"})
        assert_problem(unknown_field, 422)
        assert unknown_field.json()["violations"][0]["path"] == "$.colour"
        wrong_nested = await http.patch(f"/presets/{preset}", json={"config": {"timeout_s": "soon"}})
        assert_problem(wrong_nested, 422)
        assert wrong_nested.json()["violations"][0]["path"] == "$.config.timeout_s"
        bad_secret = await http.put(f"/connections/{connection}", json={"type": "bearer", "secret": {}})
        assert_problem(bad_secret, 422, "token")
        broken = await http.put(f"/definitions/{definition}", json={"source": "id: [unclosed"})
        assert_problem(broken, 422)
        not_a_list = await http.post("/executions/bulk", json={"action": "cancel", "ids": "abc"})
        assert_problem(not_a_list, 422)
        assert await snapshot(http, stored) == before
    assert (await store.connections.resolve(connection)).secret == {"token": "keep-me"}


async def test_bodies_over_the_limit_are_413_problems_with_or_without_a_length(
    api_server: ApiServer, stored: dict[str, str]
) -> None:
    limit = api_server.settings.api_max_body_bytes
    huge = b'{"source": "' + b"x" * limit + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(huge), 65_536):
            yield huge[start : start + 65_536]

    async with api_server.client(Role.ADMIN) as http:
        before = await snapshot(http, stored)
        declared = await http.put(
            f"/definitions/{stored['definition']}", content=huge, headers={"content-type": "application/json"}
        )
        assert_problem(declared, 413, f"{limit:,} bytes")
        streamed = await http.put(
            f"/definitions/{stored['definition']}",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert_problem(streamed, 413, "limit")
        assert await snapshot(http, stored) == before
        small = await http.post("/compilations", json={"source": SOURCE.format(id="small")})
        assert small.status_code == 201  # the limit leaves ordinary bodies alone


async def test_unknown_ids_are_404_problems_that_name_what_was_not_found(api_server: ApiServer) -> None:
    async with api_server.client(Role.ADMIN) as http:
        for path in (
            "/definitions/no-such-definition",
            "/definitions/no-such-definition/versions",
            "/definitions/no-such-definition/input",
            "/compilations/no-such-compilation",
            "/presets/no-such-preset",
            "/connections/no-such-connection",
            "/executions/no-such-execution",
        ):
            assert_problem(await http.get(path), 404, "no-such-")
        assert_problem(
            await http.post("/definitions/no-such-definition/runs", json={}), 404, "no-such-definition"
        )
        assert_problem(await http.post("/connections/no-such-connection/verify"), 404, "no-such-connection")
        assert_problem(await http.post("/executions/no-such-execution/cancel"), 404, "no-such-execution")
        invalid_id = await http.get("/definitions/Not Valid!")
        assert_problem(invalid_id, 422)


async def test_invalid_cursors_and_filters_are_4xx_problems(api_server: ApiServer) -> None:
    async with api_server.client(Role.VIEWER) as http:
        assert_problem(await http.get("/executions", params={"cursor": "!!!"}), 400, "cursor")
        assert_problem(await http.get("/executions", params={"cursor": "QUJDREVGR0hJSktM"}), 400, "cursor")
        assert_problem(await http.get("/executions", params={"status": "sleeping"}), 422)
        assert_problem(await http.get("/executions", params={"page_size": 0}), 422)
        assert_problem(await http.get("/executions", params={"started_after": "yesterday"}), 422)
        assert_problem(await http.get("/executions/export", params={"format": "xml"}), 422)
