"""The wire form of an audit event (SPEC section 9), what the outbox and every sink hold:
camelCase JSON, the timestamp with milliseconds and `Z`, optional details only when present."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec
import pytest

from domain.audit import (
    AuditAction,
    AuditDetails,
    AuditEvent,
    decode_event,
    encode_event,
    event_to_wire,
    whole_milliseconds,
)

AT = datetime(2026, 11, 28, 19, 4, 5, 123000, tzinfo=UTC)
EVERY_DETAIL = AuditDetails(
    outcome="ok",
    user_id="user-1",
    event_id="event-1",
    job_id="job-1",
    request_id="req-1",
    client_address="10.0.0.7",
    key="ünï/key ✓",
    tool="slack",
    tool_action="send_message",
    value_hmac="hmac-sha256:" + "ab" * 32,
    intent_id="6f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
    count=3,
)


def event(details: AuditDetails, **changes: object) -> AuditEvent:
    fields: dict[str, object] = {
        "id": "0b5a4c1e-2f3d-4e5f-8a9b-0c1d2e3f4a5b",
        "execution_id": "exec-1",
        "action": AuditAction.EXECUTE_TOOL_ACTION,
        "timestamp": AT,
        "details": details,
    }
    fields.update(changes)
    return AuditEvent(**fields)  # type: ignore[arg-type]


def test_an_event_with_every_detail_is_written_exactly_as_the_contract_shows():
    encoded = encode_event(event(EVERY_DETAIL))

    assert (
        encoded
        == (
            '{"id":"0b5a4c1e-2f3d-4e5f-8a9b-0c1d2e3f4a5b","executionId":"exec-1",'
            '"action":"execute_tool_action","timestamp":"2026-11-28T19:04:05.123Z",'
            '"details":{"userId":"user-1","eventId":"event-1","jobId":"job-1","requestId":"req-1",'
            '"clientAddress":"10.0.0.7","outcome":"ok","key":"ünï/key ✓","tool":"slack",'
            '"toolAction":"send_message","valueHmac":"hmac-sha256:' + "ab" * 32 + '",'
            '"intentId":"6f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f","count":3}}'
        ).encode()
    )


def test_an_auth_denied_event_has_a_null_execution_and_null_claims():
    denied = event(
        AuditDetails(outcome="TOKEN_INVALID", request_id="req-9", client_address="10.0.0.9"),
        execution_id=None,
        action=AuditAction.AUTH_DENIED,
    )

    wire = json.loads(encode_event(denied))

    assert wire["executionId"] is None
    assert wire["details"] == {
        "userId": None,
        "eventId": None,
        "jobId": None,
        "requestId": "req-9",
        "clientAddress": "10.0.0.9",
        "outcome": "TOKEN_INVALID",
    }


def test_the_optional_details_appear_only_when_present():
    details = json.loads(encode_event(event(AuditDetails(outcome="ok", user_id="u"))))["details"]

    assert set(details) == {"userId", "eventId", "jobId", "requestId", "clientAddress", "outcome"}


def test_the_timestamp_is_utc_with_milliseconds_and_z_whatever_the_moment_carries():
    moment = datetime(2026, 1, 2, 3, 4, 5, 678999, tzinfo=UTC)

    wire = json.loads(encode_event(event(EVERY_DETAIL, timestamp=moment)))

    assert wire["timestamp"] == "2026-01-02T03:04:05.678Z"


def test_the_plain_json_form_is_the_encoded_form_decoded():
    item = event(EVERY_DETAIL)

    assert event_to_wire(item) == json.loads(encode_event(item))


@pytest.mark.parametrize(
    "details",
    [EVERY_DETAIL, AuditDetails(outcome="pending"), AuditDetails(outcome="ok", count=0)],
    ids=["every detail", "outcome only", "a zero count"],
)
def test_an_event_reads_back_from_its_wire_form_unchanged(details):
    item = event(details)

    assert decode_event(encode_event(item)) == item
    assert decode_event(encode_event(item).decode()) == item


@pytest.mark.parametrize("action", list(AuditAction), ids=[a.value for a in AuditAction])
def test_every_action_reads_back_as_itself(action):
    decoded = decode_event(encode_event(event(EVERY_DETAIL, action=action)))

    assert decoded.action is action


def test_an_event_in_the_form_the_store_kept_before_the_wire_form_is_still_read():
    item = event(EVERY_DETAIL, timestamp=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC))
    stored_before = msgspec.json.encode(item)  # snake_case keys, microseconds
    assert b'"execution_id"' in stored_before

    assert decode_event(stored_before) == item


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"[]", b'{"id": "x"}', b'{"id":"x","executionId":null,"action":"fly"}'],
    ids=["empty", "not json", "an array", "missing fields", "an unknown action"],
)
def test_anything_that_is_not_an_event_is_a_value_error(data):
    with pytest.raises(ValueError):
        decode_event(data)


def test_cutting_a_moment_to_whole_milliseconds_keeps_its_zone_and_drops_the_rest():
    assert whole_milliseconds(datetime(2026, 1, 2, 3, 4, 5, 678999, tzinfo=UTC)) == datetime(
        2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC
    )
