"""The domain's errors. Each carries the stable `code` a client sees; how a code maps to a
status is the HTTP entrypoint's business (its error table), not the domain's."""

from __future__ import annotations


class DomainError(Exception):
    code: str = "INTERNAL"
    default_message: str = "the operation failed"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


# Input the caller sent.


class InvalidJsonError(DomainError):
    code = "INVALID_JSON"
    default_message = "the request body is not valid JSON"


class InvalidInputError(DomainError):
    code = "INVALID_BODY"
    default_message = "the request body has the wrong shape"


class InvalidKeyError(DomainError):
    code = "INVALID_KEY"
    default_message = "the variable key is not valid"


class InvalidToolParamsError(DomainError):
    code = "INVALID_TOOL_PARAMS"
    default_message = "the tool's parameters are not valid"


class BodyTooLargeError(DomainError):
    code = "BODY_TOO_LARGE"
    default_message = "the request body is too large"


# Who is asking.


class AuthenticationError(DomainError):
    code = "TOKEN_INVALID"
    default_message = "the token is not valid"


class TokenMissingError(AuthenticationError):
    code = "TOKEN_MISSING"
    default_message = "send the execution token as 'Authorization: Bearer <token>'"


class TokenInvalidError(AuthenticationError):
    code = "TOKEN_INVALID"


class TokenExpiredError(AuthenticationError):
    code = "TOKEN_EXPIRED"
    default_message = "the token has expired; the execution it was issued for is over"


class TokenRevokedError(AuthenticationError):
    code = "TOKEN_REVOKED"
    default_message = "the token's execution has finished and its tokens were revoked"


class ExecutionMismatchError(DomainError):
    code = "EXECUTION_MISMATCH"
    default_message = "the token opens only its own execution"


class RateLimitedError(DomainError):
    code = "RATE_LIMITED"
    default_message = "too many requests for this execution"

    def __init__(self, *, limit: int, retry_after: int, message: str | None = None) -> None:
        self.limit = limit
        self.retry_after = retry_after
        super().__init__(
            message
            or f"this execution may make {limit} requests a minute; retry in {retry_after} s"
        )


# What the caller asked for does not exist.


class NotFoundError(DomainError):
    code = "NOT_FOUND"
    default_message = "nothing is here"


class VariableNotFoundError(NotFoundError):
    code = "VARIABLE_NOT_FOUND"

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"variable {key!r} is not set")


class ExecutionNotFoundError(NotFoundError):
    code = "EXECUTION_NOT_FOUND"

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        super().__init__(f"execution {execution_id!r} is not known")


class ToolNotFoundError(NotFoundError):
    code = "TOOL_NOT_FOUND"

    def __init__(self, tool: str, action: str) -> None:
        self.tool = tool
        self.action = action
        super().__init__(f"tool {tool!r} with action {action!r} is not configured")


class IdempotencyConflictError(DomainError):
    code = "IDEMPOTENCY_CONFLICT"
    default_message = "this Idempotency-Key was used with another body, or is still running"


# Dependencies that failed. Repeating the request cannot do harm after any of these.


class DependencyError(DomainError):
    pass


class BackendError(DependencyError):
    code = "BACKEND_ERROR"
    default_message = "the Cronium backend answered wrongly"


class BackendAuthFailedError(DependencyError):
    code = "BACKEND_AUTH_FAILED"
    default_message = "the runtime's backend token was refused"


class BackendUnavailableError(DependencyError):
    code = "BACKEND_UNAVAILABLE"
    default_message = "the Cronium backend cannot be reached; retry shortly"


class AuditUnavailableError(DependencyError):
    code = "AUDIT_UNAVAILABLE"
    default_message = "the audit trail cannot be written, so the operation was not performed"


class DeadlineExceededError(DependencyError):
    code = "DEADLINE_EXCEEDED"
    default_message = "the request ran out of time before the operation was performed"


class ShuttingDownError(DependencyError):
    code = "SHUTTING_DOWN"
    default_message = "the service is shutting down; retry on another replica"
