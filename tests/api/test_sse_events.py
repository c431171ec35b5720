"""The state diff behind the live stream, without a server: which events a change produces, in what
order, and ids a client can resume from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.sse import View, diff
from workflows.state import (
    ApprovalRequest,
    ErrorInfo,
    ExecutionState,
    ExecutionStatus,
    ItemsProgress,
    StepState,
    StepStatus,
)

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=5)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def state(**steps: StepState) -> ExecutionState:
    base = ExecutionState(
        execution_id="orders-1",
        run_id="5f0c2a9e-1111-2222-3333-444455556666",
        definition_id="orders",
        definition_version="3",
        plan_hash="sha256:abc",
        trigger="manual",
        started_at=T0,
    )
    for name in ("fetch", "score", "notify"):
        base.steps[f"orders/{name}"] = StepState(id=name, path=f"orders/{name}", kind="python")
    for name, step in steps.items():
        base.steps[f"orders/{name}"] = step.model_copy(update={"id": name, "path": f"orders/{name}"})
    return base


def step(
    status: StepStatus, start: float | None = 1, end: float | None = None, **fields: object
) -> StepState:
    return StepState(
        id="",
        path="",
        kind="python",
        status=status,
        started_at=at(start) if start is not None else None,
        ended_at=at(end) if end is not None else None,
        **fields,  # type: ignore[arg-type]
    )


def names(events: list) -> list[tuple[str, str]]:
    return [(event.name, event.data.get("step", "").rsplit("/", 1)[-1]) for event in events]


def test_a_new_client_first_hears_the_execution_start_then_each_running_step() -> None:
    current = state(fetch=step(StepStatus.RUNNING))
    view = View.fresh(current)
    events = diff(view, current, NOW)
    assert names(events) == [("execution-start", ""), ("step-start", "fetch")]
    assert events[0].data["steps"][0] == {"step": "orders/fetch", "step_id": "fetch", "kind": "python"}
    assert events[1].data["at"] == at(1).isoformat() and events[1].data["emitted_at"] == NOW.isoformat()
    assert diff(view, current, NOW) == []  # nothing changed, nothing sent


def test_events_come_in_the_order_things_happened_across_steps() -> None:
    earlier = state(fetch=step(StepStatus.RUNNING))
    view = View.fresh(earlier)
    diff(view, earlier, NOW)
    later = state(
        fetch=step(StepStatus.COMPLETED, 1, 2, output={"orders": 3}, metrics={"duration_ms": 990.0}),
        score=step(StepStatus.COMPLETED, 2, 3),
        notify=step(StepStatus.RUNNING, 3),
    )
    events = diff(view, later, NOW)
    assert names(events) == [
        ("step-complete", "fetch"),
        ("step-start", "score"),
        ("step-complete", "score"),
        ("step-start", "notify"),
    ]
    fetched = events[0].data
    assert fetched["output"] == {"orders": 3} and fetched["duration_ms"] == 1000.0
    assert fetched["metrics"] == {"duration_ms": 990.0}


def test_retries_are_counted_even_when_several_happened_between_two_reads() -> None:
    running = state(fetch=step(StepStatus.RUNNING))
    view = View.fresh(running)
    diff(view, running, NOW)
    error = ErrorInfo(category="http_5xx", message="HTTP 503", retryable=True, attempts=2)
    retrying = state(fetch=step(StepStatus.RETRYING, attempts=3, error=error))
    events = diff(view, retrying, NOW)
    assert names(events) == [("step-retry", "fetch"), ("step-retry", "fetch")]
    assert [event.data["attempt"] for event in events] == [2, 3]
    assert events[0].data["error"]["message"] == "HTTP 503"
    failed = state(fetch=step(StepStatus.FAILED, 1, 9, error=error.model_copy(update={"attempts": 4})))
    events = diff(view, failed, NOW)
    assert names(events) == [("step-retry", "fetch"), ("step-error", "fetch")]
    assert events[-1].data["error"]["category"] == "http_5xx"


def test_progress_reports_items_and_percent_and_only_the_latest_count() -> None:
    def scoring(done: int) -> ExecutionState:
        items = ItemsProgress(total=8, completed=done - 1, failed=1)
        current = state(score=step(StepStatus.RUNNING, items=items))
        current.items_processed, current.items_total = done, 8
        return current

    view = View.fresh(scoring(2))
    assert names(diff(view, scoring(2), NOW)) == [
        ("execution-start", ""),
        ("step-start", "score"),
        ("progress", "score"),
    ]
    events = diff(view, scoring(6), NOW)
    assert names(events) == [("progress", "score")]
    data = events[0].data
    assert (data["processed"], data["failed"], data["total"], data["percent"]) == (6, 1, 8, 75.0)
    assert data["execution_items_processed"] == 6


def test_waiting_for_approval_then_the_decision() -> None:
    request = ApprovalRequest(message="Ship it?", approvers=["ada"], requested_at=at(4))
    waiting = state(notify=step(StepStatus.WAITING, 3, approval=request))
    waiting.status = ExecutionStatus.WAITING
    view = View.fresh(waiting)
    events = diff(view, waiting, NOW)
    assert names(events)[-2:] == [("step-start", "notify"), ("waiting", "notify")]
    assert events[-1].data["approval"]["message"] == "Ship it?"
    assert events[-1].data["at"] == at(4).isoformat()
    decided = state(notify=step(StepStatus.COMPLETED, 3, 8, approval=request, output={"approved": True}))
    assert names(diff(view, decided, NOW)) == [("step-complete", "notify")]


def test_skipped_steps_and_the_end_of_the_execution() -> None:
    done = state(
        fetch=step(StepStatus.FAILED, 1, 2, error=ErrorInfo(category="timeout", message="too slow")),
        score=step(StepStatus.SKIPPED, None, 2, skipped_reason="step 'fetch' failed"),
        notify=step(StepStatus.SKIPPED, None, 2, skipped_reason="step 'fetch' failed"),
    )
    done.status, done.ended_at = ExecutionStatus.FAILED, at(2)
    done.error = ErrorInfo(category="timeout", message="too slow", step_path="orders/fetch")
    events = diff(View.fresh(done), done, NOW)
    assert names(events) == [
        ("execution-start", ""),
        ("step-start", "fetch"),
        ("step-error", "fetch"),
        ("step-skipped", "score"),
        ("step-skipped", "notify"),
        ("execution-complete", ""),
    ]
    assert events[3].data["reason"] == "step 'fetch' failed"
    end = events[-1].data
    assert (
        end["status"] == "failed" and end["duration_ms"] == 2000.0 and end["error"]["category"] == "timeout"
    )


def test_a_closed_execution_the_interpreter_still_thinks_running_ends_with_temporal_status() -> None:
    current = state(fetch=step(StepStatus.RUNNING))
    view = View.fresh(current)
    diff(view, current, NOW)
    events = diff(view, current, NOW, closed_status="terminated")
    assert names(events) == [("execution-complete", "")]
    assert events[0].data["status"] == "terminated" and view.finished


def test_event_ids_are_cursors_that_resume_exactly_where_the_client_left() -> None:
    final = state(
        fetch=step(StepStatus.COMPLETED, 1, 2, attempts=2),
        score=step(StepStatus.COMPLETED, 2, 5, items=ItemsProgress(total=4, completed=4)),
        notify=step(StepStatus.COMPLETED, 5, 6),
    )
    final.status, final.ended_at = ExecutionStatus.COMPLETED, at(6)
    replay = diff(View.fresh(final), final, NOW)
    assert replay[0].id == "5f0c2a9e-r-"
    assert replay[-1].id == "5f0c2a9e-c-c2.c/4.c"
    for position, event in enumerate(replay):
        rest = diff(View.resume(event.id, final), final, NOW)
        assert [(e.name, e.id) for e in rest] == [(e.name, e.id) for e in replay[position + 1 :]]


def test_ids_do_not_depend_on_how_often_the_state_was_read() -> None:
    stages = [
        state(fetch=step(StepStatus.RUNNING)),
        state(fetch=step(StepStatus.COMPLETED, 1, 2), score=step(StepStatus.RUNNING, 2)),
        state(fetch=step(StepStatus.COMPLETED, 1, 2), score=step(StepStatus.COMPLETED, 2, 3)),
    ]
    live = View.fresh(stages[0])
    seen = [event.id for stage in stages for event in diff(live, stage, NOW)]
    late = diff(View.fresh(stages[-1]), stages[-1], NOW)
    assert seen == [event.id for event in late]


def test_a_cursor_from_another_run_or_garbage_starts_over() -> None:
    current = state(fetch=step(StepStatus.RUNNING))
    for cursor in ("0000aaaa-r-s", "not a cursor", "5f0c2a9e-r-zz", "5f0c2a9e-q-", "5f0c2a9e-r-c.c.c.c.c"):
        assert names(diff(View.resume(cursor, current), current, NOW))[0] == ("execution-start", "")


def test_a_step_run_again_by_a_recovery_tells_its_story_anew() -> None:
    failed = state(fetch=step(StepStatus.FAILED, 1, 2, error=ErrorInfo(category="timeout", message="x")))
    view = View.fresh(failed)
    diff(view, failed, NOW)
    again = state(fetch=step(StepStatus.RUNNING, 7))
    assert names(diff(view, again, NOW)) == [("step-start", "fetch")]
