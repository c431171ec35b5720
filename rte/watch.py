"""Follow an execution live: wake on its history long-poll, read the interpreter's state query.

No fixed-interval polling: the history long-poll (`wait_new_event=True`) wakes the watcher when
something happens, and bursts of events are coalesced into one state read. Only events after which
the state query can answer something new (a workflow task completed, the execution closed) wake it.

One thing history does not show: an activity's retries happen inside the Temporal server and write
no history event until the activity finally completes or fails. Retrying steps are found through
the workflow's pending activities (attempt > 1); while an activity step is in flight, and only then,
the watcher re-reads them on a growing backoff (0.5 s up to 5 s) so a retry is seen without waiting
for the step to end.

`follow_logs` follows an execution's log lines the same way: the log table has no change
notifications, so it wakes on the history long-poll and at least every second (a failed attempt
that Temporal retries writes logs but no history event).

`SharedWatch` lets many readers in one process (an API replica's SSE clients) share one watch of an
execution: one long-poll and one query per change, however many clients follow it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from weakref import WeakKeyDictionary

from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError

from rte.store.repositories import LogRow
from workflows.plan import ACTIVITY_KINDS
from workflows.state import ErrorInfo, ExecutionState, ExecutionStatus, StepStatus

# Reads closer together than this are coalesced (a burst of workflow tasks becomes one read).
MIN_INTERVAL_S = 0.02
QUERY_TIMEOUT = timedelta(seconds=10)
# Re-reads of pending activities while an activity step runs: retries write no history event.
RETRY_PROBE_S = (0.5, 1.0, 2.0, 4.0, 5.0)
# The longest a log tail goes without looking at the log table (see the module docstring).
LOG_TAIL_MAX_WAIT_S = 1.0
# A worker polls its task queue continuously; one not seen for this long is gone.
POLLER_FRESH_S = 90
# How often a watch with an overlay reads what the worker reported, while an activity step may run.
OVERLAY_POLL_S = 0.05

_STATE_EVENTS = frozenset(
    {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    }
)
_ACTIVITY_KINDS = frozenset(kind.value for kind in ACTIVITY_KINDS)
_UNFINISHED = frozenset({StepStatus.PENDING, StepStatus.RUNNING, StepStatus.RETRYING})
log = logging.getLogger("rte.watch")


class NoWorkerError(RuntimeError):
    pass


async def read_state(handle: WorkflowHandle, query_timeout: timedelta = QUERY_TIMEOUT) -> ExecutionState:
    # Pending activities (for retries) are read at the same time as the state, not after it.
    description = asyncio.ensure_future(handle.describe())
    try:
        state = await handle.query("state", result_type=ExecutionState, rpc_timeout=query_timeout)
    except RPCError as error:
        description.cancel()
        if "deadline" in str(error).lower() or "timeout" in str(error).lower():
            raise NoWorkerError("no worker answered; is `rte worker` (or `rte up`) running?") from error
        raise
    except BaseException:
        description.cancel()
        raise
    _mark_retrying(state, await description)
    return state


def _mark_retrying(state: ExecutionState, description: WorkflowExecutionDescription) -> None:
    for pending in description.raw_description.pending_activities:
        path = pending.activity_id.split("[", 1)[0]
        step = state.steps.get(path)
        if step is not None and step.status == StepStatus.RUNNING and pending.attempt > 1:
            step.status = StepStatus.RETRYING
            step.attempts = max(step.attempts, pending.attempt)
            if pending.HasField("last_failure"):
                failure = pending.last_failure
                step.error = ErrorInfo(
                    category=failure.application_failure_info.type or "internal",
                    message=failure.message,
                    retryable=True,
                    step_path=path,
                    attempts=pending.attempt - 1,
                )


async def worker_available(client: Client, task_queue: str) -> bool:
    """Whether a worker has polled `task_queue` for workflow tasks lately (queries need one)."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    fresh_after = datetime.now(UTC) - timedelta(seconds=POLLER_FRESH_S)
    return any(poller.last_access_time.ToDatetime(tzinfo=UTC) >= fresh_after for poller in response.pollers)


