"""Execution state → Server-Sent Events: the diff between two states, and ids a client resumes from.

A stream compares each new `ExecutionState` with what its client already knows (a `View`) and emits
the transitions in between, in the order they happened:

    execution-start · step-start · step-retry · progress · waiting · paused · resumed ·
    step-complete · step-error · step-skipped · execution-complete

Event ids are cursors: each one encodes what the client knows once it has that event — the run, the
execution's phase and every started step's phase, attempt and items done — e.g.
`5f0c2a9e-r-c.c3.s/40..w`. The same transitions always give the same ids, and the API keeps no
per-client state: a client reconnecting with `Last-Event-ID` is sent exactly what changed since (a
missed retry, the latest progress, the step that ended), whichever replica it reaches.

A local activity's end reaches history only when the workflow task running it ends (perhaps many
local steps later), and the state query waits for that task. The worker commits each attempt's
metric row to the SQL store as the attempt ends, so `WorkerReports` announces such a step from that
row: `step-complete` with the attempt's timing and `metrics.reported_by = "worker"`, but no `output`
(history, the source of truth for state, has it: `/state` shows it once the task ends). Steps with a
regular activity are left to history, whose record of them follows within milliseconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.enums.v1 import PendingWorkflowTaskState
from temporalio.client import WorkflowExecutionDescription

from rte.store.repositories import MetricRepository, MetricRow
from workflows.state import ExecutionState, StepState, StepStatus

EVENT_NAMES = (
    "execution-start",
    "step-start",
    "step-retry",
    "progress",
    "waiting",
    "paused",
    "resumed",
    "step-complete",
    "step-error",
    "step-skipped",
    "execution-complete",
)

# A step's phase as the cursor writes it: '' not started, s running, w waiting for approval,
# p paused (debugging), c completed, e failed, k skipped.
_STEP_PHASES = {
    "pending": "",
    "running": "s",
    "retrying": "s",
    "waiting": "w",
    "paused": "p",
    "completed": "c",
    "failed": "e",
    "skipped": "k",
}
_FINISHED = frozenset("cek")
# The execution's phase: '' not announced, r running, p paused, c completed, f failed,
# x closed otherwise (cancelled, terminated, timed out).
_EXECUTION_PHASES = {"running": "r", "waiting": "r", "paused": "p", "completed": "c", "failed": "f"}
_EXECUTION_FINISHED = frozenset("cfx")


@dataclass(frozen=True)
class StepView:
    phase: str = ""
    attempts: int = 0
    done: int | None = None

    def token(self) -> str:
        attempts = str(self.attempts) if self.attempts > 1 else ""
        done = f"/{self.done}" if self.done is not None else ""
        return f"{self.phase}{attempts}{done}" if self.phase else ""

    @classmethod
    def parse(cls, token: str) -> StepView:
        if not token:
            return cls()
        head, _, done = token.partition("/")
        phase, attempts = head[:1], head[1:]
        if phase not in _STEP_PHASES.values() or (attempts and not attempts.isdigit()):
            raise ValueError(token)
        return cls(phase, int(attempts) if attempts else 1, int(done) if done else None)


@dataclass
class View:
    """What a client knows about one run of an execution; its `cursor()` is the last event's id."""

    run: str
    execution: str = ""
    steps: list[StepView] = field(default_factory=list)

    def cursor(self) -> str:
        tokens = [step.token() for step in self.steps]
        while tokens and not tokens[-1]:
            tokens.pop()
        return f"{self.run}-{self.execution}-{'.'.join(tokens)}"

    @property
    def finished(self) -> bool:
        return self.execution in _EXECUTION_FINISHED

    @classmethod
    def fresh(cls, state: ExecutionState) -> View:
        return cls(run=_run_tag(state), steps=[StepView() for _ in state.steps])

    @classmethod
    def resume(cls, cursor: str | None, state: ExecutionState) -> View:
        """The view a `Last-Event-ID` describes; a fresh one when it is absent, malformed or of another run."""
        view = cls.fresh(state)
        if not cursor:
            return view
        run, _, rest = cursor.strip().partition("-")
        execution, _, tokens = rest.partition("-")
        if run != view.run or execution not in ("", *_EXECUTION_PHASES.values(), "x"):
            return view
        try:
            steps = [StepView.parse(token) for token in tokens.split(".")] if tokens else []
        except ValueError:
            return view
        if len(steps) > len(view.steps):
            return view
        view.execution = execution
        view.steps[: len(steps)] = steps
        return view


@dataclass(frozen=True)
class Event:
    name: str
    id: str
    data: dict[str, Any]


@dataclass(frozen=True)
class _Transition:
    key: tuple[Any, ...]
    name: str
    data: dict[str, Any]
    step: int | None = None  # index of the step whose view it changes
    step_view: StepView | None = None
    execution: str | None = None  # the execution phase it sets


