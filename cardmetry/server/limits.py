"""A bound on the size of every HTTP request body, counted as the bytes arrive.

A declared Content-Length over the bound is refused before a byte of the body is read; a body sent without one
(chunked) is counted message by message and refused (413, with a JSON `detail` naming the limit) as soon as the
count passes the bound, so an upload cannot fill the temporary folder the form parser spools files into before
it is refused. It is a plain ASGI middleware: it does not depend on the web framework's own limits, and it
leaves WebSockets alone.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLargeError(Exception):
    """Raised to the app from `receive` once the body has passed the bound: it must read no further."""


def describe_size(size: int) -> str:
    return f"{size // 1024**2} MB" if size >= 1024**2 else f"{size} bytes"


class BodyLimit:
    """`app` with every HTTP request body bounded to `max_bytes`; a longer one gets a 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must not be negative, got {max_bytes}")
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _declared_length(scope) > self.max_bytes:  # refused before a byte of it is read
            await self.refuse(send)
            return
        await _LimitedRequest(self, receive, send).run(scope)

    async def refuse(self, send: Send) -> None:
        detail = f"the request body is over the upload limit of {describe_size(self.max_bytes)}"
        body = json.dumps({"detail": detail}).encode()
        # The rest of the body is never read, so the connection cannot carry another request.
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _LimitedRequest:
    """One request through the limit: counts what the app receives and, once the bound is passed, answers 413
    in place of whatever the app answers (a framework may turn the error raised from `receive` into a 400)."""

    def __init__(self, limit: BodyLimit, receive: Receive, send: Send) -> None:
        self.limit, self._receive, self._send = limit, receive, send
        self.received = 0
        self.too_large = False
        self.app_answered = False  # the app's response has started: no other answer can follow it
        self.refused = False  # the 413 is sent: what the app sends after it goes nowhere

    async def run(self, scope: Scope) -> None:
        try:
            await self.limit.app(scope, self.receive, self.send)
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
            if self.received > self.limit.max_bytes:
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
        await self.limit.refuse(self._send)


def _declared_length(scope: Scope) -> int:
    """The Content-Length the request declares, 0 when none (or a malformed one, which the server refuses)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0
