"""Step handlers as Temporal activities: one activity type per step kind, plus one for batches.

The wrapper is the single place where a handler's outcome meets Temporal: it builds the
`StepContext`, times the attempt, records logs and the per-attempt metric, and turns an
`EngineError` into an `ApplicationError` (type = error category, non-retryable when retrying
cannot help, `next_retry_delay` from a Retry-After). Secrets are redacted from everything it emits.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from opentelemetry import trace
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import attempt_log
from activities.ai import handle_ai
from activities.base import (
    BatchItemResult,
    ConnectionResolver,
    Handler,
    LogEntry,
    StepContext,
    StepRequest,
    StepResult,
)
from activities.http import handle_http
from activities.outbound_policy import OutboundPolicy
from activities.python_fn import handle_python
from activities.script import handle_script
from rte import analysis
from rte.claim_check import (
    DEFAULT_THRESHOLD_BYTES,
    MIN_REF_BYTES,
    PayloadStore,
    contains_reference,
    offload,
    resolve,
    serialized_size,
)
from rte.errors import EngineError, ErrorCategory

HANDLERS: dict[str, Handler] = {
    "http": handle_http,
    "ai": handle_ai,
    "script": handle_script,
    "python": handle_python,
}


class Telemetry(Protocol):
    """Where step logs and per-attempt metrics go (the SQL store in a worker)."""

    async def record(self, logs: list[dict[str, Any]], metric: dict[str, Any]) -> None: ...


@dataclass
class _Attempt:
    output: Any = None
    error: EngineError | None = None
    metrics: dict[str, Any] | None = None


class StepActivities:
    def __init__(
        self,
        connections: ConnectionResolver,
        telemetry: Telemetry | None = None,
        payloads: PayloadStore | None = None,
        offload_bytes: int = DEFAULT_THRESHOLD_BYTES,
        policy: OutboundPolicy | None = None,
    ) -> None:
        self.connections = connections
        self.telemetry = telemetry
        # Claim check (rte/claim_check.py): references in params are resolved before a handler
        # runs; outputs over `offload_bytes` leave as references, so no result meets Temporal's limits.
        self.payloads = payloads
        self.offload_bytes = offload_bytes
        self.policy = policy
        attempt_log.install()  # one worker log line per expected failed attempt, not a traceback

    def activities(self) -> list[Any]:
        return [self.http, self.ai, self.script, self.python, self.batch]

    @activity.defn(name="rte.http")
    async def http(self, request: StepRequest) -> StepResult:
        return await self._run_one(request)

    @activity.defn(name="rte.ai")
    async def ai(self, request: StepRequest) -> StepResult:
        return await self._run_one(request)

    @activity.defn(name="rte.script")
    async def script(self, request: StepRequest) -> StepResult:
        return await self._run_one(request)

    @activity.defn(name="rte.python")
    async def python(self, request: StepRequest) -> StepResult:
        return await self._run_one(request)

    @activity.defn(name="rte.batch")
    async def batch(self, request: StepRequest) -> StepResult:
        """Several items of a for_each in one call, each with its own retries.

        Progress is heartbeated, so when the activity itself is retried (worker lost) it resumes
        after the items already done instead of running them again.
        """
        info = activity.info()
        done: list[BatchItemResult] = []
        if info.heartbeat_details:
            done = [BatchItemResult.model_validate(item) for item in info.heartbeat_details[0]]
        outputs_bytes = sum(serialized_size(result.output) for result in done)
        fit_above = self.offload_bytes
        for item in (request.batch or [])[len(done) :]:
            single = request.model_copy(
                update={"params": item.params, "item_index": item.item_index, "batch": None}
            )
            done.append(await self._run_item_with_retries(single))
            outputs_bytes += serialized_size(done[-1].output)
            if outputs_bytes > fit_above and self.payloads is not None:
                outputs_bytes = await self._fit_outputs(done)
                fit_above = outputs_bytes + self.offload_bytes // 2
            activity.heartbeat([result.model_dump(mode="json") for result in done])
        return StepResult(items=done)

    async def _fit_outputs(self, done: list[BatchItemResult]) -> int:
        """Keep a batch's outputs together under the offload threshold (each fits alone already):
        the largest become references. Aiming at half the threshold leaves room for the next items,
        so this runs once per half-threshold of new output, not once per item."""
        assert self.payloads is not None
        outputs = await offload(
            [result.output for result in done], self.payloads, self.offload_bytes // 2, keep_root=True
        )
        for result, output in zip(done, outputs, strict=True):
            result.output = output
        return serialized_size(outputs)

    async def _run_item_with_retries(self, request: StepRequest) -> BatchItemResult:
        delay = 1.0
        for attempt in range(1, request.max_attempts + 1):
            outcome = await self._attempt(request, attempt)
            if outcome.error is None:
                return BatchItemResult(
                    item_index=request.item_index or 0, ok=True, output=outcome.output, attempts=attempt
                )
            if not outcome.error.retryable or attempt == request.max_attempts:
                error = outcome.error.to_dict() | {"attempts": attempt}
                return BatchItemResult(
                    item_index=request.item_index or 0, ok=False, error=error, attempts=attempt
                )
            await asyncio.sleep(outcome.error.retry_after_s or delay)
            delay = min(delay * 2, 60.0)
        raise AssertionError("unreachable")

    async def _run_one(self, request: StepRequest) -> StepResult:
        attempt = activity.info().attempt
        outcome = await self._attempt(request, attempt)
        if outcome.error is None:
            return StepResult(output=outcome.output, metrics=(outcome.metrics or {}) | {"attempt": attempt})
        error = outcome.error
        raise ApplicationError(
            error.message,
            {"category": error.category.value, "details": error.details, "attempt": attempt},
            type=error.category.value,
            non_retryable=not error.retryable,
            next_retry_delay=timedelta(seconds=error.retry_after_s) if error.retry_after_s else None,
        )

    async def _attempt(self, request: StepRequest, attempt: int) -> _Attempt:
        handler = HANDLERS.get(request.kind)
        # On the activity's span (Temporal's tracing interceptor); a no-op when tracing is off.
        trace.get_current_span().set_attributes(
            {"rte.step.path": request.step_path, "rte.step.kind": request.kind, "rte.step.attempt": attempt}
            | ({"rte.step.item": request.item_index} if request.item_index is not None else {})
        )
        context = StepContext(
            request=request, attempt=attempt, connections=self.connections, policy=self.policy
        )
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        outcome = _Attempt()
        try:
            if handler is None:
                raise EngineError(ErrorCategory.CONFIGURATION, f"no handler for step kind '{request.kind}'")
            params = await self._resolved(request.params)
            outcome.output = await self._offloaded(await handler(params, context), request)
        except EngineError as error:
            outcome.error = error
        except asyncio.CancelledError:
            context.log("warning", "cancelled", "engine")
            raise
        except Exception as error:  # noqa: BLE001 - a bug in a handler must still be reported as a step error
            outcome.error = EngineError(
                ErrorCategory.INTERNAL,
                f"{type(error).__name__}: {error}",
                details={"traceback": traceback.format_exc(limit=8)},
            )
        if outcome.error is not None:
            error = outcome.error
            error.message = context.redact(error.message)
            error.details = _redact_tree(error.details, context)
            context.log(
                "error", f"attempt {attempt} failed [{error.category.value}]: {error.message}", "engine"
            )
        duration_ms = round((time.perf_counter() - started) * 1000, 1)  # a tenth of a ms, as the API shows
        outcome.metrics = context.metrics | {"duration_ms": duration_ms}
        await self._record(context, attempt, started_at, duration_ms, outcome)
        return outcome

    async def _resolved(self, params: dict[str, Any]) -> dict[str, Any]:
        if not contains_reference(params):
            return params
        if self.payloads is None:
            raise EngineError(
                ErrorCategory.CONFIGURATION,
                "the step's input holds payload references but this worker has no payload store",
            )
        resolved: dict[str, Any] = await resolve(params, self.payloads)
        return resolved

    async def _offloaded(self, output: Any, request: StepRequest) -> Any:
        if self.payloads is None:
            return output
        threshold = self.offload_bytes
        if request.output_budget_bytes is not None:
            threshold = min(threshold, max(request.output_budget_bytes, MIN_REF_BYTES))
        return await offload(output, self.payloads, threshold)

    async def _record(
        self, context: StepContext, attempt: int, started_at: datetime, duration_ms: float, outcome: _Attempt
    ) -> None:
        if self.telemetry is None:
            return
        request = context.request
        run_id = activity.info().workflow_run_id if activity.in_activity() else request.run_id
        common = {
            "execution_id": request.execution_id,
            "run_id": run_id,
            "step_path": request.step_path,
            "item_index": request.item_index,
            "attempt": attempt,
        }
        logs = [_log_row(entry, common) for entry in context.logs]
        metric = common | {
            "definition_id": request.definition_id,
            "kind": request.kind,
            "status": "completed" if outcome.error is None else "failed",
            "started_at": started_at,
            "duration_ms": duration_ms,
            "error_category": outcome.error.category.value if outcome.error else None,
            **_error_fields(request, outcome.error),
            **{
                key: context.metrics.get(key)
                for key in ("bytes_in", "bytes_out", "tokens_prompt", "tokens_completion", "http_status")
            },
        }
        try:
            await self.telemetry.record(logs, metric)
        except Exception as error:  # noqa: BLE001 - losing a log line must not fail the step
            activity.logger.warning("could not record step telemetry: %s", error)


def _error_fields(request: StepRequest, error: EngineError | None) -> dict[str, Any]:
    """What error analysis keeps of a failed attempt (already redacted), bounded in size."""
    connection = request.connection or request.params.get("connection")
    connection_id = str(connection)[:100] if isinstance(connection, str) and connection else None
    url = (error.details.get("url") if error else None) or request.params.get("url")
    host = analysis.host_of(url) if isinstance(url, str) else None
    if error is None:
        return {"connection_id": connection_id, "host": host}
    message = error.message[: analysis.MAX_MESSAGE]
    return {
        "error_message": message,
        "error_fingerprint": analysis.fingerprint(
            request.kind, error.category.value, connection_id or host, message
        ),
        "error_retryable": error.retryable,
        "error_details": analysis.bounded_details(error.details),
        "connection_id": connection_id,
        "host": host,
    }


def _log_row(entry: LogEntry, common: dict[str, Any]) -> dict[str, Any]:
    return common | {
        "level": entry.level,
        "source": entry.source,
        "message": entry.message,
        "timestamp": entry.timestamp,
    }


def _redact_tree(value: Any, context: StepContext) -> Any:
    if isinstance(value, str):
        return context.redact(value)
    if isinstance(value, dict):
        return {key: _redact_tree(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_tree(item, context) for item in value]
    return value
