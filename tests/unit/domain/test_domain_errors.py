"""The domain's errors: the stable code each carries and the message a caller reads."""

from __future__ import annotations

import pytest

from domain import errors
from domain.errors import (
    AuthenticationError,
    BackendUnavailableError,
    DependencyError,
    DomainError,
    ExecutionNotFoundError,
    InvalidKeyError,
    NotFoundError,
    RateLimitedError,
    TokenExpiredError,
    ToolNotFoundError,
    VariableNotFoundError,
)

CODES = {
    errors.InvalidJsonError: "INVALID_JSON",
    errors.InvalidInputError: "INVALID_BODY",
    errors.InvalidKeyError: "INVALID_KEY",
    errors.InvalidToolParamsError: "INVALID_TOOL_PARAMS",
    errors.BodyTooLargeError: "BODY_TOO_LARGE",
    errors.TokenMissingError: "TOKEN_MISSING",
    errors.TokenInvalidError: "TOKEN_INVALID",
    errors.TokenExpiredError: "TOKEN_EXPIRED",
    errors.TokenRevokedError: "TOKEN_REVOKED",
    errors.ExecutionMismatchError: "EXECUTION_MISMATCH",
    errors.RateLimitedError: "RATE_LIMITED",
    errors.VariableNotFoundError: "VARIABLE_NOT_FOUND",
    errors.ExecutionNotFoundError: "EXECUTION_NOT_FOUND",
    errors.ToolNotFoundError: "TOOL_NOT_FOUND",
    errors.IdempotencyConflictError: "IDEMPOTENCY_CONFLICT",
    errors.BackendError: "BACKEND_ERROR",
    errors.BackendAuthFailedError: "BACKEND_AUTH_FAILED",
    errors.BackendUnavailableError: "BACKEND_UNAVAILABLE",
    errors.AuditUnavailableError: "AUDIT_UNAVAILABLE",
    errors.DeadlineExceededError: "DEADLINE_EXCEEDED",
    errors.ShuttingDownError: "SHUTTING_DOWN",
    errors.NotFoundError: "NOT_FOUND",
    errors.AuthenticationError: "TOKEN_INVALID",
    errors.DependencyError: "INTERNAL",
    errors.DomainError: "INTERNAL",
}


def subclasses(cls: type) -> list[type]:
    """The subclasses `domain.errors` defines (other layers may derive their own)."""
    found = []
    for sub in cls.__subclasses__():
        if sub.__module__ == errors.__name__:
            found += [sub, *subclasses(sub)]
    return found


def concrete(cls: type) -> bool:
    """An error raised as such, not only a family the others belong to."""
    return not subclasses(cls)


def raised_without_a_message(cls: type) -> DomainError:
    """The error as code raises it when it has nothing to add."""
    arguments = {
        VariableNotFoundError: ("counter",),
        ExecutionNotFoundError: ("exec-1",),
        ToolNotFoundError: ("fax", "send"),
    }
    if cls is RateLimitedError:
        return RateLimitedError(limit=10, retry_after=6)
    return cls(*arguments.get(cls, ()))


CONCRETE_ERRORS = [cls for cls in subclasses(DomainError) if concrete(cls)]


@pytest.mark.parametrize(("cls", "code"), CODES.items(), ids=[cls.__name__ for cls in CODES])
def test_each_error_carries_the_code_of_the_spec(cls, code):
    assert cls.code == code


def test_every_error_class_has_its_code_checked_here():
    assert set(subclasses(DomainError)) | {DomainError} == set(CODES)


def test_every_error_that_is_raised_has_a_code_of_its_own():
    codes = [cls.code for cls in CONCRETE_ERRORS]

    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("cls", CONCRETE_ERRORS, ids=lambda cls: cls.__name__)
def test_every_error_that_is_raised_says_what_went_wrong_without_being_told(cls):
    error = raised_without_a_message(cls)

    assert error.message.strip()
    assert str(error) == error.message


def test_no_two_errors_that_are_raised_say_the_same_thing():
    messages = [raised_without_a_message(cls).message for cls in CONCRETE_ERRORS]

    assert len(messages) == len(set(messages))


def test_a_message_given_replaces_the_default_one():
    error = InvalidKeyError("the variable key contains control characters")

    assert error.message == "the variable key contains control characters"
    assert str(error) == "the variable key contains control characters"


def test_an_empty_message_falls_back_to_the_default_one():
    assert InvalidKeyError("").message == InvalidKeyError.default_message


def test_a_rate_limit_error_carries_the_limit_and_when_to_retry():
    error = RateLimitedError(limit=1000, retry_after=3)

    assert (error.limit, error.retry_after, error.code) == (1000, 3, "RATE_LIMITED")
    assert error.message == "this execution may make 1000 requests a minute; retry in 3 s"


def test_a_rate_limit_error_may_say_something_else_and_still_carry_its_numbers():
    error = RateLimitedError(limit=5, retry_after=12, message="slow down")

    assert (error.limit, error.retry_after, error.message) == (5, 12, "slow down")


def test_not_found_errors_name_what_was_not_found():
    variable = VariableNotFoundError("daily/cursor")
    execution = ExecutionNotFoundError("exec-42")
    tool = ToolNotFoundError("fax", "send")

    assert (variable.key, "'daily/cursor'" in variable.message) == ("daily/cursor", True)
    assert (execution.execution_id, "'exec-42'" in execution.message) == ("exec-42", True)
    assert (tool.tool, tool.action) == ("fax", "send")
    assert "'fax'" in tool.message
    assert "'send'" in tool.message


def test_errors_belong_to_the_families_the_entrypoints_handle_together():
    assert isinstance(VariableNotFoundError("k"), NotFoundError)
    assert isinstance(TokenExpiredError(), AuthenticationError)
    assert isinstance(BackendUnavailableError(), DependencyError)
    assert all(issubclass(cls, DomainError) for cls in CONCRETE_ERRORS)
