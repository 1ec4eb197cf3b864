"""The audit trail's events (SPEC section 9). Values never appear in them, only their HMAC."""

from __future__ import annotations

import hashlib
import hmac
import json
import json.encoder
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

from domain.model import utc_timestamp


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


# The operations that change state: under `audit.failClosed` each is preceded by an intent.
STATE_CHANGING_ACTIONS = frozenset(
    {
        AuditAction.SET_OUTPUT,
        AuditAction.SET_VARIABLE,
        AuditAction.DELETE_VARIABLE,
        AuditAction.SET_CONDITION,
        AuditAction.EXECUTE_TOOL_ACTION,
        AuditAction.REVOKE,
    }
)

OUTCOME_OK = "ok"
# The outcome of an intent event: the operation it announces has not been performed yet.
OUTCOME_PENDING = "pending"


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


# The wire form (SPEC section 9), what every sink and the outbox hold. The first six details
# are always there (`null` when unknown, such as the claims of an `auth_denied`); the ones the
# contract marks optional appear only when present.
class _WireDetails(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    user_id: str | None
    event_id: str | None
    job_id: str | None
    request_id: str | None
    client_address: str | None
    outcome: str
    key: str | None = None
    tool: str | None = None
    tool_action: str | None = None
    value_hmac: str | None = None
    intent_id: str | None = None
    count: int | None = None


class _WireEvent(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    id: str
    execution_id: str | None
    action: AuditAction
    # Text, not a datetime: msgspec would write microseconds, and the contract has milliseconds.
    timestamp: str
    details: _WireDetails


_WIRE_ENCODER = msgspec.json.Encoder()
_WIRE_DECODER = msgspec.json.Decoder(_WireEvent)
# Before the wire form, the local store kept events as msgspec's encoding of `AuditEvent`
# itself (snake_case, microseconds); those rows are still read.
_STORED_BEFORE_WIRE_FORM = msgspec.json.Decoder(AuditEvent)


def _to_wire(event: AuditEvent) -> _WireEvent:
    d = event.details
    return _WireEvent(
        id=event.id,
        execution_id=event.execution_id,
        action=event.action,
        timestamp=utc_timestamp(event.timestamp),
        details=_WireDetails(
            user_id=d.user_id,
            event_id=d.event_id,
            job_id=d.job_id,
            request_id=d.request_id,
            client_address=d.client_address,
            outcome=d.outcome,
            key=d.key,
            tool=d.tool,
            tool_action=d.tool_action,
            value_hmac=d.value_hmac,
            intent_id=d.intent_id,
            count=d.count,
        ),
    )


def _from_wire(wire: _WireEvent) -> AuditEvent:
    d = wire.details
    return AuditEvent(
        id=wire.id,
        execution_id=wire.execution_id,
        action=wire.action,
        timestamp=msgspec.convert(wire.timestamp, datetime),
        details=AuditDetails(
            outcome=d.outcome,
            user_id=d.user_id,
            event_id=d.event_id,
            job_id=d.job_id,
            request_id=d.request_id,
            client_address=d.client_address,
            key=d.key,
            tool=d.tool,
            tool_action=d.tool_action,
            value_hmac=d.value_hmac,
            intent_id=d.intent_id,
            count=d.count,
        ),
    )


def encode_event(event: AuditEvent) -> bytes:
    """The event in its wire form: one line of camelCase JSON, without a newline."""
    return _WIRE_ENCODER.encode(_to_wire(event))


def event_to_wire(event: AuditEvent) -> dict[str, Any]:
    """The wire form as plain JSON values, for a client that encodes its own bodies."""
    wire: dict[str, Any] = msgspec.to_builtins(_to_wire(event))
    return wire


def decode_event(data: bytes | str) -> AuditEvent:
    """An event from its wire form, or from the form the local store kept before it.

    Raises `msgspec.DecodeError` (a `ValueError`) for anything that is neither.
    """
    try:
        return _from_wire(_WIRE_DECODER.decode(data))
    except msgspec.DecodeError as wire_error:
        try:
            return _STORED_BEFORE_WIRE_FORM.decode(data)
        except msgspec.DecodeError:
            raise wire_error from None


def decode_wire(data: bytes | str) -> tuple[AuditEvent, bytes]:
    """`decode_event`, and the event's wire form: `data` itself when it is in that form (as
    the outbox keeps it), else the event encoded again."""
    try:
        wire = _WIRE_DECODER.decode(data)
    except msgspec.DecodeError:
        event = decode_event(data)
        return event, encode_event(event)
    return _from_wire(wire), data.encode() if isinstance(data, str) else data


def whole_milliseconds(moment: datetime) -> datetime:
    """`moment` cut to the wire's precision, so that an event reads back as it was made."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# The standard library's C encoder, made once: `json.dumps` builds an encoder per call, which
# is three quarters of its time on a small value. Its arguments are those `json.dumps(v,
# sort_keys=True, separators=(",", ":"), ensure_ascii=False)` passes, but no check for
# circular references (a value decoded from JSON cannot hold one).
_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)  # None where `_json` is missing
_CANONICAL = (
    None
    if _C_ENCODER is None
    else _C_ENCODER(
        None, _not_json, json.encoder.encode_basestring, None, ":", ",", True, False, True
    )
)


def canonical_json(value: Any) -> bytes:
    """The one canonical form of a JSON value: keys sorted, no spaces, UTF-8, byte for byte
    `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`."""
    if _CANONICAL is None:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return "".join(_CANONICAL(value, 0)).encode()


def value_hmac(key: bytes, value: Any) -> str:
    return ValueHasher(key)(value)


class ValueHasher:
    """`value_hmac` under one key, keyed once: each value costs a copy of the keyed HMAC
    rather than hashing the key's two pads again."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, value: Any) -> str:
        digest = self._keyed.copy()
        digest.update(canonical_json(value))
        return f"hmac-sha256:{digest.hexdigest()}"
