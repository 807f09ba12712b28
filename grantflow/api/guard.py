"""Input that no route can take, refused at the door (422) before any route sees it.

- NUL and lone surrogates, in the path, the query, the headers or a JSON body's strings and
  names: PostgreSQL stores neither, and a NUL that reached a workflow's write failed that write
  on every retry, so the request was never answered.
- Non-finite numbers in a JSON body: JSON has none, but Python's parser reads `NaN`,
  `Infinity` and `1e400` (as inf), which then could not even be echoed in a 422.
- JSON nested deeper than any request body is.

The answer has pydantic's shape (type, loc, msg) and never echoes the value it refuses."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from email.message import Message as MimeType
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_DEPTH = 32  # the deepest request body (an application's budget lines) is 4
MAX_ERRORS = 20  # a body full of NaN gets a short answer
_SURROGATE = re.compile("[\ud800-\udfff]")

Loc = tuple[str | int, ...]


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored, or None."""
    if "\x00" in text:
        return "NUL (U+0000) is not accepted in text"
    if _SURROGATE.search(text):
        return "a lone surrogate is not valid Unicode"
    return None


def _error(kind: str, loc: Loc, msg: str) -> dict[str, Any]:
    return {"type": kind, "loc": list(loc), "msg": msg}


def _name(name: str) -> str:
    """A name fit to quote in `loc`: a refused character is shown escaped, never as itself."""
    return ascii(name)[1:-1] if text_problem(name) else name


def _children(value: Any, loc: Loc) -> Iterator[tuple[Any, Loc, str | None]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield item, (*loc, _name(key)), text_problem(key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield item, (*loc, index), None


def json_errors(document: Any) -> list[dict[str, Any]]:
    """What in a parsed JSON body cannot be taken, in document order (iteratively: depth costs
    no recursion)."""
    errors: list[dict[str, Any]] = []
    todo: list[tuple[Any, Loc]] = [(document, ("body",))]
    while todo and len(errors) < MAX_ERRORS:
        value, loc = todo.pop()
        if len(loc) > MAX_DEPTH:
            errors.append(_error("json_too_deep", loc, f"nested deeper than {MAX_DEPTH} levels"))
            continue
        if isinstance(value, str) and (problem := text_problem(value)):
            errors.append(_error("string_character", loc, problem))
        elif isinstance(value, float) and not math.isfinite(value):
            errors.append(_error("finite_number", loc, "Input should be a finite number"))
        children = list(_children(value, loc))
        errors += [_error("string_character", c, p) for _, c, p in children if p]
        todo += [(item, child) for item, child, _ in reversed(children)]
    return errors[:MAX_ERRORS]


def request_errors(scope: Scope) -> list[dict[str, Any]]:
    """NUL or lone surrogates in the path, the query or the headers."""
    errors = []
    if problem := text_problem(scope.get("path", "")):
        errors.append(_error("string_character", ("path",), problem))
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        if problem := text_problem(name) or text_problem(value):
            errors.append(_error("string_character", ("query", _name(name)), problem))
    for raw_name, raw_value in scope.get("headers", []):
        if b"\x00" in raw_name or b"\x00" in raw_value:
            name = _name(raw_name.decode("latin-1"))
            errors.append(_error("string_character", ("header", name), "NUL is not accepted"))
    return errors


def _is_json(scope: Scope) -> bool:
    """Whether FastAPI reads this body as JSON (its own test, on the content type)."""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            mime = MimeType()
            mime["content-type"] = value.decode("latin-1")
            subtype = mime.get_content_subtype()
            return mime.get_content_maintype() == "application" and (
                subtype == "json" or subtype.endswith("+json")
            )
    return False


def body_errors(scope: Scope, body: bytes) -> list[dict[str, Any]]:
    """What in a JSON body cannot be taken. A body that is not JSON at all is left to the
    route, which answers it as before (422 json_invalid, or 400)."""
    if not body or not _is_json(scope):
        return []
    try:
        document = json.loads(body)
    except RecursionError:
        return [_error("json_too_deep", ("body",), f"nested deeper than {MAX_DEPTH} levels")]
    except ValueError:
        return []
    return json_errors(document)


class InputGuard:
    """Pure ASGI middleware: reads the body (already bounded by BodyLimit, which wraps it),
    checks it with the path, query and headers, then hands the body on unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body, disconnected = await _read(receive)
        if disconnected:
            return  # the client is gone: nobody to answer
        errors = request_errors(scope) + body_errors(scope, body)
        if errors:
            await _refuse(send, errors[:MAX_ERRORS])
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _read(receive: Receive) -> tuple[bytes, bool]:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"", True
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


async def _refuse(send: Send, errors: list[dict[str, Any]]) -> None:
    body = json.dumps({"detail": errors}).encode()  # ASCII: escaped names stay escaped
    await send(
        {
            "type": "http.response.start",
            "status": 422,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
