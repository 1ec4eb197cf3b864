"""Checks on a request body before Litestar decodes it into the handler's Struct."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import SerializationException

from domain.errors import InvalidInputError, InvalidJsonError
from entrypoints.http.errors import describe_msgspec_error

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# A JSON string (escapes included) or a bracket outside one.
_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def json_depth_exceeds(body: bytes, max_depth: int) -> bool:
    """Whether `body` nests arrays and objects deeper than `max_depth`, found without
    decoding it (a decoder would recurse and could run out of stack first)."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False
    depth = 0
    for match in _STRUCTURE.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


def make_body_check(max_depth: int):  # type: ignore[no-untyped-def]
    async def check_json_body(request: Request[Any, Any, Any]) -> None:
        """Refuse a body that is not UTF-8, nests too deep or is not JSON (400 INVALID_JSON);
        the body is read once and Litestar reuses it and its decoded value."""
        if request.method not in _BODY_METHODS:
            return
        body = await request.body()  # past server.maxBodySize Litestar raises its 413
        if not body:
            return  # the handler's own validation names the missing body
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidJsonError(
                f"the request body is not UTF-8 (byte {error.start}); send JSON in UTF-8"
            ) from None
        if json_depth_exceeds(body, max_depth):
            raise InvalidJsonError(
                f"the request body nests arrays or objects deeper than {max_depth} levels"
            )
        try:
            value = await request.json()
        except SerializationException as error:
            raise InvalidJsonError(f"the request body is not valid JSON: {error.detail}") from None
        if (field := request.route_handler.parsed_data_field) is not None:
            # Litestar converts bodies leniently (`0` and "true" become booleans); the
            # contract wants `condition must be true or false` for those.
            try:
                msgspec.convert(value, field.annotation, strict=True)
            except msgspec.ValidationError as error:
                raise InvalidInputError(describe_msgspec_error(str(error))) from None

    return check_json_body
