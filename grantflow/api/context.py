"""Every request's id, and the last line of defence: an error nobody expected.

The request id (the client's `X-Request-Id` if it is a sane one, else a fresh one) is bound to
every log line of the request and returned in the `X-Request-Id` header. An unexpected error is
answered 500 with that id in a JSON body and logged in ONE line (its type, message and where it
was raised): never passed on to the server, whose traceback with every frame's locals took
seconds to print and buried the log."""

from __future__ import annotations

import json
import re
import uuid
from types import TracebackType

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)
_SANE_ID = re.compile(r"[\x21-\x7e]{1,64}")  # visible ASCII: safe in a header and a log line
INTERNAL = "an unexpected error occurred; quote the request id when you report it"


def request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            given: str = value.decode("latin-1")[:64]
            if _SANE_ID.fullmatch(given):
                return given
    return uuid.uuid4().hex


def one_line(text: str, limit: int = 500) -> str:
    return " ".join(text.split())[:limit]


def raised_at(tb: TracebackType | None) -> str:
    """file:line of the innermost frame, found without formatting the traceback."""
    if tb is None:
        return "?"
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


class RequestContext:
    """Pure ASGI middleware, the outermost of the app's own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=rid)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(n, v) for n, v in message.get("headers", []) if n != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            log.error(
                "unexpected error",
                request_id=rid,
                method=scope.get("method"),
                path=ascii(scope.get("path", ""))[1:-1][:200],
                error=one_line(f"{type(exc).__name__}: {exc}"),
                at=raised_at(exc.__traceback__),
            )
            if not started:  # else the answer is half sent: the server closes the connection
                await _internal(send_with_id, rid)


async def _internal(send: Send, rid: str) -> None:
    body = json.dumps({"detail": INTERNAL, "request_id": rid}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
