"""The backend adapter against a fake Cronium backend that follows SPEC section 5 exactly."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import prometheus_client
import pytest
from fake_backend import CONTEXT, ClientFactory, FakeBackend, Fault

from adapters.backend_http.client import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    HttpBackendClient,
    ToolOutcomeUnknown,
)
from adapters.backend_http.repositories import (
    TOOL_OUTCOME_UNKNOWN_MESSAGE,
    BackendExecutionRepository,
    BackendHealthProbe,
    BackendToolGateway,
    BackendVariableRepository,
)
from adapters.request_context import CURRENT_REQUEST_ID
from domain.errors import (
    BackendAuthFailedError,
    BackendError,
    BackendUnavailableError,
    ExecutionNotFoundError,
)
from domain.model import ToolCall

AT = datetime(2026, 11, 28, 19, 4, 5, 123456, tzinfo=UTC)


class FixedClock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


def tool_call(**changes: object) -> ToolCall:
    fields: dict[str, object] = {
        "execution_id": "exec-1",
        "user_id": "user-1",
        "tool": "slack",
        "action": "send_message",
        "params": {"text": "hello"},
        "request_id": "req-1",
    }
    fields.update(changes)
    return ToolCall(**fields)  # type: ignore[arg-type]


# Calls and reply shapes.


async def test_the_context_is_read_with_the_service_token_and_metadata_exactly_as_sent(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    repository = BackendExecutionRepository(client, clock=FixedClock(AT))

    context = await repository.get_context("exec-1")

    assert context.execution_id == "exec-1"
    assert context.user_id == "user-1"
    assert context.job_id == "job-1"
    assert context.event_id == "event-1"
    assert context.metadata == CONTEXT["metadata"]
    assert context.input == {"n": 1}
    assert context.event == CONTEXT["event"]
    assert context.user == CONTEXT["user"]
    assert context.start_time == AT
    (request,) = backend.received
    assert request.method == "GET"
    assert request.path == "/api/internal/executions/exec-1/context"
    assert request.headers["Authorization"] == f"Bearer {backend.token}"


async def test_the_start_time_is_the_first_read_unless_the_backend_sends_one(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    clock = FixedClock(AT)
    repository = BackendExecutionRepository(client, clock=clock)
    first = await repository.get_context("exec-1")
    clock.moment = datetime(2027, 1, 1, tzinfo=UTC)
    second = await repository.get_context("exec-1")
    assert first.start_time == second.start_time == AT

    backend.contexts["exec-2"] = {
        **CONTEXT,
        "executionId": "exec-2",
        "startTime": "2026-01-02T03:04:05.678Z",
    }
    sent = await repository.get_context("exec-2")
    assert sent.start_time == datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


async def test_a_context_with_null_event_and_user_reads_as_none(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    backend.contexts["exec-3"] = {**CONTEXT, "executionId": "exec-3", "event": None, "user": None}
    context = await BackendExecutionRepository(client).get_context("exec-3")
    assert context.event is None
    assert context.user is None


async def test_an_unknown_execution_is_not_found(client: HttpBackendClient) -> None:
    repository = BackendExecutionRepository(client)
    with pytest.raises(ExecutionNotFoundError):
        await repository.get_context("nope")
    with pytest.raises(ExecutionNotFoundError):
        await repository.save_output("nope", 1, AT)
    with pytest.raises(ExecutionNotFoundError):
        await repository.save_condition("nope", True, AT)


async def test_output_and_condition_are_posted_with_millisecond_utc_timestamps(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    repository = BackendExecutionRepository(client)
    await repository.save_output("exec-1", {"result": [1, 2]}, AT)
    await repository.save_condition("exec-1", False, AT)

    assert backend.outputs["exec-1"] == [
        {"output": {"result": [1, 2]}, "timestamp": "2026-11-28T19:04:05.123Z"}
    ]
    assert backend.conditions["exec-1"] == [
        {"condition": False, "timestamp": "2026-11-28T19:04:05.123Z"}
    ]
    assert [(r.method, r.path) for r in backend.received] == [
        ("POST", "/api/internal/executions/exec-1/output"),
        ("POST", "/api/internal/executions/exec-1/condition"),
    ]
    assert all(r.headers["Content-Type"].startswith("application/json") for r in backend.received)


async def test_variables_are_written_read_listed_and_deleted(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    repository = BackendVariableRepository(client)

    written = await repository.put("user-1", "counter", {"n": 3}, AT)
    read = await repository.get("user-1", "counter")
    await repository.put("user-1", "alpha", "a", AT)
    listed = await repository.list("user-1")
    deleted = await repository.delete("user-1", "counter")

    assert written.key == "counter"
    assert written.value == {"n": 3}
    assert written.updated_at == AT
    assert read is not None
    assert read.value == {"n": 3}
    assert read.updated_at == datetime(2026, 11, 28, 19, 4, 5, 123000, tzinfo=UTC)
    assert [summary.key for summary in listed] == ["alpha", "counter"]
    assert deleted is True
    assert ("user-1", "counter") not in backend.variables
    put = backend.of("variable_put")[0]
    assert put.body == {"value": {"n": 3}}
    assert put.path == "/api/internal/variables/user-1/counter"
    assert backend.of("variable_list")[0].path == "/api/internal/variables/user-1"


async def test_unknown_variables_read_as_none_and_delete_as_false(
    client: HttpBackendClient,
) -> None:
    repository = BackendVariableRepository(client)
    assert await repository.get("user-1", "missing") is None
    assert await repository.delete("user-1", "missing") is False


@pytest.mark.parametrize(
    ("user_id", "key"),
    [
        ("user/1", "a/b"),
        ("user 1", "with spaces and %20 and ?#&"),
        ("ünï", "clé/ключ/鍵 ✓"),
    ],
)
async def test_keys_and_user_ids_are_url_encoded_and_decoded_by_the_backend_exactly(
    backend: FakeBackend, client: HttpBackendClient, user_id: str, key: str
) -> None:
    repository = BackendVariableRepository(client)
    await repository.put(user_id, key, 1, AT)
    read = await repository.get(user_id, key)

    assert read is not None
    assert read.key == key
    assert (user_id, key) in backend.variables
    for request in backend.received:
        assert request.params == {"userId": user_id, "key": key}
        assert request.path.count("/") == 5
    assert [summary.key for summary in await repository.list(user_id)] == [key]
    assert await repository.delete(user_id, key) is True


async def test_an_older_backend_cannot_delete_or_list_variables(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    backend.old_backend = True
    repository = BackendVariableRepository(client)
    with pytest.raises(BackendError, match="the backend cannot delete variables"):
        await repository.delete("user-1", "k")
    with pytest.raises(BackendError, match="the backend cannot list variables"):
        await repository.list("user-1")
    assert len(backend.received) == 2  # a 405 is final


async def test_a_variable_without_a_valid_updated_at_is_a_backend_error(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    backend.variables[("user-1", "k")] = {"value": 1, "updatedAt": "yesterday"}
    with pytest.raises(BackendError):
        await BackendVariableRepository(client).get("user-1", "k")


async def test_a_tool_action_is_posted_once_and_its_result_returned(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    backend.tool_reply = {"success": True, "data": {"id": 7}, "metadata": {"ms": 3}}
    result = await BackendToolGateway(client).execute(tool_call())

    assert result.success is True
    assert result.data == {"id": 7}
    assert result.metadata == {"ms": 3}
    assert result.code is None
    (request,) = backend.of("tool")
    assert request.path == "/api/internal/tools/execute"
    assert request.body == {
        "executionId": "exec-1",
        "userId": "user-1",
        "tool": "slack",
        "action": "send_message",
        "params": {"text": "hello"},
    }


async def test_a_failed_tool_is_tool_failed_unless_the_backend_gave_a_code(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    gateway = BackendToolGateway(client)
    backend.tool_reply = {"success": False, "data": None, "error": "channel not found"}
    failed = await gateway.execute(tool_call())
    backend.tool_reply = {"success": False, "data": None, "error": "slow down", "code": "LIMIT"}
    coded = await gateway.execute(tool_call())

    assert (failed.success, failed.code, failed.error) == (
        False,
        "TOOL_FAILED",
        "channel not found",
    )
    assert (coded.code, coded.error) == ("LIMIT", "slow down")


async def test_a_backend_4xx_to_a_tool_action_is_tool_failed_with_its_error(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    backend.tool_status = 400
    backend.tool_reply = {"error": "unknown tool 'fax'"}
    result = await BackendToolGateway(client).execute(tool_call(tool="fax"))

    assert (result.success, result.code, result.error) == (
        False,
        "TOOL_FAILED",
        "unknown tool 'fax'",
    )
    assert len(backend.of("tool")) == 1


async def test_the_request_id_is_forwarded(backend: FakeBackend, client: HttpBackendClient) -> None:
    token = CURRENT_REQUEST_ID.set("req-42")
    try:
        await BackendExecutionRepository(client).get_context("exec-1")
    finally:
        CURRENT_REQUEST_ID.reset(token)
    await BackendExecutionRepository(client).get_context("exec-1")

    assert backend.received[0].headers["X-Request-ID"] == "req-42"
    assert "X-Request-ID" not in backend.received[1].headers


# Retries and deadlines.


async def test_a_5xx_is_retried_and_the_same_body_sent_again(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    backend.fail("output", times=2)
    await BackendExecutionRepository(client).save_output("exec-1", {"x": "é"}, AT)

    bodies = [request.body for request in backend.of("output")]
    assert len(bodies) == 3
    assert (
        bodies[0]
        == bodies[1]
        == bodies[2]
        == {
            "output": {"x": "é"},
            "timestamp": "2026-11-28T19:04:05.123Z",
        }
    )
    assert backend.outputs["exec-1"] == [bodies[0]]


async def test_a_5xx_that_outlasts_the_retries_is_a_backend_error(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    backend.fail("variable_get")
    with pytest.raises(BackendError, match="answered 500"):
        await BackendVariableRepository(client).get("user-1", "k")
    assert len(backend.of("variable_get")) == 3  # max_retries=2


async def test_a_4xx_is_not_retried(backend: FakeBackend, client: HttpBackendClient) -> None:
    backend.fail("variable_put", status=400)
    with pytest.raises(BackendError, match="400"):
        await BackendVariableRepository(client).put("user-1", "k", 1, AT)
    assert len(backend.of("variable_put")) == 1


async def test_a_refused_token_is_backend_auth_failed_and_not_retried(
    backend: FakeBackend, make_client: ClientFactory
) -> None:
    client = await make_client(token="wrong")
    with pytest.raises(BackendAuthFailedError, match="the runtime's backend token was refused"):
        await BackendExecutionRepository(client).get_context("exec-1")
    backend.refuse_token = True
    good = await make_client()
    with pytest.raises(BackendAuthFailedError):
        await BackendToolGateway(good).execute(tool_call())
    assert len(backend.received) == 2


async def test_a_tool_action_answered_500_is_outcome_unknown_and_sent_once(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    backend.fail("tool")
    result = await BackendToolGateway(client).execute(tool_call())

    assert result.success is False
    assert result.code == "TOOL_OUTCOME_UNKNOWN"
    assert result.error == TOOL_OUTCOME_UNKNOWN_MESSAGE
    assert len(backend.of("tool")) == 1


async def test_a_tool_action_met_with_silence_is_outcome_unknown_and_sent_once(
    backend: FakeBackend, make_client: ClientFactory
) -> None:
    client = await make_client(timeout=0.3)
    backend.go_silent("tool")
    started = time.monotonic()
    result = await BackendToolGateway(client).execute(tool_call())

    assert time.monotonic() - started < 0.3 + 0.5
    assert result.code == "TOOL_OUTCOME_UNKNOWN"
    assert len(backend.of("tool")) == 1


async def test_a_tool_action_whose_connection_drops_after_sending_is_outcome_unknown(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    backend.drop("tool")
    result = await BackendToolGateway(client).execute(tool_call())
    assert result.code == "TOOL_OUTCOME_UNKNOWN"
    assert len(backend.of("tool")) == 1


async def test_a_read_whose_connection_drops_is_retried(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    backend.faults["context"] = Fault("drop", times=1)
    context = await BackendExecutionRepository(client).get_context("exec-1")
    assert context.user_id == "user-1"
    assert len(backend.of("context")) == 2


async def test_a_tool_action_with_the_backend_down_is_unavailable_and_never_sent(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    await backend.stop()
    with pytest.raises(BackendUnavailableError):
        await BackendToolGateway(client).execute(tool_call())
    assert backend.of("tool") == []


async def test_a_silent_backend_fails_a_read_within_the_overall_deadline(
    backend: FakeBackend, make_client: ClientFactory
) -> None:
    client = await make_client(timeout=0.3)
    backend.go_silent("context")
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match=r"did not answer within 0\.3s"):
        await BackendExecutionRepository(client).get_context("exec-1")
    assert time.monotonic() - started < 0.3 + 0.3


async def test_backoff_never_sleeps_past_the_deadline(
    backend: FakeBackend, make_client: ClientFactory
) -> None:
    client = await make_client(timeout=0.5, retry_delay=10.0, max_retries=5)
    backend.fail("context")
    started = time.monotonic()
    with pytest.raises((BackendError, BackendUnavailableError)):
        await BackendExecutionRepository(client).get_context("exec-1")
    assert time.monotonic() - started < 0.5 + 0.3


# The circuit breaker.


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_breaker_opens_probes_and_closes(
    backend: FakeBackend, make_client: ClientFactory
) -> None:
    clock = FakeClock()
    client = await make_client(
        breaker_failures=2, breaker_cooldown=30.0, max_retries=0, clock=clock
    )
    repository = BackendExecutionRepository(client)
    probe = BackendHealthProbe(client)
    backend.fail("context")
    for _ in range(2):
        with pytest.raises(BackendError):
            await repository.get_context("exec-1")
    assert client.breaker_state == OPEN
    assert (await probe.check()).status == "down"

    with pytest.raises(BackendUnavailableError, match="circuit open, retrying in 30s"):
        await repository.get_context("exec-1")
    assert len(backend.of("context")) == 2  # failed fast

    clock.now += 31
    assert client.breaker_state == HALF_OPEN
    with pytest.raises(BackendError):  # the probe fails: open again
        await repository.get_context("exec-1")
    assert client.breaker_state == OPEN
    assert len(backend.of("context")) == 3

    clock.now += 31
    backend.heal()
    context = await repository.get_context("exec-1")  # the probe succeeds: closed
    assert context.user_id == "user-1"
    assert client.breaker_state == CLOSED
    assert (await probe.check()).status == "up"
    await repository.get_context("exec-1")
    assert len(backend.of("context")) == 5


async def test_only_one_probe_goes_through_while_half_open(
    backend: FakeBackend, make_client: ClientFactory
) -> None:
    clock = FakeClock()
    client = await make_client(breaker_failures=1, breaker_cooldown=5.0, max_retries=0, clock=clock)
    repository = BackendExecutionRepository(client)
    backend.fail("context", times=1)
    with pytest.raises(BackendError):
        await repository.get_context("exec-1")
    clock.now += 6
    backend.go_silent("context")
    probe = asyncio.create_task(repository.get_context("exec-1"))
    await asyncio.sleep(0.05)
    with pytest.raises(BackendUnavailableError, match="circuit open"):
        await repository.get_context("exec-1")
    backend.heal()
    await backend.stop()  # releases the silent probe with a 500
    with pytest.raises((BackendError, BackendUnavailableError)):
        await probe
    assert client.breaker_state == OPEN


async def test_4xx_answers_do_not_open_the_breaker(
    backend: FakeBackend, make_client: ClientFactory
) -> None:
    client = await make_client(breaker_failures=1)
    for _ in range(3):
        with pytest.raises(ExecutionNotFoundError):
            await BackendExecutionRepository(client).get_context("nope")
    assert client.breaker_state == CLOSED


async def test_the_health_probe_reads_down_after_the_backend_went_away(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    probe = BackendHealthProbe(client)
    assert probe.name == "backend"
    assert (await probe.check()).status == "up"
    await backend.stop()
    with pytest.raises(BackendUnavailableError):
        await BackendExecutionRepository(client).get_context("exec-1")
    health = await probe.check()
    assert health.status == "down"
    assert health.error is not None


# Metrics and the session.


async def test_metrics_count_calls_by_operation_and_outcome(
    backend: FakeBackend, make_client: ClientFactory
) -> None:
    registry = prometheus_client.CollectorRegistry()
    clock = FakeClock()
    client = await make_client(registry=registry, breaker_failures=1, max_retries=0, clock=clock)
    executions = BackendExecutionRepository(client)
    variables = BackendVariableRepository(client)
    await executions.get_context("exec-1")
    await variables.get("user-1", "missing")
    backend.fail("variable_put", times=1, status=400)
    with pytest.raises(BackendError):
        await variables.put("user-1", "k", 1, AT)
    backend.fail("context", times=1)
    with pytest.raises(BackendError):
        await executions.get_context("exec-1")
    assert registry.get_sample_value("cronium_runtime_backend_breaker_state") == 2
    with pytest.raises(BackendUnavailableError):
        await executions.get_context("exec-1")

    def count(operation: str, outcome: str) -> float | None:
        return registry.get_sample_value(
            "cronium_runtime_backend_requests_total",
            {"operation": operation, "outcome": outcome},
        )

    assert count("get_context", "ok") == 1
    assert count("get_variable", "not_found") == 1
    assert count("put_variable", "client_error") == 1
    assert count("get_context", "server_error") == 1
    assert count("get_context", "breaker_open") == 1
    assert (
        registry.get_sample_value(
            "cronium_runtime_backend_request_duration_seconds_count", {"operation": "get_context"}
        )
        == 2
    )
    clock.now += 10
    await executions.get_context("exec-1")
    assert registry.get_sample_value("cronium_runtime_backend_breaker_state") == 0

    backend.refuse_token = True
    with pytest.raises(BackendAuthFailedError):
        await executions.get_context("exec-1")
    assert count("get_context", "auth_failed") == 1


async def test_timeouts_and_unreachable_backends_are_counted(
    backend: FakeBackend, make_client: ClientFactory
) -> None:
    registry = prometheus_client.CollectorRegistry()
    client = await make_client(registry=registry, timeout=0.2, max_retries=0)
    backend.go_silent("context")
    with pytest.raises(BackendUnavailableError):
        await BackendExecutionRepository(client).get_context("exec-1")
    await backend.stop()
    with pytest.raises(BackendUnavailableError):
        await BackendVariableRepository(client).get("user-1", "k")
    labels = {"operation": "get_context", "outcome": "timeout"}
    assert registry.get_sample_value("cronium_runtime_backend_requests_total", labels) == 1
    labels = {"operation": "get_variable", "outcome": "unavailable"}
    assert registry.get_sample_value("cronium_runtime_backend_requests_total", labels) == 1


async def test_one_session_and_its_connection_are_reused(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    session = client.session
    repository = BackendExecutionRepository(client)
    for _ in range(5):
        await repository.get_context("exec-1")
    assert client.session is session
    assert len({request.peer for request in backend.received}) == 1


async def test_the_raw_client_raises_tool_outcome_unknown_for_non_idempotent_5xx(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    backend.fail("audit")
    with pytest.raises(ToolOutcomeUnknown):
        await client.request("audit", "POST", "/api/internal/audit", json={}, idempotent=False)
    assert len(backend.of("audit")) == 1


async def test_a_tool_action_refused_a_connection_is_retried_until_the_backend_is_back(
    backend: FakeBackend, make_client: ClientFactory
) -> None:
    client = await make_client(timeout=2.0, max_retries=10, retry_delay=0.02)
    port = backend.port
    await backend.stop()

    async def restart() -> None:
        await asyncio.sleep(0.1)
        await backend.start(port)

    restarting = asyncio.create_task(restart())
    result = await BackendToolGateway(client).execute(tool_call())
    await restarting

    assert result.success is True
    assert len(backend.of("tool")) == 1


async def test_a_context_without_the_documented_shape_is_a_backend_error(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    backend.contexts["bad"] = {"executionId": "bad", "metadata": {}}
    backend.contexts["worse"] = {**CONTEXT, "metadata": ["not", "an", "object"]}
    repository = BackendExecutionRepository(client)
    with pytest.raises(BackendError, match="userId"):
        await repository.get_context("bad")
    with pytest.raises(BackendError, match="metadata"):
        await repository.get_context("worse")


async def test_a_tool_reply_without_the_documented_shape_is_outcome_unknown(
    backend: FakeBackend, client: HttpBackendClient
) -> None:
    backend.tool_reply = {"data": "no success field"}
    result = await BackendToolGateway(client).execute(tool_call())
    assert result.code == "TOOL_OUTCOME_UNKNOWN"
    assert len(backend.of("tool")) == 1
