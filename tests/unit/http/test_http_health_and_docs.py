"""Liveness, readiness and the API document: bare JSON (no envelope), open to anyone."""

from __future__ import annotations

import re

import pytest
from http_harness import (
    Api,
    BrokenHealthProbe,
    FixedHealthProbe,
    HangingHealthProbe,
    MakeApi,
)

from entrypoints.http import health
from entrypoints.version import VERSION

WIRE_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def probes(**statuses: str) -> list[FixedHealthProbe]:
    """store, valkey and audit probes, each `up` unless named."""
    defaults = {"store": "up", "valkey": "disabled", "audit": "up"}
    return [
        FixedHealthProbe(name, status, error="refused" if status == "down" else None)
        for name, status in {**defaults, **statuses}.items()
    ]


# /health


def test_health_answers_bare_status_time_and_version(api: Api):
    response = api.client.get("/health")

    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"status", "time", "version"}
    assert body["status"] == "healthy"
    assert WIRE_TIMESTAMP.fullmatch(body["time"])
    assert body["version"] == VERSION
    assert re.fullmatch(r"\d+\.\d+\.\d+", body["version"])


def test_health_stays_healthy_while_a_dependency_is_down(make_api: MakeApi):
    api = make_api(probes=probes(store="down", audit="down"))

    response = api.client.get("/health")

    assert response.status_code == 200
    assert response.json()["status"] == "healthy"


# /health/ready


def test_readiness_with_the_default_probes_is_ready_with_valkey_disabled(api: Api):
    response = api.client.get("/health/ready")

    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"status", "checks"}
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"store", "valkey", "audit"}
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "store": "up",
        "valkey": "disabled",
        "audit": "up",
    }
    for check in body["checks"].values():
        assert set(check) == {"status", "latencyMs"}
        assert isinstance(check["latencyMs"], int | float)
        assert check["latencyMs"] >= 0


@pytest.mark.parametrize(
    ("statuses", "status", "http_status"),
    [
        ({}, "ready", 200),
        ({"valkey": "up"}, "ready", 200),
        ({"valkey": "down"}, "degraded", 200),
        ({"audit": "down"}, "degraded", 200),
        ({"valkey": "down", "audit": "down"}, "degraded", 200),
        ({"store": "down"}, "unavailable", 503),
        ({"store": "down", "valkey": "down"}, "unavailable", 503),
    ],
    ids=[
        "all up",
        "valkey up",
        "valkey down",
        "audit down",
        "valkey and audit down",
        "store down",
        "store and valkey down",
    ],
)
def test_readiness_status_follows_the_probes(
    make_api: MakeApi, statuses: dict[str, str], status: str, http_status: int
):
    api = make_api(probes=probes(**statuses))

    response = api.client.get("/health/ready")

    body = response.json()
    assert response.status_code == http_status
    assert body["status"] == status
    for name, check in body["checks"].items():
        expected = statuses.get(name, "disabled" if name == "valkey" else "up")
        assert check["status"] == expected
        assert check["latencyMs"] == 1.5
        if expected == "down":
            assert check["error"] == "refused"
        else:
            assert "error" not in check


def test_readiness_with_the_backend_down_and_no_cache_is_unavailable(make_api: MakeApi):
    api = make_api(probes=[FixedHealthProbe("backend", "down"), FixedHealthProbe("audit")])

    response = api.client.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"


def test_readiness_with_the_backend_down_and_valkey_up_is_degraded(make_api: MakeApi):
    api = make_api(
        probes=[
            FixedHealthProbe("backend", "down"),
            FixedHealthProbe("valkey"),
            FixedHealthProbe("audit"),
        ]
    )

    response = api.client.get("/health/ready")

    assert response.status_code == 200
    assert response.json()["status"] == "degraded"


def test_a_probe_that_does_not_answer_in_time_is_reported_down(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(health, "PROBE_TIMEOUT", 0.05)
    api = make_api(probes=[FixedHealthProbe("store"), HangingHealthProbe("valkey")])

    response = api.client.get("/health/ready")

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert body["checks"]["valkey"]["status"] == "down"
    assert body["checks"]["valkey"]["error"]
    assert body["checks"]["valkey"]["latencyMs"] >= 40


def test_a_probe_that_raises_is_reported_down_not_as_a_500(make_api: MakeApi):
    api = make_api(probes=[FixedHealthProbe("store"), BrokenHealthProbe("valkey")])

    response = api.client.get("/health/ready")

    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["valkey"]["status"] == "down"


def test_readiness_before_the_lifespan_has_started_is_unavailable(make_api: MakeApi):
    api = make_api(run_lifespan=False)

    response = api.client.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"


def test_readiness_after_shutdown_is_unavailable(make_api: MakeApi):
    api = make_api(run_lifespan=False)
    with api.client:
        pass

    response = api.client.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"


# The API document


def test_the_openapi_document_is_served_without_a_token_and_lists_every_route(api: Api):
    response = api.client.get("/schema/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    operations = {(path, method) for path, item in paths.items() for method in item}
    assert operations >= {
        ("/executions/{execution_id}/input", "get"),
        ("/executions/{execution_id}/output", "post"),
        ("/executions/{execution_id}/variables", "get"),
        ("/executions/{execution_id}/variables/{key}", "get"),
        ("/executions/{execution_id}/variables/{key}", "put"),
        ("/executions/{execution_id}/variables/{key}", "delete"),
        ("/executions/{execution_id}/condition", "post"),
        ("/executions/{execution_id}/context", "get"),
        ("/tool-actions/execute", "post"),
        ("/health", "get"),
        ("/health/ready", "get"),
        ("/metrics", "get"),
    }


def test_the_openapi_document_marks_the_script_routes_as_needing_a_bearer_token(api: Api):
    document = api.client.get("/schema/openapi.json").json()

    schemes = document["components"]["securitySchemes"]
    script_operation = document["paths"]["/executions/{execution_id}/input"]["get"]
    open_operation = document["paths"]["/health"]["get"]
    assert schemes["bearer"]["scheme"] == "bearer"
    assert script_operation["security"] == [{"bearer": []}]
    assert "security" not in open_operation
