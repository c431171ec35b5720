"""Serverless Workflow constructs the engine does not run, and what it says about each one.

Every one of them fails compilation with E110 at the construct's position — never at run time. The
hint says what to write instead, or how the construct could be supported later.
"""

from __future__ import annotations

from dataclasses import dataclass

UNSUPPORTED_CODE = "E110"


@dataclass(frozen=True)
class Unsupported:
    what: str  # the construct, as the author wrote it
    why: str
    hint: str


_EVENTS_LATER = (
    "events are not wired to the engine yet; they could be supported through Temporal signals "
    "(listen) and an outbound event activity (emit)"
)

TASKS: dict[str, Unsupported] = {
    "emit": Unsupported("`emit` tasks", "the engine has no event broker", _EVENTS_LATER),
    "listen": Unsupported("`listen` tasks", "the engine has no event consumer", _EVENTS_LATER),
}

CALLS: dict[str, Unsupported] = {
    "grpc": Unsupported(
        "`call: grpc`", "the engine has no gRPC client", "expose the service over HTTP and use `call: http`"
    ),
    "openapi": Unsupported(
        "`call: openapi`",
        "the engine does not read OpenAPI documents",
        "write the operation as `call: http` with its method and endpoint",
    ),
    "asyncapi": Unsupported("`call: asyncapi`", "the engine has no message broker client", _EVENTS_LATER),
    "a2a": Unsupported(
        "`call: a2a`", "agent-to-agent calls are not supported", "call the agent's HTTP API with `call: http`"
    ),
    "mcp": Unsupported(
        "`call: mcp`",
        "MCP servers are not supported",
        "call the tool through its HTTP API with `call: http`, or wrap it in a Python function",
    ),
}

CATALOG_FUNCTION = Unsupported(
    "cataloged functions",
    "the engine does not download function definitions",
    "define the function under `use.functions`, or register a Python function on the worker and call it by name",
)

PROCESSES: dict[str, Unsupported] = {
    "container": Unsupported(
        "`run: container`",
        "the engine does not start containers",
        "call the container's service with `call: http`",
    ),
    "shell": Unsupported(
        "`run: shell`",
        "shell commands would run on the worker's host",
        "register a Python function on the worker and call it by name",
    ),
    "script": Unsupported(
        "`run: script`",
        "scripts are not wired to the engine's sandbox yet",
        "the engine's `script` step kind (native format) runs sandboxed code; `run: script` could be "
        "supported through that sandbox later — until then, register a Python function and call it",
    ),
}

AUTHENTICATIONS: dict[str, Unsupported] = {
    scheme: Unsupported(
        f"`{scheme}` authentication",
        "the engine authenticates with its stored connections (bearer, basic, API key)",
        "store the credentials as a connection and write `authentication: {bearer: {use: <connection>}}`",
    )
    for scheme in ("digest", "oauth2", "oidc")
}

TOP_LEVEL: dict[str, Unsupported] = {
    "schedule": Unsupported(
        "`schedule`",
        "runs start through the API, the CLI or a Temporal schedule",
        "drop `schedule` and start the workflow from a Temporal schedule (cron) or from the API",
    ),
}

USE: dict[str, Unsupported] = {
    "extensions": Unsupported(
        "`use.extensions`", "tasks cannot be extended", "write the extra tasks into the workflow itself"
    ),
    "catalogs": Unsupported(
        "`use.catalogs`", "the engine does not download function catalogs", CATALOG_FUNCTION.hint
    ),
}

EXTERNAL_SCHEMA = Unsupported(
    "external schemas (`schema.resource`)",
    "the compiler does not fetch documents",
    "put the JSON Schema inline under `schema.document`",
)
SCHEMA_FORMAT = Unsupported(
    "schema formats other than JSON Schema", "only `format: json` is read", "write a JSON Schema"
)
EXPRESSION_LANGUAGE = Unsupported(
    "expression languages other than jq",
    "jq is the engine's expression language",
    "write the expressions in jq",
)
DSL_VERSION = Unsupported(
    "this DSL version", "the engine runs Serverless Workflow 1.0.x", "set `document.dsl` to a 1.0.x version"
)


def message(construct: Unsupported, where: str) -> str:
    return f"not supported: {construct.what} ({where}) — {construct.why}"