def diff(view: View, state: ExecutionState, now: datetime, closed_status: str | None = None) -> list[Event]:
    """The events that take `view` to `state`, in the order they happened; `view` is advanced.

    `closed_status` is the status Temporal reports once the execution has closed (e.g. "terminated"
    when the interpreter's own state could not say so).
    """
    transitions: list[_Transition] = []
    if not view.execution:
        transitions.append(
            _Transition(
                (0, state.started_at, 0, 0), "execution-start", _execution_start(state), execution="r"
            )
        )
    for index, step in enumerate(state.steps.values()):
        if index < len(view.steps):
            transitions += _step_transitions(index, view.steps[index], step, state)
    transitions += _execution_transitions(view.execution, state, closed_status)
    transitions.sort(key=lambda transition: transition.key)
    events = []
    for transition in transitions:
        if transition.step is not None and transition.step_view is not None:
            view.steps[transition.step] = transition.step_view
        if transition.execution is not None:
            view.execution = transition.execution
        data = {"execution_id": state.execution_id, **transition.data, "emitted_at": now.isoformat()}
        events.append(Event(transition.name, view.cursor(), data))
    return events


def _run_tag(state: ExecutionState) -> str:
    return state.run_id.replace("-", "")[:8] or "run"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _duration_ms(start: datetime | None, end: datetime | None) -> float | None:
    return round((end - start).total_seconds() * 1000, 1) if start and end else None


def _current(step: StepState) -> StepView:
    phase = _STEP_PHASES.get(step.status.value, "s")
    if not phase:
        return StepView()
    attempts = max(step.attempts, (step.error.attempts or 0) if step.error else 0, 1)
    done = step.items.completed + step.items.failed if step.items is not None else None
    return StepView(phase, 1 if phase == "k" else attempts, done)


def _step_data(step: StepState, state: ExecutionState, at: datetime | None, **extra: Any) -> dict[str, Any]:
    return {
        "step": step.path,
        "step_id": step.id,
        "kind": step.kind,
        "status": step.status.value,
        "attempt": max(step.attempts, 1),
        "at": _iso(at),
        "started_at": _iso(step.started_at),
        "ended_at": _iso(step.ended_at),
        "duration_ms": _duration_ms(step.started_at, step.ended_at),
        "metrics": step.metrics,
        **extra,
    }


def _progress(step: StepState, state: ExecutionState, done: int) -> dict[str, Any]:
    items = step.items
    total = items.total if items else 0
    return {
        "processed": done,
        "completed": items.completed if items else 0,
        "failed": items.failed if items else 0,
        "total": total,
        "percent": round(100 * done / total, 1) if total else 100.0,
        "execution_items_processed": state.items_processed,
        "execution_items_total": state.items_total,
    }


def _step_transitions(
    index: int, known: StepView, step: StepState, state: ExecutionState
) -> list[_Transition]:
    target = _current(step)
    if target == known or not target.phase:
        return []
    if known.phase in _FINISHED and target.phase not in _FINISHED:
        known = StepView()  # the step runs again (a recovery re-ran it): tell its story anew
    out: list[_Transition] = []
    last = step.started_at or state.started_at
    seq = 0

    def add(name: str, at: datetime | None, new: StepView, **extra: Any) -> None:
        nonlocal last, seq, known
        last = max(last, at) if at else last
        seq += 1
        data = _step_data(step, state, at, **extra)
        out.append(_Transition((1, last, index, seq), name, data, step=index, step_view=new))
        known = new

    if target.phase == "k":
        if known.phase != "k":
            add("step-skipped", step.ended_at, target, reason=step.skipped_reason)
        return out
    if not known.phase:
        add("step-start", step.started_at, StepView("s", 1, None), attempt=1)
    for attempt in range(known.attempts + 1, target.attempts + 1):
        error = step.error.model_dump(mode="json") if step.error else None
        add("step-retry", None, replace(known, attempts=attempt), attempt=attempt, error=error)
    if target.done is not None and target.done != known.done:
        add("progress", None, replace(known, done=target.done), **_progress(step, state, target.done))
    if target.phase == known.phase:
        return out
    if target.phase == "w":
        approval = step.approval.model_dump(mode="json") if step.approval else None
        add("waiting", step.approval.requested_at if step.approval else None, target, approval=approval)
    elif target.phase == "p":
        add("paused", None, target)
    elif target.phase == "s" and known.phase in ("w", "p"):
        add("resumed", None, target)
    elif target.phase == "c":
        add("step-complete", step.ended_at, target, output=step.output)
    elif target.phase == "e":
        error = step.error.model_dump(mode="json") if step.error else None
        add("step-error", step.ended_at, target, error=error)
    return out


