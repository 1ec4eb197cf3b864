"""`audit.failClosed` over HTTP (SPEC section 9): while the outbox cannot be written, a write
is answered 503 AUDIT_UNAVAILABLE and not performed; reads are still answered."""

from __future__ import annotations

import asyncio

import pytest
from http_harness import ALICE, EXEC, Api, MakeApi, assert_error

from domain.audit import AuditAction

WRITES = [
    ("PUT", f"/executions/{EXEC}/variables/k", {"value": "v"}),
    ("DELETE", f"/executions/{EXEC}/variables/k", None),
    ("POST", f"/executions/{EXEC}/output", {"data": {"n": 1}}),
    ("POST", f"/executions/{EXEC}/condition", {"condition": True}),
    ("POST", "/tool-actions/execute", {"tool": "log", "action": "note", "params": {"t": 1}}),
]


@pytest.fixture
def api(make_api: MakeApi) -> Api:
    return make_api(env={"AUDIT_FAIL_CLOSED": "true"})


def performed(api: Api) -> tuple[object, ...]:
    return (
        api.executions.outputs.get(EXEC),
        api.executions.conditions.get(EXEC),
        asyncio.run(api.variables.get(ALICE, "k")),
        len(api.tools.calls),
    )


@pytest.mark.parametrize(
    ("method", "path", "body"), WRITES, ids=[w[0] + " " + w[1] for w in WRITES]
)
def test_a_write_the_outbox_cannot_announce_is_503_audit_unavailable_and_not_performed(
    api: Api, method, path, body
):
    api.client.put(f"/executions/{EXEC}/variables/k", json={"value": "before"}, headers=api.auth())
    before = performed(api)
    api.audit.outbox_refuses = True

    response = api.client.request(method, path, json=body, headers=api.auth())

    assert_error(response, 503, "AUDIT_UNAVAILABLE", "Service Unavailable")
    assert performed(api) == before


def test_a_read_is_answered_while_the_outbox_cannot_be_written(api: Api):
    api.audit.outbox_refuses = True

    response = api.client.get(f"/executions/{EXEC}/input", headers=api.auth())

    assert response.status_code == 200
    [event] = api.audit.spooled
    assert event.action == AuditAction.GET_INPUT


def test_writes_are_performed_again_once_the_outbox_takes_events(api: Api):
    api.audit.outbox_refuses = True
    refused = api.client.post(
        f"/executions/{EXEC}/condition", json={"condition": True}, headers=api.auth()
    )
    api.audit.outbox_refuses = False

    accepted = api.client.post(
        f"/executions/{EXEC}/condition", json={"condition": True}, headers=api.auth()
    )

    assert (refused.status_code, accepted.status_code) == (503, 200)
    assert api.executions.conditions[EXEC] is True
    intent, outcome = api.audit.events
    assert (intent.details.outcome, outcome.details.outcome) == ("pending", "ok")
    assert outcome.details.intent_id == intent.id
