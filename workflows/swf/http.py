"""`call: http` at run time: from the task's evaluated arguments to the `http` activity's parameters,
and from the activity's answer to the task's output (`content`, `response` or `raw`).

Pure functions: they run inside the workflow, so the Authorization header of an inline policy is
built here from values the workflow already holds; stored credentials (a connection) are only ever
added by the activity.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from rte.errors import EngineError, ErrorCategory, json_type_name
from workflows.swf.expressions import whole_expression

_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HIDDEN = "***"


@dataclass(frozen=True)
class HttpCall:
    params: dict[str, Any]  # the `http` activity's parameters (activities/http.py HttpParams)
    request: dict[str, Any]  # {method, uri, headers}, as `output: response` reports it (credentials hidden)


def expand_uri(template: str, data: Any) -> str:
    """RFC 6570 simple expansion: `{name}` → the task input's top-level field `name`, percent-encoded."""

    def value_of(match: re.Match[str]) -> str:
        name = match.group(1)
        if not isinstance(data, dict) or data.get(name) is None:
            raise EngineError(
                ErrorCategory.VALIDATION,
                f"the endpoint {template} needs '{name}', which is not a field of the task's input",
            )
        value = data[name]
        return quote(value if isinstance(value, str) else json.dumps(value), safe="")

    return _VARIABLE.sub(value_of, template)


def evaluable_parts(arguments: dict[str, Any]) -> dict[str, Any]:
    """The templates of a lowered `call: http` that are evaluated against the task's input (at once,
    through the workflow's expression boundary) before `build_call` assembles the request."""
    parts = {
        "endpoint": arguments["endpoint"],
        "headers": arguments.get("headers") or {},
        "query": arguments.get("query") or {},
        "authentication": arguments.get("authentication") or {},
    }
    if "body" in arguments:
        parts["body"] = arguments["body"]
    return parts


def build_call(
    arguments: dict[str, Any], evaluated: dict[str, Any], data: Any, timeout_s: float
) -> HttpCall:
    """The activity's parameters for a lowered `call: http` (`arguments` = the step's `with`,
    `evaluated` = its `evaluable_parts`, evaluated)."""
    endpoint = arguments["endpoint"]
    if isinstance(endpoint, str) and whole_expression(endpoint) is not None:
        uri = evaluated["endpoint"]
        if not isinstance(uri, str):
            raise EngineError(
                ErrorCategory.EXPRESSION, f"the endpoint expression gave {json_type_name(uri)}, not a URI"
            )
    else:
        uri = expand_uri(str(evaluated["endpoint"]), data)
    headers = _text_values(evaluated["headers"], "headers")
    query = {
        key: value for key, value in _mapping(evaluated["query"], "query").items() if value is not None
    }
    shown_headers = dict(headers)
    for scheme, fields in _mapping(evaluated["authentication"], "authentication").items():
        headers["Authorization"] = _authorization(scheme, fields)
        shown_headers["Authorization"] = _HIDDEN
    output = arguments.get("output", "content")
    params: dict[str, Any] = {
        "method": arguments["method"],
        "url": uri,
        "headers": headers,
        "query": {
            key: value if isinstance(value, str | int | float | bool | list) else json.dumps(value)
            for key, value in query.items()
        },
        "timeout_s": timeout_s,
        "response": "body" if output == "content" else "full",
        "expect": "text" if output == "raw" else "auto",
    }
    if "body" in arguments:
        params["body"] = evaluated["body"]
    return HttpCall(
        params=params, request={"method": arguments["method"], "uri": uri, "headers": shown_headers}
    )


def shown_params(call: HttpCall) -> dict[str, Any]:
    """The parameters as the execution's state shows them: no credentials."""
    return {**call.params, "headers": call.request["headers"]}


def task_output(output: str, call: HttpCall, answer: Any) -> Any:
    """The task's raw output for `with.output`: the body, the whole response, or the body in base64."""
    if output == "content":
        return answer
    if output == "raw":
        body = answer.get("body")
        text = body if isinstance(body, str) else json.dumps(body) if body is not None else ""
        return base64.b64encode(text.encode()).decode()
    return {
        "request": call.request,
        "statusCode": answer.get("status"),
        "headers": answer.get("headers") or {},
        "content": answer.get("body"),
    }


def _authorization(scheme: str, values: dict[str, Any]) -> str:
    for key, value in values.items():
        if not isinstance(value, str) or not value:
            raise EngineError(
                ErrorCategory.VALIDATION, f"{scheme} authentication: `{key}` must be non-empty text"
            )
    if scheme == "basic":
        pair = f"{values['username']}:{values['password']}".encode()
        return "Basic " + base64.b64encode(pair).decode()
    return "Bearer " + values["token"]


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EngineError(
            ErrorCategory.VALIDATION, f"`{what}` must be an object, got {json_type_name(value)}"
        )
    return value


def _text_values(value: Any, what: str) -> dict[str, str]:
    return {
        str(key): item if isinstance(item, str) else json.dumps(item)
        for key, item in _mapping(value, what).items()
        if item is not None
    }
