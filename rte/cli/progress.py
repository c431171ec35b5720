"""Live progress of an execution on stderr: an updating table on a terminal, status lines otherwise."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console
from rich.live import Live
from rich.table import Table

from workflows.state import ExecutionState, StepState, StepStatus

_STYLES = {
    StepStatus.PENDING: "dim",
    StepStatus.RUNNING: "cyan",
    StepStatus.RETRYING: "yellow",
    StepStatus.WAITING: "magenta",
    StepStatus.COMPLETED: "green",
    StepStatus.FAILED: "bold red",
    StepStatus.SKIPPED: "dim",
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


def render(state: ExecutionState) -> Table:
    table = Table(title=f"{state.execution_id} — {state.status.value}", title_justify="left", expand=False)
    for column in ("step", "kind", "status", "attempts", "items", "time"):
        table.add_column(column)
    for step in state.steps.values():
        note = step.skipped_reason or (step.error.message if step.error else "")
        status = f"[{_STYLES[step.status]}]{step.status.value}[/]"
        if note:
            status += f" [dim]{note[:60]}[/]"
        table.add_row(step.id, step.kind, status, str(step.attempts or ""), _items(step), _duration(step))
    return table


class ProgressView:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self.seen: dict[str, tuple[str, str]] = {}

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=8, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def update(self, state: ExecutionState) -> None:
        if self.live is not None:
            self.live.update(render(state))
            return
        for step in state.steps.values():  # plain lines, only on change, for logs and pipes
            key = (step.status.value, _items(step))
            if self.seen.get(step.path) != key:
                self.seen[step.path] = key
                extra = f" {key[1]}" if key[1] else ""
                self.console.print(f"{step.id}: {step.status.value}{extra}", highlight=False)
