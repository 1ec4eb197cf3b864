"""One error table: every error a client can see, with its status and code (SPEC section 3)."""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)
from loguru import logger

from domain import errors as domain
from entrypoints.http import methods
from entrypoints.http.schemas import ErrorBody

# Fixed reason phrases: Python 3.11's HTTPStatus still calls 413 "Request Entity Too Large".
REASON = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}

# Looked up along the error's class hierarchy, so a subclass inherits its parent's status.
STATUS_OF: dict[type[domain.DomainError], int] = {
    domain.InvalidJsonError: 400,
    domain.InvalidInputError: 400,
    domain.InvalidKeyError: 400,
    domain.InvalidToolParamsError: 400,
    domain.AuthenticationError: 401,
    domain.ExecutionMismatchError: 403,
    domain.NotFoundError: 404,
    domain.IdempotencyConflictError: 409,
    domain.BodyTooLargeError: 413,
    domain.RateLimitedError: 429,
    domain.BackendError: 502,
    domain.BackendAuthFailedError: 502,
    domain.BackendUnavailableError: 503,
    domain.AuditUnavailableError: 503,
    domain.DeadlineExceededError: 503,
    domain.ShuttingDownError: 503,
}

# Litestar's own errors that carry no domain meaning, by status.
CODE_OF_STATUS = {
    400: "INVALID_BODY",
    401: "TOKEN_INVALID",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "BODY_TOO_LARGE",
    429: "RATE_LIMITED",
    503: "SHUTTING_DOWN",
}


def status_of(error: domain.DomainError) -> int:
    return _status_of_class(type(error))


def _status_of_class(error_class: type[domain.DomainError]) -> int:
    for cls in error_class.__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 500


def codes_by_status() -> dict[int, list[str]]:
    """Every code a client can see, by its status: the domain's errors through the table,
    and the codes given to Litestar's own errors. The API document lists them."""
    found: dict[int, set[str]] = {}
    pending: list[type[domain.DomainError]] = [domain.DomainError]
    while pending:
        error_class = pending.pop()
        pending.extend(error_class.__subclasses__())
        found.setdefault(_status_of_class(error_class), set()).add(error_class.code)
    for status, code in CODE_OF_STATUS.items():
        found.setdefault(status, set()).add(code)
    return {status: sorted(codes) for status, codes in sorted(found.items())}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response[ErrorBody]:
    body = ErrorBody(success=False, error=REASON.get(status, "Error"), message=message, code=code)
    return Response(body, status_code=status, headers=headers)


def _rate_limit_values(limit: int, remaining: int, reset_after: int) -> tuple[str, str]:
    """SPEC section 4's `RateLimit-Policy` and `RateLimit` values."""
    return f'"exec";q={limit};w=60', f'"exec";r={remaining};t={reset_after}'


def rate_limit_headers(limit: int, remaining: int, reset_after: int) -> dict[str, str]:
    policy, state = _rate_limit_values(limit, remaining, reset_after)
    return {"RateLimit-Policy": policy, "RateLimit": state}


def rate_limit_fields(limit: int, remaining: int, reset_after: int) -> list[tuple[bytes, bytes]]:
    """`rate_limit_headers` as ASGI header fields, made directly (every answer has them)."""
    policy, state = _rate_limit_values(limit, remaining, reset_after)
    return [(b"ratelimit-policy", policy.encode()), (b"ratelimit", state.encode())]


def handle_domain_error(
    request: Request[Any, Any, Any], error: domain.DomainError
) -> Response[ErrorBody]:
    status = status_of(error)
    if status == 500:
        return handle_unexpected_error(request, error)
    headers = None
    if isinstance(error, domain.RateLimitedError):
        headers = {
            **rate_limit_headers(error.limit, 0, error.retry_after),
            "Retry-After": str(error.retry_after),
        }
    return error_response(status, error.code, error.message, headers)


def handle_http_exception(
    request: Request[Any, Any, Any], error: HTTPException
) -> Response[ErrorBody]:
    """Litestar's own errors (unknown route, wrong method, body too large, validation)."""
    status = error.status_code
    if status >= 500:
        return handle_unexpected_error(request, error)
    if isinstance(error, NotFoundException):
        message = f"no route matches {request.method} {request.url.path}"
        return error_response(404, "NOT_FOUND", message)
    if isinstance(error, MethodNotAllowedException):
        allowed = allowed_methods(request)
        if allowed:  # counted in the metrics under its route, as any answer on a known path
            path = request.scope["path"]
            request.scope["path_template"] = methods.route_template(request.app, path, allowed[0])
        message = f"{request.method} is not allowed here; use {', '.join(allowed)}"
        return error_response(405, "METHOD_NOT_ALLOWED", message, {"Allow": ", ".join(allowed)})
    if status == 413:
        limit = request.route_handler.resolve_request_max_body_size()
        message = f"the request body is larger than the limit of {limit} bytes"
        return error_response(413, "BODY_TOO_LARGE", message)
    if isinstance(error, ValidationException):
        return error_response(400, "INVALID_BODY", describe_validation_error(error))
    code = CODE_OF_STATUS.get(status, "INVALID_BODY" if status < 500 else "INTERNAL")
    return error_response(status, code, str(error.detail))


def handle_unexpected_error(
    request: Request[Any, Any, Any], error: Exception
) -> Response[ErrorBody]:
    request_id = request.scope.get("state", {}).get("request_id", "unknown")
    logger.opt(exception=error).error(
        "unhandled error in {method} {route}", method=request.method, route=_route(request)
    )
    message = f"an internal error occurred; quote request id {request_id} when reporting it"
    return error_response(500, "INTERNAL", message)


def allowed_methods(request: Request[Any, Any, Any]) -> list[str]:
    return methods.allowed_methods(request.app, request.scope["path"])


_EXPECTED = re.compile(r"Expected `(?P<type>[^`]+)`")
_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")
_AT = re.compile(r" - at `\$(?:\.data)?(?P<path>[^`]*)`$")
_TYPE_WORDS = {
    "bool": "true or false",
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "object": "a JSON object",
    "array": "a JSON array",
    "object | null": "a JSON object or null",
}


def describe_msgspec_error(text: str) -> str:
    """msgspec's validation message (`Expected `bool`, got `str` - at `$.condition``), as a
    sentence naming the field: `condition must be true or false`."""
    at = _AT.search(text)
    path = at["path"].lstrip(".") if at else ""
    problem = text[: at.start()] if at else text
    if missing := _MISSING.search(problem):
        field = f"{path}.{missing['field']}" if path else missing["field"]
        return f"{field} is required"
    subject = path or "the request body"
    if expected := _EXPECTED.search(problem):
        return f"{subject} must be {_TYPE_WORDS.get(expected['type'], expected['type'])}"
    return f"{subject} is not valid: {problem}"


def describe_validation_error(error: ValidationException) -> str:
    """Litestar's validation detail, as a sentence naming the field."""
    problems = error.extra if isinstance(error.extra, list) else []
    for problem in problems:
        if problem.get("message") == "'data'":
            return "the request body is empty; send a JSON object"
        key = str(problem.get("key", ""))
        at = "" if key in {"", "data"} else f".{key}"
        return describe_msgspec_error(f"{problem.get('message', '')} - at `${at}`")
    return "the request body has the wrong shape"


def _route(request: Request[Any, Any, Any]) -> str:
    return str(request.scope.get("path_template") or "unmatched")
