"""The workflows a `run: workflow` task can name, by namespace, name and version.

A child workflow runs on the same interpreter, so its plan must travel with the parent's: when a
document is compiled, each `run: workflow` is looked up here and the child's plan is embedded in the
step (the parent's hash then covers exactly what will run). A name that is not found compiles with a
warning, and the task fails with a configuration error if it ever runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from workflows.plan import Plan

LATEST = "latest"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("-", 1)[0])[:3])


@dataclass
class WorkflowCatalog:
    plans: dict[tuple[str, str, str], Plan] = field(default_factory=dict)

    def add(self, plan: Plan) -> None:
        """Make a compiled Serverless Workflow plan available to `run: workflow` tasks."""
        document = (plan.document or {}).get("document") or {}
        key = (str(document.get("namespace")), str(document.get("name")), str(document.get("version")))
        self.plans[key] = plan

    def find(self, namespace: str, name: str, version: str) -> Plan | None:
        if version != LATEST:
            return self.plans.get((namespace, name, version))
        versions = [key for key in self.plans if key[:2] == (namespace, name)]
        return self.plans[max(versions, key=lambda key: _version_key(key[2]))] if versions else None


default_catalog = WorkflowCatalog()
