"""Live progress of an execution on stderr: an updating table on a terminal, status lines otherwise;
and, while it waits for someone, the exact command that lets it go on."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rte.cli._common import command_line
from rte.config import Settings
from workflows.state import ExecutionState, ExecutionStatus, StepState, StepStatus

_STYLES = {
    StepStatus.PENDING: "dim",
    StepStatus.RUNNING: "cyan",
    StepStatus.RETRYING: "yellow",
    StepStatus.WAITING: "magenta",
    StepStatus.COMPLETED: "green",
    StepStatus.FAILED: "bold red",
    StepStatus.SKIPPED: "dim",
    StepStatus.PAUSED: "bold magenta",
}


def _items(step: StepState) -> str:
    if step.items is None:
        return ""
    done = step.items.completed + step.items.failed
    failed = f" ({step.items.failed} failed)" if step.items.failed else ""
    percent = f" {100 * done // step.items.total}%" if step.items.total else ""
    return f"{done}/{step.items.total}{percent}{failed}"


def _duration(step: StepState) -> str:
    if step.started_at is None:
        return ""
    end = step.ended_at or datetime.now(step.started_at.tzinfo)
    return f"{(end - step.started_at).total_seconds():.1f}s"


def render(state: ExecutionState, *, title: bool = True) -> Table:
    heading = escape(f"{state.execution_id} — {state.status.value}") if title else None
    table = Table(title=heading, title_justify="left", expand=False)
    for column in ("step", "kind", "status", "attempts", "items", "time"):
        table.add_column(column)
    for step in state.steps.values():
        note = step.skipped_reason or (step.error.message if step.error else "")
        status = f"[{_STYLES.get(step.status, 'white')}]{step.status.value}[/]"
        if note:
            status += f" [dim]{escape(note[:60])}[/]"
        table.add_row(
            escape(step.id), step.kind, status, str(step.attempts or ""), _items(step), _duration(step)
        )
    return table


def unblock_hints(state: ExecutionState, settings: Settings) -> list[str]:
    """What the execution waits for, and the exact command that lets it go on."""
    if state.status not in (ExecutionStatus.RUNNING, ExecutionStatus.WAITING, ExecutionStatus.PAUSED):
        return []
    execution = state.execution_id
    ids = Counter(step.id for step in state.steps.values())

    def name(path: str) -> str:  # the id where it is unambiguous, else the full path
        step = state.steps.get(path)
        return step.id if step is not None and ids[step.id] == 1 else path

    hints: list[str] = []
    paused = state.debug.paused
    if paused is not None:
        why = f"breakpoint {paused.breakpoint_id}" if paused.breakpoint_id else paused.reason
        hints.append(
            f"{name(paused.step_path)} is paused by the debugger ({why}): "
            f"{command_line(settings, 'debug', 'continue', execution)}"
            f"   (step by step: {command_line(settings, 'debug', 'step-over', execution)})"
        )
    for step in state.steps.values():
        if step.status == StepStatus.WAITING and step.approval is not None:
            hints.append(
                f"{name(step.path)} waits for approval: {command_line(settings, 'approve', execution, name(step.path))}"
                f"   or: {command_line(settings, 'reject', execution, name(step.path))}"
            )
        if step.awaiting_decision:
            hints.append(
                f"{name(step.path)} failed and waits for a decision: "
                f"{command_line(settings, 'recover', 'decide', execution, name(step.path), 'retry')}"
                "   (or skip, or fail, in place of retry)"
            )
    return hints


class ProgressView:
    """`settings` locate the stack, so the commands hinted at carry --data-dir when it is needed."""

    def __init__(self, console: Console, settings: Settings) -> None:
        self.console, self.settings = console, settings
        self.live: Live | None = None
        self.seen: dict[str, tuple[str, str]] = {}
        self.hinted: set[str] = set()

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=8, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def update(self, state: ExecutionState) -> None:
        hints = unblock_hints(state, self.settings)
        if self.live is not None:
            notes = Text("\n".join(f"→ {hint}" for hint in hints), style="magenta")
            self.live.update(Group(render(state), notes) if hints else render(state))
            return
        for step in state.steps.values():  # plain lines, only on change, for logs and pipes
            key = (step.status.value, _items(step))
            if self.seen.get(step.path) != key:
                self.seen[step.path] = key
                extra = f" {key[1]}" if key[1] else ""
                self.console.print(f"{step.id}: {step.status.value}{extra}", highlight=False, markup=False)
        for hint in hints:
            if hint not in self.hinted:
                self.hinted.add(hint)
                self.console.print(f"→ {hint}", highlight=False, markup=False)
        self.hinted &= set(hints)  # the same wait again later is hinted again