def _activity_may_run(state: ExecutionState) -> bool:
    """Whether an activity step may be running or about to (the overlay is worth refreshing)."""
    return state.status in (ExecutionStatus.RUNNING, ExecutionStatus.WAITING) and any(
        step.kind in _ACTIVITY_KINDS and step.status in _UNFINISHED for step in state.steps.values()
    )


def _activity_in_flight(state: ExecutionState) -> bool:
    return any(
        step.kind in _ACTIVITY_KINDS and step.status in (StepStatus.RUNNING, StepStatus.RETRYING)
        for step in state.steps.values()
    )


async def watch(
    client: Client, execution_id: str, run_id: str | None = None
) -> AsyncIterator[ExecutionState]:
    """Yield the execution's state first, then whenever it changes, and a last time when it has closed."""
    handle = client.get_workflow_handle(execution_id, run_id=run_id)
    changed = asyncio.Event()
    closed = asyncio.Event()

    async def follow_history() -> None:
        try:
            async for event in handle.fetch_history_events(wait_new_event=True):
                if event.event_type in _STATE_EVENTS:
                    changed.set()
        finally:
            closed.set()
            changed.set()

    follower = asyncio.create_task(follow_history())
    previous: dict | None = None
    probes = 0
    try:
        while True:
            read_at = asyncio.get_running_loop().time()
            ended = closed.is_set()  # before the read, so the last read sees the final state
            state = await read_state(handle)
            snapshot = state.model_dump()
            if snapshot != previous or ended:
                previous = snapshot
                yield state
            if ended:
                if follower.done() and not follower.cancelled() and follower.exception():
                    raise follower.exception()  # type: ignore[misc]
                return
            probe = RETRY_PROBE_S[min(probes, len(RETRY_PROBE_S) - 1)] if _activity_in_flight(state) else None
            try:
                await asyncio.wait_for(changed.wait(), probe)
                probes = 0
            except TimeoutError:
                probes += 1
            changed.clear()
            pause = MIN_INTERVAL_S - (asyncio.get_running_loop().time() - read_at)
            if pause > 0:
                await asyncio.sleep(pause)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await follower


async def follow_logs(
    client: Client,
    execution_id: str,
    read_after: Callable[[int | None], Awaitable[list[LogRow]]],
    *,
    after_id: int | None = None,
    max_wait_s: float = LOG_TAIL_MAX_WAIT_S,
) -> AsyncIterator[LogRow]:
    """The execution's log lines after `after_id`, in write order, as they are written; ends once the
    execution has closed (or has no history) and every line written until then was yielded.

    `read_after(after_id)` reads the next page (the caller's filters applied). Use it under
    `contextlib.aclosing`, so a reader that stops early also stops the history long-poll.
    """
    handle = client.get_workflow_handle(execution_id)
    changed = asyncio.Event()
    closed = asyncio.Event()

    async def follow_history() -> None:
        try:
            async for _event in handle.fetch_history_events(wait_new_event=True):
                changed.set()
        except RPCError:
            pass  # no history (deleted, or never existed): only the lines already written remain
        finally:
            closed.set()
            changed.set()

    follower = asyncio.create_task(follow_history())
    try:
        while True:
            ended = closed.is_set()  # before draining: nothing is written after the close
            while rows := await read_after(after_id):
                for row in rows:
                    yield row
                after_id = rows[-1].id
            if ended:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), max_wait_s)
            changed.clear()
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await follower


async def execution_closed(handle: WorkflowHandle) -> bool:
    description = await handle.describe()
    return description.status not in (None, WorkflowExecutionStatus.RUNNING)


class Overlay(Protocol):
    """What the worker reports before history shows it, laid over each state a `SharedWatch` serves
    (api/sse.py: `WorkerReports`, steps whose attempt ended inside a still-open workflow task)."""

    async def refresh(self, state: ExecutionState) -> bool:
        """Read what is new, given the latest state from history; true when `apply` changed."""
        ...

    def apply(self, state: ExecutionState) -> ExecutionState:
        """`state` with the reports laid over."""
        ...


