"""JSON request bodies nested too deeply or holding lone surrogates are refused with a 422 problem.

FastAPI would parse them and hand them on, and they would fail much later with a 500 (see
`rte.json_input`). The check runs before the app reads the body; a body that cannot be a problem
(few brackets, no surrogate in sight) is passed on without being parsed here. Bodies are already
bounded by `BodySizeLimit`, which runs first.
"""

from __future__ import annotations

from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem_response
from rte import json_input

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class JsonBodyGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            try:
                message = await receive()
            except HTTPException as error:  # BodySizeLimit refused the body as it arrived
                await problem_response(
                    error.status_code,
                    HTTPStatus(error.status_code).phrase,
                    str(error.detail),
                    scope.get("path"),
                )(scope, receive, send)
                return
            if message["type"] != "http.request":  # the client left
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if json_input.may_need_check(body):
            try:
                json_input.loads(body)
            except json_input.JsonInputError as error:
                response = problem_response(
                    422,
                    "Invalid request",
                    f"{error.path}: {error.message}",
                    scope.get("path"),
                    violations=[{"path": error.path, "message": error.message}],
                )
                await response(scope, receive, send)
                return
            except (ValueError, UnicodeDecodeError):
                pass  # malformed JSON: the app answers it as usual (a 422 naming the position)
        await self.app(
            scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send
        )


def _is_json(scope: Scope) -> bool:
    headers = dict(scope.get("headers") or [])
    content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    # FastAPI parses a body without a content type as JSON too.
    return not content_type or content_type == b"application/json" or content_type.endswith(b"+json")


def _replay(messages: list[Message], receive: Receive) -> Receive:
    async def replayed() -> Message:
        return messages.pop(0) if messages else await receive()

    return replayed
