"""The Serverless Workflow conformance kit: every scenario of its Gherkin feature files, parsed from the
files themselves and run on a real Temporal dev server. Scenarios that call petstore.swagger.io or
httpbin.org run against a local stand-in (the definition's hosts are rewritten). A scenario that needs
a construct outside the supported subset is skipped with the compiler's own diagnostic as reason."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from ruamel.yaml import YAML

from rte.executions import outcome
from tests.conftest import Engine
from tests.swf.conftest import CORPUS, CORPUS_MISSING
from tests.swf.gherkin import Scenario, Step, load_features
from tests.swf.services import PublicServices
from workflows.compiler import compile_source
from workflows.diagnostics import format_diagnostic
from workflows.state import ExecutionState

FEATURES = CORPUS / "ctk" / "features"
SCENARIOS: list[Scenario] = (
    [s for f in load_features(FEATURES) for s in f.scenarios] if FEATURES.is_dir() else []
)
_MISSING = [pytest.param(None, marks=pytest.mark.skip(reason=CORPUS_MISSING), id="corpus-missing")]


def _yaml(text: str | None) -> Any:
    return YAML(typ="safe").load(text or "")


def _at(value: Any, dotted: str) -> Any:
    """The value at a dotted property path; KeyError when a part is missing."""
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


class ScenarioRun:
    """What one scenario has arranged, and what its execution did."""

    def __init__(self, scenario: Scenario, engine: Engine, services: PublicServices) -> None:
        self.scenario, self.engine, self.services = scenario, engine, services
        self.definition: str | None = None
        self.params: dict[str, Any] = {}
        self.ok: bool | None = None
        self.result: Any = None
        self.state: ExecutionState | None = None
        self.trail: list[str] = []

    async def play(self, step: Step) -> None:
        for pattern, action in _STEPS:
            match = pattern.fullmatch(step.text)
            if match:
                await action(self, step, *match.groups())
                return
        pytest.fail(f"{self.scenario.id}: line {step.line}: no implementation for step {step.text!r}")

    # arrange and act ------------------------------------------------------------------------------

    async def define(self, step: Step) -> None:
        self.definition = self.services.local(step.doc or "")

    async def give_input(self, step: Step) -> None:
        self.params = _yaml(step.doc) or {}

    async def execute(self, step: Step) -> None:
        assert self.definition is not None, "the scenario runs before it defines a workflow"
        compilation = compile_source(self.definition, f"{self.scenario.path.stem}.yaml")
        errors = [d for d in compilation.diagnostics if d.severity == "error"]
        if errors and all(d.code == "E110" for d in errors):
            pytest.skip("outside the supported subset: " + "; ".join(d.message for d in errors))
        assert compilation.ok and compilation.plan, "\n".join(
            format_diagnostic(d) for d in compilation.diagnostics
        )
        handle = await self.engine.start(compilation.plan, self.params)
        self.ok, self.result = await outcome(handle)
        self.state = await handle.query("state", result_type=ExecutionState)
        self.trail = [path.rsplit("/", 1)[-1] for path in await handle.query("trail", result_type=list[str])]

    # assert --------------------------------------------------------------------------------------

    def completed(self) -> Any:
        assert self.ok is True, f"the workflow faulted: {self.result}"
        return self.result

    def problem(self) -> dict[str, Any]:
        assert self.ok is False, f"the workflow completed with {self.result!r}"
        return self.result["details"]["problem"]

    async def should_complete(self, step: Step) -> None:
        output = self.completed()
        if step.doc is not None:
            assert output == _yaml(step.doc)

    async def should_fault(self, step: Step) -> None:
        problem = self.problem()
        for key, value in (_yaml(step.doc) or {}).items():
            assert problem.get(key) == value, f"error.{key}: {problem.get(key)!r} != {value!r} in {problem}"

    async def should_cancel(self, step: Step) -> None:
        assert self.ok is False and self.result.get("category") == "cancelled", self.result

    async def should_have_properties(self, step: Step, listed: str) -> None:
        output = self.completed()
        for name in re.findall(r"'([^']+)'", listed):
            _at(output, name)  # raises KeyError naming the missing property

    async def should_have_value(self, step: Step, name: str) -> None:
        assert _at(self.completed(), name) == _yaml(step.doc)

    async def should_have_items(self, step: Step, name: str, count: str) -> None:
        assert len(_at(self.completed(), name)) == int(count)

    async def should_run(self, step: Step, task: str, where: str, other: str | None = None) -> None:
        assert task in self.trail, f"{task} did not run (ran: {self.trail})"
        if where == "first":
            assert self.trail[0] == task, self.trail
        elif where == "last":
            assert self.trail[-1] == task, self.trail
        else:
            assert other in self.trail, f"{other} did not run (ran: {self.trail})"
            before = self.trail.index(task) < self.trail.index(other)
            assert before == (where == "before"), self.trail

    async def task_should(self, step: Step, task: str, outcome_: str) -> None:
        assert self.state is not None
        states = [state for state in self.state.steps.values() if state.id == task]
        assert states, f"no task named {task}"
        status = {"complete": "completed", "fault": "failed", "cancel": "skipped"}[outcome_]
        assert states[0].status == status, states[0]
        if step.doc is not None and outcome_ == "complete":
            assert states[0].output == _yaml(step.doc)


Action = Callable[..., Awaitable[None]]
_STEPS: list[tuple[re.Pattern[str], Action]] = [
    (re.compile(r"a workflow with definition:"), ScenarioRun.define),
    (re.compile(r"(?:given )?the workflow input is:"), ScenarioRun.give_input),
    (re.compile(r"the workflow is executed"), ScenarioRun.execute),
    (re.compile(r"the workflow should complete(?: with output:)?"), ScenarioRun.should_complete),
    (re.compile(r"the workflow should fault(?: with error:)?"), ScenarioRun.should_fault),
    (re.compile(r"the workflow should cancel"), ScenarioRun.should_cancel),
    (re.compile(r"the workflow output should have properties (.+)"), ScenarioRun.should_have_properties),
    (
        re.compile(r"the workflow output should have a '([^']+)' property with value:"),
        ScenarioRun.should_have_value,
    ),
    (
        re.compile(r"the workflow output should have a '([^']+)' property containing (\d+) items"),
        ScenarioRun.should_have_items,
    ),
    (re.compile(r"(\S+) should run (first|last)"), ScenarioRun.should_run),
    (re.compile(r"(\S+) should run (before|after) (\S+)"), ScenarioRun.should_run),
    (
        re.compile(r"(\S+) should (complete|fault|cancel)(?: with (?:output|error):)?"),
        ScenarioRun.task_should,
    ),
]


@pytest.mark.skipif(not SCENARIOS, reason=CORPUS_MISSING)
def test_the_kit_has_its_21_scenarios_and_every_step_is_understood() -> None:
    assert len(SCENARIOS) == 21
    unknown = [
        f"{s.id}: {step.text}"
        for s in SCENARIOS
        for step in s.steps
        if not any(pattern.fullmatch(step.text) for pattern, _ in _STEPS)
    ]
    assert unknown == []


@pytest.mark.parametrize("scenario", SCENARIOS or _MISSING, ids=lambda s: s.id if s else "corpus-missing")
async def test_conformance_scenario(
    scenario: Scenario, engine: Engine, public_services: PublicServices
) -> None:
    run = ScenarioRun(scenario, engine, public_services)
    for step in scenario.steps:
        await run.play(step)
    assert run.ok is not None, "the scenario never executed its workflow"
