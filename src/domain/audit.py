"""The audit trail's events (SPEC section 9). Values never appear in them, only their HMAC."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec


class AuditAction(StrEnum):
    GET_INPUT = "get_input"
    SET_OUTPUT = "set_output"
    GET_VARIABLE = "get_variable"
    SET_VARIABLE = "set_variable"
    DELETE_VARIABLE = "delete_variable"
    LIST_VARIABLES = "list_variables"
    SET_CONDITION = "set_condition"
    GET_CONTEXT = "get_context"
    EXECUTE_TOOL_ACTION = "execute_tool_action"
    AUTH_DENIED = "auth_denied"
    RATE_LIMITED = "rate_limited"
    REVOKE = "revoke"


OUTCOME_OK = "ok"


class AuditDetails(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    outcome: str
    user_id: str | None = None
    event_id: str | None = None
    job_id: str | None = None
    request_id: str | None = None
    client_address: str | None = None
    key: str | None = None
    tool: str | None = None
    tool_action: str | None = None
    value_hmac: str | None = None
    intent_id: str | None = None
    count: int | None = None


class AuditEvent(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    execution_id: str | None
    action: AuditAction
    timestamp: datetime
    details: AuditDetails


def canonical_json(value: Any) -> bytes:
    """The one canonical form of a JSON value: keys sorted, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def value_hmac(key: bytes, value: Any) -> str:
    digest = hmac.new(key, canonical_json(value), hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest}"