class SharedWatch:
    """One `watch` of an execution, read by any number of readers; each gets the latest state.

    A slow reader skips intermediate states instead of queueing them: states are snapshots, and the
    newest one says everything the older ones did. With an `overlay`, it is refreshed every
    `OVERLAY_POLL_S` while an activity step may be running, and laid over every state served.
    """

    def __init__(
        self, client: Client, execution_id: str, run_id: str | None, overlay: Overlay | None = None
    ) -> None:
        self.client, self.execution_id, self.run_id = client, execution_id, run_id
        self.state: ExecutionState | None = None
        self.version = 0
        self.done = False
        self.error: BaseException | None = None
        self.readers = 0
        self._memo: dict[Any, Any] = {}
        self._memo_version = 0
        self._condition = asyncio.Condition()
        self._overlay = overlay
        self._history: ExecutionState | None = None  # the latest state, as history tells it
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        refresher = asyncio.create_task(self._refresh()) if self._overlay is not None else None
        try:
            async for state in watch(self.client, self.execution_id, self.run_id):
                first, self._history = self._history is None, state
                if first and self._overlay is not None:
                    # A client resuming from an event the worker reported must find it in the state.
                    await self._refresh_overlay(state)
                await self._publish()
        except Exception as error:  # noqa: BLE001 - handed to every reader
            self.error = error
        finally:
            if refresher is not None:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
            self.done = True
            async with self._condition:
                self._condition.notify_all()

    async def _publish(self) -> None:
        assert self._history is not None
        state = self._history if self._overlay is None else self._overlay.apply(self._history)
        self.state, self.version = state, self.version + 1
        async with self._condition:
            self._condition.notify_all()

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(OVERLAY_POLL_S)
            state = self._history
            if state is not None and _activity_may_run(state) and await self._refresh_overlay(state):
                await self._publish()

    async def _refresh_overlay(self, state: ExecutionState) -> bool:
        assert self._overlay is not None
        try:
            return await self._overlay.refresh(state)
        except Exception as error:  # noqa: BLE001 - a report missed is only late: history follows
            log.warning("could not read worker reports of %s: %s", self.execution_id, error)
            return False

    async def states(self) -> AsyncIterator[tuple[int, ExecutionState]]:
        """(version, state): the latest state now and after each change; ends when the execution has closed."""
        seen = 0
        while True:
            async with self._condition:
                await self._condition.wait_for(lambda seen=seen: self.version > seen or self.done)
            if self.version > seen and self.state is not None:
                seen = self.version
                yield seen, self.state
                continue
            if self.error is not None:
                raise self.error
            return

    def memo(self, version: int) -> dict[Any, Any]:
        """Scratch space the readers of one state version share (what they derive from it, once)."""
        if self._memo_version != version:
            self._memo, self._memo_version = {}, version
        return self._memo

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class WatchHub:
    """The shared watches of one process; a watch stops (its long-poll cancelled) with its last reader."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._watches: dict[tuple[str, str | None], SharedWatch] = {}

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    @contextlib.asynccontextmanager
    async def follow(
        self,
        execution_id: str,
        run_id: str | None = None,
        overlay: Callable[[], Overlay] | None = None,
    ) -> AsyncIterator[SharedWatch]:
        """Share the execution's watch; `overlay` makes the overlay of a watch that starts here."""
        key = (execution_id, run_id)
        shared = self._watches.get(key)
        if shared is None:
            made = overlay() if overlay is not None else None
            shared = self._watches[key] = SharedWatch(self.client, execution_id, run_id, made)
        shared.readers += 1
        try:
            yield shared
        finally:
            shared.readers -= 1
            if shared.readers == 0:
                if self._watches.get(key) is shared:
                    del self._watches[key]
                await shared.stop()


_HUBS: WeakKeyDictionary[Client, WatchHub] = WeakKeyDictionary()


def hub_for(client: Client) -> WatchHub:
    """The process's hub for this client (created on first use)."""
    hub = _HUBS.get(client)
    if hub is None:
        hub = _HUBS[client] = WatchHub(client)
    return hub


def open_watches() -> int:
    """How many shared watches (history long-polls) this process holds open, over every client."""
    return sum(hub.open_watches for hub in list(_HUBS.values()))
