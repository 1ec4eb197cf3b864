"""The `backend` audit sink against the fake Cronium backend: one `POST /api/internal/audit` per
event in the wire form; "unavailable" (deliver again later) versus "rejected" (never again)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fake_backend import ClientFactory, FakeBackend
from loguru import logger

from adapters.audit.sinks.backend import BackendAuditSink
from application.ports import AuditSinkRejectedError, AuditSinkUnavailableError
from domain.audit import AuditAction, AuditDetails, AuditEvent, encode_event, event_to_wire

AT = datetime(2026, 11, 28, 19, 4, 5, 123000, tzinfo=UTC)


def event(n: int = 1) -> AuditEvent:
    return AuditEvent(
        id=f"00000000-0000-4000-8000-{n:012d}",
        execution_id="exec-1",
        action=AuditAction.SET_VARIABLE,
        timestamp=AT,
        details=AuditDetails(
            outcome="ok",
            user_id="user-1",
            request_id=f"req-{n}",
            key="ünï/key",
            value_hmac="hmac-sha256:" + "0f" * 32,
        ),
    )


@pytest.fixture
async def sink(make_client: ClientFactory) -> BackendAuditSink:
    return BackendAuditSink(await make_client())


@pytest.fixture
def errors_logged() -> Iterator[list[str]]:
    messages: list[str] = []
    handler = logger.add(messages.append, level="ERROR", format="{message}")
    yield messages
    logger.remove(handler)


async def test_each_event_is_posted_once_in_its_wire_form(sink, backend: FakeBackend):
    await sink.deliver(event(1))
    await sink.deliver(event(2))

    assert backend.audit == [event_to_wire(event(1)), event_to_wire(event(2))]
    first, _ = backend.of("audit")
    assert (first.method, first.path) == ("POST", "/api/internal/audit")
    assert first.headers["Authorization"] == f"Bearer {backend.token}"
    assert backend.audit[0]["details"]["valueHmac"] == "hmac-sha256:" + "0f" * 32
    assert sink.name == "backend"


async def test_the_outboxs_bytes_are_posted_as_they_are(sink, backend: FakeBackend):
    # A member the event does not have shows that the bytes were not decoded and re-encoded.
    wire = encode_event(event(3))[:-1] + b',"heldBy":"the outbox"}'

    await sink.deliver_wire(event(3), wire)

    [received] = backend.of("audit")
    assert received.body == {**event_to_wire(event(3)), "heldBy": "the outbox"}
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["X-Request-ID"] == "req-3"


async def test_the_call_carries_the_request_id_of_the_event(sink, backend: FakeBackend):
    await sink.deliver(event(7))

    [received] = backend.of("audit")
    assert received.headers["X-Request-ID"] == "req-7"


async def test_a_5xx_the_retries_outlast_is_delivered(sink, backend: FakeBackend):
    backend.fail("audit", times=1, status=503)

    await sink.deliver(event())

    assert backend.audit == [event_to_wire(event())]
    assert len(backend.of("audit")) == 2


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_backend_that_keeps_failing_is_unavailable(sink, backend: FakeBackend, status):
    backend.fail("audit", status=status)

    with pytest.raises(AuditSinkUnavailableError, match=str(status)):
        await sink.deliver(event())

    assert backend.audit == []


async def test_a_backend_that_cannot_be_reached_is_unavailable(sink, backend: FakeBackend):
    await backend.stop()

    with pytest.raises(AuditSinkUnavailableError, match="cannot be reached"):
        await sink.deliver(event())


async def test_a_backend_that_does_not_answer_in_time_is_unavailable(
    make_client: ClientFactory, backend: FakeBackend
):
    sink = BackendAuditSink(await make_client(timeout=0.3))
    backend.go_silent("audit")

    with pytest.raises(AuditSinkUnavailableError, match="did not answer"):
        await sink.deliver(event())


async def test_an_open_breaker_makes_the_sink_unavailable_without_a_call(
    make_client: ClientFactory, backend: FakeBackend
):
    sink = BackendAuditSink(await make_client(breaker_failures=1, max_retries=0))
    backend.fail("audit", status=500)
    with pytest.raises(AuditSinkUnavailableError):
        await sink.deliver(event(1))
    calls = len(backend.received)

    with pytest.raises(AuditSinkUnavailableError, match="circuit open"):
        await sink.deliver(event(2))

    assert len(backend.received) == calls


@pytest.mark.parametrize("status", [400, 404, 409, 413, 422])
async def test_a_backend_that_refuses_the_event_rejects_it(sink, backend: FakeBackend, status):
    backend.fail("audit", status=status)

    with pytest.raises(AuditSinkRejectedError, match=str(status)):
        await sink.deliver(event())

    assert len(backend.of("audit")) == 1  # a 4xx is final: no retry


@pytest.mark.parametrize("status", [408, 429])
async def test_a_backend_that_says_not_now_is_unavailable(sink, backend: FakeBackend, status):
    backend.fail("audit", status=status)

    with pytest.raises(AuditSinkUnavailableError, match=str(status)):
        await sink.deliver(event())


async def test_a_refused_service_token_is_unavailable_and_logged_once_as_a_configuration_error(
    sink, backend: FakeBackend, errors_logged: list[str]
):
    backend.refuse_token = True

    for n in range(3):
        with pytest.raises(AuditSinkUnavailableError, match="token was refused"):
            await sink.deliver(event(n))

    [message] = errors_logged
    assert "BACKEND_TOKEN" in message
    assert backend.token not in message
    backend.refuse_token = False
    await sink.deliver(event(9))
    assert backend.audit == [event_to_wire(event(9))]


async def test_closing_the_sink_leaves_the_shared_client_open(sink, backend: FakeBackend):
    await sink.close()

    await sink.deliver(event())

    assert len(backend.audit) == 1
