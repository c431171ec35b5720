"""Property-based checks of the whole API against its own OpenAPI document (schemathesis).

A few generated requests per operation, with an admin key: no answer may be a 5xx, and every answer
must match the schema the document declares for it. Streams (text/event-stream) never end, so they
are left to their own tests, and bulk actions by filter would act on every execution of the test
server, so they are too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import response_schema_conformance
from schemathesis.core.failures import FailureGroup

from rte.store.api_keys import Role
from tests.api.conftest import ApiServer

MAX_EXAMPLES = 5
SKIPPED = {("POST", "/executions/bulk")}


def _streams(definition: dict) -> bool:  # type: ignore[type-arg]
    return any(
        "text/event-stream" in (answer.get("content") or {})
        for answer in definition.get("responses", {}).values()
    )


def exercise(base_url: str, key: str) -> tuple[int, list[str]]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {key}"}
    problems: list[str] = []
    operations = 0

    def checker(operation: schemathesis.APIOperation) -> Callable[[], None]:
        label = f"{operation.method.upper()} {operation.path}"

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=base_url, headers=headers, timeout=30)
            if response.status_code >= 500:
                problems.append(f"{label} → {response.status_code}: {response.text[:300]}")
                return
            try:
                case.validate_response(response, checks=[response_schema_conformance])
            except FailureGroup as failures:
                for failure in failures.exceptions:
                    problems.append(
                        f"{label} → {response.status_code}: {failure.title}: {str(failure)[:300]}"
                    )
            except AssertionError as failure:
                problems.append(f"{label} → {response.status_code}: {str(failure)[:300]}")

        return check

    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED or _streams(operation.definition.raw):
            continue
        operations += 1
        checker(operation)()
    return operations, problems


async def test_generated_requests_get_no_server_errors_and_match_the_documented_schemas(
    api_server: ApiServer,
) -> None:
    # Run off the event loop: the worker behind the API keeps running while schemathesis calls it.
    operations, problems = await asyncio.to_thread(exercise, api_server.url, api_server.keys[Role.ADMIN])
    assert operations > 30
    assert problems == [], json.dumps(problems, indent=1)
