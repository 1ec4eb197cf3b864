"""`rate_limited` as the edge records it (SPEC section 9): once per execution per minute, with
the number refused in it, from the app's own timer, so no further request is needed for the
event to reach the audit log; and at shutdown, with the count so far."""

from __future__ import annotations

import time
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

from http_harness import EXEC, EXEC_2, Api, MakeApi, start_api

from domain.audit import AuditAction, AuditEvent

LIMIT = {"RATE_LIMIT_PER_MIN": "2"}
WAIT = 10.0  # the longest the app's timer may take to notice the minute is over


def rate_limited(api: Api) -> list[AuditEvent]:
    return [event for event in api.audit.events if event.action == AuditAction.RATE_LIMITED]


def call(api: Api, times: int, execution_id: str = EXEC) -> list[int]:
    return [
        api.client.get(
            f"/executions/{execution_id}/input",
            headers={**api.auth(execution_id), "X-Request-ID": f"req-{execution_id}-{n}"},
        ).status_code
        for n in range(times)
    ]


def wait_for_rate_limited(api: Api, count: int) -> list[AuditEvent]:
    deadline = time.monotonic() + WAIT
    while len(rate_limited(api)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return rate_limited(api)


def end_the_minute(api: Api) -> None:
    clock = api.container.clock()
    clock.moment += timedelta(minutes=1, seconds=5)


def test_refusals_are_recorded_once_when_the_minute_is_over_without_another_request(
    make_api: MakeApi,
):
    api = make_api(env=LIMIT)
    assert call(api, 6) == [200, 200, 429, 429, 429, 429]
    assert rate_limited(api) == []

    end_the_minute(api)

    [event] = wait_for_rate_limited(api, 1)
    assert event.execution_id == EXEC
    assert event.details.count == 4
    assert event.details.outcome == "RATE_LIMITED"
    assert event.details.request_id == f"req-{EXEC}-2"  # the minute's first refusal
    assert event.details.client_address == "testclient"


def test_each_execution_refused_in_a_minute_gets_its_own_event(make_api: MakeApi):
    api = make_api(env=LIMIT)
    call(api, 3, EXEC)
    call(api, 4, EXEC_2)

    end_the_minute(api)

    events = wait_for_rate_limited(api, 2)
    assert {event.execution_id: event.details.count for event in events} == {EXEC: 1, EXEC_2: 2}


def test_at_shutdown_the_minute_in_progress_is_recorded_with_the_count_so_far(tmp_path: Path):
    with ExitStack() as stack:
        api = start_api(stack, tmp_path, env=LIMIT)
        call(api, 5)
        assert rate_limited(api) == []

    [event] = rate_limited(api)
    assert event.details.count == 3
