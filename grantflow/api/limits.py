"""The request body limit, enforced on the bytes received rather than on what the client says.

A Content-Length over the limit is refused before the body reaches any route; a body sent
without one (chunked) or with a wrong one is counted as it arrives and refused as soon as it
goes over, so no route ever sees more than `max_bytes` of it.

The refusal is answered only after the rest of the body has been read and thrown away (up to
`drain_bytes`, for at most `drain_seconds`): a server that answers and closes while the client
is still sending resets the connection, and the client sees that reset instead of the 413. A
client that sent `Expect: 100-continue` has sent nothing yet, so it is answered at once."""

from __future__ import annotations

import asyncio
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 10.0


class _TooLarge(HTTPException):
    """Raised from `receive` once the body goes over the limit. An HTTPException, so that a
    route reading its body passes it on as a 413 instead of calling it unparseable (400)."""


class BodyLimit:
    """Pure ASGI middleware: 413 for a body over `max_bytes`, however it is sent."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        drain_bytes: int = DRAIN_BYTES,
        drain_seconds: float = DRAIN_SECONDS,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes, self.drain_seconds = drain_bytes, drain_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            if headers.get(b"expect", b"").lower() != b"100-continue":
                declared = int(length) if length.isdigit() else 0
                await self._drain(receive, done=False, declared=declared)
            await self._refuse(send)
            return
        received = 0
        finished = started = False

        async def counting_receive() -> Message:
            nonlocal received, finished
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                finished = not message.get("more_body", False)
                if received > self.max_bytes:
                    raise _TooLarge(413, f"body over {self.max_bytes} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if started:  # a route that answered before reading it all: nothing left to say
                raise
            await self._drain(receive, done=finished, declared=0)
            await self._refuse(send)

    async def _drain(self, receive: Receive, *, done: bool, declared: int) -> None:
        """Read and discard what is left of the body, within the bounds: beyond them the
        client may see a reset, but it is not worth holding the connection open for."""
        if done or declared > self.drain_bytes:
            return
        drained = 0
        try:
            async with asyncio.timeout(self.drain_seconds):
                while drained <= self.drain_bytes:
                    message = await receive()
                    if message["type"] != "http.request" or not message.get("more_body"):
                        return
                    drained += len(message.get("body", b""))
        except TimeoutError:
            return

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": f"body over {self.max_bytes} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
