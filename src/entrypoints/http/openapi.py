"""The API document (`/schema/openapi.json`): Litestar generates it from the handlers; this
module adds what Litestar cannot see: the error envelope of SPEC section 3 with its codes,
the headers every answer carries, and which errors each operation can answer.

Each handler names its errors with `operation_class=documented(...)`. Litestar builds the
operation and hands it to that class, which replaces Litestar's own 400 (its validation
error, which this service answers in the envelope instead) with references to the shared
error responses under `components`, and adds the answers' headers.
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import (
    Components,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    Schema,
    SecurityScheme,
)

from entrypoints.http.errors import REASON, codes_by_status
from entrypoints.http.idempotency import MAX_KEY_LENGTH as MAX_IDEMPOTENCY_KEY_LENGTH
from entrypoints.http.observability import USABLE_REQUEST_ID
from entrypoints.version import VERSION

# The security schemes, by the names handlers use in `security=[{NAME: []}]`.
EXECUTION_SCHEME = "bearer"
INTERNAL_SCHEME = "internalToken"

# Groups of the error statuses a route can answer, for `documented(...)`.
ANY_REQUEST = (500,)
SCRIPT_REQUEST = (401, 429, 500, 502, 503)  # authenticated, rate-limited, may reach the backend
EXECUTION_PATH = (403, 404)  # an execution in the path: another's, or an unknown one
WITH_BODY = (400, 413)


def error_statuses(*groups: tuple[int, ...]) -> tuple[int, ...]:
    """The union of groups of statuses, sorted."""
    return tuple(sorted({status for group in groups for status in group}))


# What each error status means on this API, for the document's readers.
_MEANING = {
    400: "The request is not valid: a body that is not JSON, not UTF-8 or nested too deep "
    "(`INVALID_JSON`); JSON of the wrong shape, or a malformed `Idempotency-Key` "
    "(`INVALID_BODY`, the message names the field); a variable key that is empty, longer "
    "than 255 characters, has control characters or `.`/`..` segments (`INVALID_KEY`); a "
    "built-in tool's parameter missing or mistyped (`INVALID_TOOL_PARAMS`).",
    401: "No token, or one that is not valid, has expired or was revoked.",
    403: "The token opens another execution than the path's.",
    404: "The execution, variable or tool does not exist (or, with `NOT_FOUND`, no route "
    "matches the path).",
    405: "The path exists, the method does not: the `Allow` header lists the methods it answers.",
    409: "The `Idempotency-Key` was used with another body, or its first request is still running.",
    413: "The body is larger than `server.maxBodySize`.",
    429: "The execution's rate limit is spent; retry after `Retry-After` seconds.",
    500: "A bug; the message quotes the request id to report.",
    502: "The Cronium backend answered wrongly or refused the runtime's service token.",
    503: "A dependency is down, the audit trail refused the operation, the request deadline ran "
    "out before anything was done, or the service is shutting down: safe to retry.",
}

_HEADERS: dict[str, OpenAPIHeader] = {
    "X-Request-ID": OpenAPIHeader(
        description="The request's id: the client's own `X-Request-ID` when usable, else one"
        " generated.",
        required=True,
        schema=Schema(type=OpenAPIType.STRING, pattern=f"^{USABLE_REQUEST_ID.pattern}$"),
    ),
    "RateLimit-Policy": OpenAPIHeader(
        description="The execution's bucket: `q` requests, refilled evenly over `w` seconds.",
        required=True,
        schema=Schema(type=OpenAPIType.STRING, pattern=r'^"exec";q=[0-9]+;w=60$'),
    ),
    "RateLimit": OpenAPIHeader(
        description="`r`: requests allowed now; `t`: seconds until the bucket is full again "
        "(or, with `r=0`, until the next request is allowed).",
        required=True,
        schema=Schema(type=OpenAPIType.STRING, pattern=r'^"exec";r=[0-9]+;t=[0-9]+$'),
    ),
    "Retry-After": OpenAPIHeader(
        description="Seconds until the next request is allowed.",
        required=True,
        schema=Schema(type=OpenAPIType.INTEGER, minimum=1),
    ),
    "Allow": OpenAPIHeader(
        description="The methods the path answers.",
        required=True,
        schema=Schema(type=OpenAPIType.STRING),
    ),
    "Idempotency-Replayed": OpenAPIHeader(
        description="`true` when the answer is the stored one of an earlier request with the "
        "same `Idempotency-Key` and body.",
        schema=Schema(type=OpenAPIType.STRING, enum=["true"]),
    ),
}

_RATE_LIMITED_ONLY = ("RateLimit-Policy", "RateLimit")

# An Idempotency-Key as the middleware takes it: 1 to 255 printable ASCII characters. Spaces
# only inside, since HTTP strips them at the edges of a field value.
IDEMPOTENCY_KEY_PARAMETER = Parameter(
    name="Idempotency-Key",
    param_in="header",
    required=False,
    description="Repeat the request safely: a repeat with the same key and equal JSON gets the "
    "first answer (with `Idempotency-Replayed: true`) instead of running again; another body "
    "under the same key is 409.",
    schema=Schema(
        type=OpenAPIType.STRING,
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
        pattern=r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$",
    ),
)


def _name(status: int) -> str:
    """`Bad Request` -> `BadRequest`: the component name of a status's error answer."""
    return REASON[status].replace(" ", "")


