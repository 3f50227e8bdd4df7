"""The error answers the API documents. Every refusal is `{"detail": ...}`: a message naming the field or file and
what is wrong. Each route lists the codes it may answer with (`responses=error_responses(...)`), so a client, or
a fuzzer such as schemathesis, reading /openapi.json knows every answer it can get. The codes every route shares
(401 without the token, 403 for a cross-site request, 413 for a body over the limit) are the app's, not listed.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorAnswer(BaseModel):
    """A refusal: what is wrong, naming the field, file or id."""

    detail: str


class InputRefusal(BaseModel):
    """422: a route's own check answers with a message naming the field; the framework's check of a parameter's
    type (a size that is not a number, a body that is not JSON) answers with its list of {loc, msg, type}."""

    detail: str | list[dict[str, Any]]


MEANINGS = {
    400: "the request cannot be read: a body that is not JSON or not a form, a name that is not one, a file that "
         "is not a usable image; the message names it",
    404: "nothing by that name or id (or one that is not a valid name or id); the message says which",
    409: "refused in the current state of the thing named, as the message says",
    413: "the body, or one of its files, is over its size limit",
    422: "a field or parameter refused; the message names it and what is wrong",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of a route that may refuse with these status codes."""
    return {code: {"description": MEANINGS[code], "model": InputRefusal if code == 422 else ErrorAnswer}
            for code in codes}