def _execution_transitions(known: str, state: ExecutionState, closed_status: str | None) -> list[_Transition]:
    status = state.status.value
    if status not in ("completed", "failed") and closed_status:
        status = closed_status
    target = _EXECUTION_PHASES.get(status, "x" if closed_status else "r")
    if known in _EXECUTION_FINISHED or target == (known or "r"):
        return []
    end = state.ended_at or state.started_at
    if target in _EXECUTION_FINISHED:
        data = {
            "status": status,
            "at": _iso(state.ended_at),
            "started_at": _iso(state.started_at),
            "ended_at": _iso(state.ended_at),
            "duration_ms": _duration_ms(state.started_at, state.ended_at),
            "items_processed": state.items_processed,
            "items_total": state.items_total,
            "error_count": state.error_count,
            "output": state.output,
            "error": state.error.model_dump(mode="json") if state.error else None,
        }
        return [_Transition((3, end, 0, 0), "execution-complete", data, execution=target)]
    name = "paused" if target == "p" else "resumed"
    return [_Transition((2, end, 0, 0), name, {"status": status, "at": None}, execution=target)]


def _execution_start(state: ExecutionState) -> dict[str, Any]:
    return {
        "run_id": state.run_id,
        "definition_id": state.definition_id,
        "definition_version": state.definition_version,
        "plan_hash": state.plan_hash,
        "trigger": state.trigger,
        "status": state.status.value,
        "at": _iso(state.started_at),
        "started_at": _iso(state.started_at),
        "steps": [
            {"step": step.path, "step_id": step.id, "kind": step.kind} for step in state.steps.values()
        ],
    }


# A workflow task open for longer than this is running local activities (it takes milliseconds
# otherwise): the steps whose end the worker recorded meanwhile are announced from that record.
LONG_TASK_S = 0.05
_NOT_ENDED = frozenset({StepStatus.PENDING, StepStatus.RUNNING, StepStatus.RETRYING})


class WorkerReports:
    """The completed attempts the worker recorded for one execution, announced while history cannot
    show them yet (`rte.watch.Overlay`).

    A step is announced when the worker recorded its attempt as completed, history does not show it
    ended, and the execution's workflow task has been open for `LONG_TASK_S` — which is where local
    activities run. A regular activity's end is left to history: it follows within milliseconds,
    output included, with no long-open task. Once announced, a step stays announced (until history
    says how it ended), so the events a watch serves never go back.
    """

    def __init__(
        self,
        metrics: MetricRepository,
        execution_id: str,
        describe: Callable[[], Awaitable[WorkflowExecutionDescription]],
    ) -> None:
        self._metrics, self._execution_id, self._describe = metrics, execution_id, describe
        self._after = 0
        self._ended: dict[str, MetricRow] = {}  # step path → its latest completed attempt
        self._announced: dict[str, MetricRow] = {}

    async def refresh(self, state: ExecutionState) -> bool:
        for row in await self._metrics.since(self._execution_id, self._after):
            self._after = max(self._after, row.id)
            if row.status == "completed" and row.item_index is None:  # items show as progress
                self._ended[row.step_path] = row
        waiting = {
            path: row
            for path, row in self._ended.items()
            if self._announced.get(path) != row and _unreported(state, path, row)
        }
        if not waiting or not _task_open_since(await self._describe(), LONG_TASK_S):
            return False
        self._announced |= waiting
        return True

    def apply(self, state: ExecutionState) -> ExecutionState:
        reported = {
            path: _completed(state.steps[path], row)
            for path, row in self._announced.items()
            if _unreported(state, path, row)
        }
        if not reported:
            return state
        return state.model_copy(update={"steps": {**state.steps, **reported}})


def _unreported(state: ExecutionState, path: str, row: MetricRow) -> bool:
    """History does not show the end of this attempt of the step (of this run) yet."""
    step = state.steps.get(path)
    return step is not None and step.status in _NOT_ENDED and row.run_id in ("", state.run_id)


def _completed(step: StepState, row: MetricRow) -> StepState:
    return step.model_copy(
        update={
            "status": StepStatus.COMPLETED,
            "started_at": step.started_at or row.started_at,
            "ended_at": row.started_at + timedelta(milliseconds=row.duration_ms),
            "attempts": max(step.attempts, row.attempt),
            "metrics": {"attempt": row.attempt, "duration_ms": row.duration_ms, "reported_by": "worker"},
        }
    )


def _task_open_since(description: WorkflowExecutionDescription, seconds: float) -> bool:
    task = description.raw_description.pending_workflow_task
    if task.state != PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED:
        return False
    opened = task.started_time.ToDatetime(tzinfo=UTC)
    return (datetime.now(UTC) - opened).total_seconds() >= seconds
