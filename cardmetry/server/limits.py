"""A bound on the size of every HTTP request body, counted as the bytes arrive: a small default for every route,
and larger bounds for the few routes that take files (matched by method and path pattern), so a 30 MB JSON body
sent to a route that expects a few hundred bytes is refused, not read whole.

A declared Content-Length over the bound is refused before a byte of the body is read; a body sent without one
(chunked) is counted message by message and refused (413, with a JSON `detail` naming the limit) as soon as the
count passes the bound, so an upload cannot fill the temporary folder the form parser spools files into before
it is refused. It is a plain ASGI middleware: it does not depend on the web framework's own limits, and it
leaves WebSockets alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLargeError(Exception):
    """Raised to the app from `receive` once the body has passed the bound: it must read no further."""


DEFAULT_MAX_BYTES = 1024**2  # a route that takes no files: a JSON document of settings at most


def describe_size(size: int) -> str:
    return f"{size // 1024**2} MB" if size >= 1024**2 else f"{size} bytes"


@dataclass(frozen=True)
class RouteLimit:
    """A bound of its own for the requests with this method whose whole path matches `path` (a regular
    expression, e.g. `/api/datasets/[^/]+/upload`)."""

    method: str
    path: str
    max_bytes: int

    def __post_init__(self) -> None:
        if self.max_bytes < 0:
            raise ValueError(f"max_bytes for {self.method} {self.path} must not be negative, got {self.max_bytes}")
        re.compile(self.path)  # a broken pattern fails when the app is built, not at the first request

    def matches(self, method: str, path: str) -> bool:
        return method.upper() == self.method.upper() and re.fullmatch(self.path, path) is not None


class BodyLimit:
    """`app` with every HTTP request body bounded: to the bound of the first of `routes` that matches the
    request's method and path, else to `max_bytes`. A longer body gets a 413."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BYTES, routes: Sequence[RouteLimit] = ()) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must not be negative, got {max_bytes}")
        self.app, self.max_bytes, self.routes = app, max_bytes, tuple(routes)

    def bound_for(self, scope: Scope) -> int:
        """The most bytes this request's body may hold."""
        method, path = scope.get("method", ""), scope.get("path", "")
        return next((route.max_bytes for route in self.routes if route.matches(method, path)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bound = self.bound_for(scope)
        if _declared_length(scope) > bound:  # refused before a byte of it is read
            await refuse(send, bound)
            return
        await _LimitedRequest(self.app, bound, receive, send).run(scope)


async def refuse(send: Send, bound: int) -> None:
    """The 413 answer for a body over `bound` bytes."""
    detail = f"the request body is over the upload limit of {describe_size(bound)}"
    body = json.dumps({"detail": detail}).encode()
    # The rest of the body is never read, so the connection cannot carry another request.
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _LimitedRequest:
    """One request through the limit: counts what the app receives and, once the bound is passed, answers 413
    in place of whatever the app answers (a framework may turn the error raised from `receive` into a 400)."""

    def __init__(self, app: ASGIApp, bound: int, receive: Receive, send: Send) -> None:
        self.app, self.bound, self._receive, self._send = app, bound, receive, send
        self.received = 0
        self.too_large = False
        self.app_answered = False  # the app's response has started: no other answer can follow it
        self.refused = False  # the 413 is sent: what the app sends after it goes nowhere

    async def run(self, scope: Scope) -> None:
        try:
            await self.app(scope, self.receive, self.send)
        except Exception:  # BodyTooLargeError, or what the app made of it (an ExceptionGroup from a task group)
            if not self.too_large or self.app_answered:
                raise  # not ours; or the app answered before it read its body: too late for a 413
        if self.too_large and not self.app_answered and not self.refused:
            await self._refuse()

    async def receive(self) -> Message:
        if self.too_large:
            raise BodyTooLargeError
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.bound:
                self.too_large = True
                raise BodyTooLargeError
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if self.too_large and not self.app_answered:  # the app's answer to the error it was given
            await self._refuse()
            return
        if message["type"] == "http.response.start":
            self.app_answered = True
        await self._send(message)

    async def _refuse(self) -> None:
        self.refused = True
        await refuse(self._send, self.bound)


def _declared_length(scope: Scope) -> int:
    """The Content-Length the request declares, 0 when none (or a malformed one, which the server refuses)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0