def _ref(section: str, name: str) -> Reference:
    return Reference(ref=f"#/components/{section}/{name}")


def _header_refs(names: tuple[str, ...]) -> dict[str, OpenAPIHeader | Reference]:
    return {name: _ref("headers", name) for name in names}


def _error_schema(status: int, codes: list[str]) -> Schema:
    """The envelope of SPEC section 3 as `status` answers it: its phrase, one of its codes."""
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["success", "error", "message", "code"],
        properties={
            "success": Schema(const=False),
            "error": Schema(type=OpenAPIType.STRING, const=REASON[status]),
            "message": Schema(
                type=OpenAPIType.STRING,
                min_length=1,
                description="What went wrong and what to do, for people.",
            ),
            "code": Schema(
                type=OpenAPIType.STRING, enum=codes, description="Stable, for programs."
            ),
        },
        additional_properties=False,
    )


def _error_responses() -> dict[str, OpenAPIResponse | Reference]:
    """One shared answer per error status. Inline schemas: Litestar replaces
    `components.schemas` with the ones it generates, but keeps `components.responses`."""
    by_status = codes_by_status()
    responses: dict[str, OpenAPIResponse | Reference] = {}
    for status in REASON:
        headers = ["X-Request-ID"]
        if status == 429:
            headers += ["Retry-After", *_RATE_LIMITED_ONLY]
        elif status == 405:
            headers.append("Allow")
        responses[_name(status)] = OpenAPIResponse(
            description=_MEANING[status],
            headers=_header_refs(tuple(headers)),
            content={
                "application/json": OpenAPIMediaType(
                    schema=_error_schema(status, by_status[status])
                )
            },
        )
    return responses


def documented(*errors: int, idempotent: bool = False, succeeds: bool = True) -> type[Operation]:
    """An Operation class for a handler that can answer `errors` (each in the envelope).

    Every answer carries `X-Request-ID`; an operation that takes the execution token also
    answers the rate-limit fields on success. `idempotent` documents the `Idempotency-Key`
    header; `succeeds=False` drops the success answer of a route that exists only to refuse.
    """
    unknown = set(errors) - set(REASON)
    if unknown:
        raise ValueError(f"no error answer is described for {sorted(unknown)}")

    @dataclass
    class DocumentedOperation(Operation):
        def __post_init__(self) -> None:
            self.responses = _responses(self, errors, idempotent=idempotent, succeeds=succeeds)
            if idempotent:
                self.parameters = [*(self.parameters or []), IDEMPOTENCY_KEY_PARAMETER]

    return DocumentedOperation


def _responses(
    operation: Operation, errors: tuple[int, ...], *, idempotent: bool, succeeds: bool
) -> dict[str, OpenAPIResponse | Reference]:
    kept: dict[str, OpenAPIResponse | Reference] = {}
    for status, response in (operation.responses or {}).items():
        # Litestar documents its own validation error as a 400, which this service answers
        # in the envelope: every error answer comes from `errors`.
        if status == "400":
            continue
        success = 200 <= int(status) < 300
        if success and not succeeds:
            continue
        if isinstance(response, OpenAPIResponse):
            headers = ["X-Request-ID"]
            if success and _rate_limited(operation):
                headers += _RATE_LIMITED_ONLY
            if success and idempotent:
                headers.append("Idempotency-Replayed")
            response.headers = {**(response.headers or {}), **_header_refs(tuple(headers))}
        kept[status] = response
    for error in errors:
        kept[str(error)] = _ref("responses", _name(error))
    return dict(sorted(kept.items()))


DESCRIPTION = """\
The API that scripts in Cronium job containers call with their execution token.

- Every route but `/health`, `/health/ready`, `/metrics` and this document needs
  `Authorization: Bearer <execution token>` (the `bearer` scheme), which opens only its own
  execution; `/internal/*` takes the internal token instead (`internalToken`) and exists
  only when one is configured.
- Reads answer `{"success": true, "data": ...}`. Every refusal answers the envelope
  `{"success": false, "error", "message", "code"}`: `error` is the status's reason phrase,
  `code` one of the status's codes (the answers under `components/responses`). Input errors
  are 400, never 422.
- A path listed here answers the methods it does not list with 405 and an `Allow` header,
  and OPTIONS with 204 and `Allow`; a path not listed answers 404 `NOT_FOUND`.
- Answers to the execution token carry `RateLimit-Policy` and `RateLimit`; a 429 adds
  `Retry-After`.
"""


def _rate_limited(operation: Operation) -> bool:
    """Whether the operation takes the execution token, and so a request from its bucket."""
    return any(EXECUTION_SCHEME in requirement for requirement in operation.security or [])


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Cronium Runtime API",
        version=VERSION,
        description=DESCRIPTION,
        components=Components(
            responses=_error_responses(),
            headers=dict(_HEADERS),
            security_schemes={
                EXECUTION_SCHEME: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    bearer_format="JWT",
                    description="The execution token (HS256) the orchestrator gives the script "
                    "as `CRONIUM_EXECUTION_SCHEME`; it opens only its own execution.",
                ),
                INTERNAL_SCHEME: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="The internal token (`auth.internalToken`, by default the "
                    "backend token) of the Cronium backend and orchestrator.",
                ),
            },
        ),
    )
