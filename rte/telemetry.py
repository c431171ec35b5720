"""OpenTelemetry tracing for the API, the Temporal client and worker, and outgoing HTTP calls.

Off by default and then free: no tracer provider, no interceptor, no instrumentation. On when the
standard `OTEL_EXPORTER_OTLP_ENDPOINT` is set (spans go out over OTLP/HTTP; the other `OTEL_*`
variables — service name, resource attributes, sampler, headers — are read by the SDK itself), or
when a test hands `enable_tracing` an exporter of its own.

One run gives one trace: the API request's span is the parent of the workflow start; Temporal's
`TracingInterceptor` carries the context through the workflow into every activity, and the httpx
instrumentation sends it on to the target as a W3C `traceparent` header.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("rte.telemetry")

_provider: TracerProvider | None = None


def enable_tracing(exporter: SpanExporter | None = None) -> TracerProvider | None:
    """Set tracing up for this process (once); returns the provider, or None when tracing is off.

    Without `exporter`, tracing is on only if `OTEL_EXPORTER_OTLP_ENDPOINT` (or its `_TRACES_`
    variant) is set (and
    `OTEL_SDK_DISABLED` is not true).
    """
    global _provider
    if _provider is not None:
        return _provider
    if exporter is None:
        if not (
            os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        ):
            return None
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return None
    # Imported only when on: the SDK and instrumentations cost nothing in a process without tracing.
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor: Any = BatchSpanProcessor(OTLPSpanExporter())  # endpoint/headers from OTEL_*
    else:
        processor = SimpleSpanProcessor(exporter)  # a test's exporter sees each span as it ends
    provider = TracerProvider(resource=Resource.create(_default_resource()))
    provider.add_span_processor(processor)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    _provider = provider
    return provider


def disable_tracing() -> None:
    """Undo `enable_tracing` (tests): flush spans, remove the httpx instrumentation."""
    global _provider
    if _provider is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().uninstrument()
    _provider.shutdown()
    _provider = None


def _default_resource() -> dict[str, str]:
    """`service.name=rte` unless OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES name the service."""
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    return {} if named else {"service.name": "rte"}


def temporal_interceptors() -> list[Any]:
    """Interceptors for `Client.connect`: Temporal's tracing interceptor when tracing is on.

    A worker built on that client uses it too (it is also a worker interceptor), so workflows and
    activities continue the trace their start carried in its headers.
    """
    if _provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(_provider.get_tracer("temporalio"))]


def instrument_app(app: FastAPI) -> None:
    """Trace every API request (a server span per request) when tracing is on."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider)


def serve_sdk_metrics(bind_address: str) -> bool:
    """Serve the Temporal SDK's own Prometheus metrics (`temporal_*`) on `bind_address` (host:port).

    The SDK's Runtime is per process and every client takes it when it connects: call this first.
    An address already in use (a second worker on the host with the same setting, e.g. `rte up`'s
    script worker) is logged and the worker runs on without SDK metrics rather than crash-looping.
    """
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    try:
        runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind_address)))
    except ValueError as error:
        log.error("no Temporal SDK metrics on %s (RTE_WORKER_METRICS_ADDRESS): %s", bind_address, error)
        return False
    Runtime.set_default(runtime, error_if_already_set=True)
    log.info("Temporal SDK metrics on http://%s/metrics", bind_address)
    return True
