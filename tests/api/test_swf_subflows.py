"""A Serverless Workflow `run: workflow` names another stored workflow: the API resolves it from the
definitions store when the parent is saved, and the run executes the child as a child workflow."""

from __future__ import annotations

import uuid

from temporalio.client import Client

from rte.store.api_keys import Role
from tests.api.conftest import ApiServer

CHILD = """
document: {{dsl: '1.0.0', namespace: {ns}, name: greet-{tag}, version: '1.0.0'}}
do:
  - greet:
      set:
        greeting: ${{ "Hello " + .name }}
"""

PARENT = """
document: {{dsl: '1.0.0', namespace: {ns}, name: onboard-{tag}, version: '1.0.0'}}
do:
  - welcome:
      run:
        workflow:
          namespace: {ns}
          name: greet-{tag}
          version: '1.0.0'
          input:
            name: ${{ .user }}
"""


async def test_parent_saved_after_its_child_runs_the_child(api_server: ApiServer, client: Client) -> None:
    tag = uuid.uuid4().hex[:8]
    async with api_server.client(Role.ADMIN) as admin:
        child = await admin.post("/definitions", json={"source": CHILD.format(ns="test", tag=tag)})
        assert child.status_code == 201, child.text
        parent = await admin.post("/definitions", json={"source": PARENT.format(ns="test", tag=tag)})
        assert parent.status_code == 201, parent.text
        warnings = [d for d in parent.json()["warnings"] if d["code"] == "W110"]
        assert warnings == []  # the child was found in the store
    async with api_server.client(Role.OPERATOR) as http:
        started = await http.post(f"/definitions/onboard-{tag}/runs", json={"params": {"user": "Ada"}})
        assert started.status_code == 202, started.text
    output = await client.get_workflow_handle(started.json()["execution_id"]).result()
    assert output == {"greeting": "Hello Ada"}


async def test_parent_whose_child_is_unknown_compiles_with_a_warning(api_server: ApiServer) -> None:
    tag = uuid.uuid4().hex[:8]
    async with api_server.client(Role.ADMIN) as admin:
        parent = await admin.post("/definitions", json={"source": PARENT.format(ns="test", tag=tag)})
    assert parent.status_code == 201, parent.text
    codes = [d["code"] for d in parent.json()["warnings"]]
    assert "W110" in codes
