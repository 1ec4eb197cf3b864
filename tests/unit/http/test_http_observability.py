"""What every answer carries for whoever operates the service: an X-Request-ID, a line in
the Prometheus metrics labelled by route template, never by a raw path."""

from __future__ import annotations

import os
import re
import time

import pytest
from http_harness import EXEC, Api, MakeApi, assert_error, bearer, claims, forge, raw_request
from prometheus_client.parser import text_string_to_metric_families

from domain.ids import IDS_PER_BLOCK, random_hex

REQUESTS = "cronium_runtime_http_requests"
LATENCY = "cronium_runtime_http_request_duration_seconds"


def scrape(api: Api) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The samples of the /metrics answer, by sample name."""
    response = api.client.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


# X-Request-ID


@pytest.mark.parametrize(
    ("method", "path", "authenticated", "status"),
    [
        ("GET", f"/executions/{EXEC}/input", True, 200),
        ("GET", f"/executions/{EXEC}/input", False, 401),
        ("GET", f"/executions/{EXEC}/variables/missing", True, 404),
        ("GET", "/nowhere", False, 404),
        ("DELETE", "/health", False, 405),
        ("POST", f"/executions/{EXEC}/output", True, 400),
        ("GET", "/health", False, 200),
        ("GET", "/health/ready", False, 200),
        ("GET", "/metrics", False, 200),
        ("GET", "/schema/openapi.json", False, 200),
    ],
)
def test_every_answer_carries_a_request_id(
    api: Api, method: str, path: str, authenticated: bool, status: int
):
    response = api.client.request(method, path, headers=api.auth() if authenticated else {})

    assert response.status_code == status
    assert response.headers["X-Request-ID"].strip()


def test_each_request_gets_its_own_generated_id(api: Api):
    ids = {api.client.get("/health").headers["X-Request-ID"] for _ in range(5)}

    assert len(ids) == 5


def test_generated_request_ids_are_32_hex_digits_and_never_repeat():
    new_id = random_hex

    made = [new_id() for _ in range(3 * IDS_PER_BLOCK + 1)]

    assert len(set(made)) == len(made)
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in made)


def test_a_forked_child_does_not_hand_out_the_ids_its_parent_hands_out_next():
    new_id = random_hex
    new_id()
    read_end, write_end = os.pipe()

    child = os.fork()
    if child == 0:
        try:
            os.write(write_end, new_id().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    with os.fdopen(read_end, "rb") as pipe:
        childs_id = pipe.read().decode()

    assert re.fullmatch(r"[0-9a-f]{32}", childs_id)
    assert childs_id != new_id()


@pytest.mark.parametrize(
    "request_id",
    ["req-123", "3f2b9c1e-8a47-4d5e-9f00-1234567890ab", "trace:abc/def+1=@x.y_z", "a" * 128],
)
def test_a_usable_request_id_from_the_client_is_echoed(api: Api, request_id: str):
    response = api.client.get(
        f"/executions/{EXEC}/input", headers={**api.auth(), "X-Request-ID": request_id}
    )

    assert response.headers["X-Request-ID"] == request_id


def test_a_request_id_is_echoed_on_errors_before_authentication(api: Api):
    response = api.client.get(f"/executions/{EXEC}/input", headers={"X-Request-ID": "req-401"})

    assert_error(response, 401, "TOKEN_MISSING", "Unauthorized")
    assert response.headers["X-Request-ID"] == "req-401"


@pytest.mark.parametrize(
    "request_id",
    ["a" * 129, "has space", "semi;colon", 'quote"d', "ünïcode", "tab\there"],
    ids=["too long", "space", "semicolon", "quote", "non-ASCII", "tab"],
)
def test_an_unusable_request_id_is_replaced_by_a_generated_one(api: Api, request_id: str):
    response = api.client.get(
        f"/executions/{EXEC}/input",
        headers={**api.auth(), "X-Request-ID": request_id.encode()},
    )

    replacement = response.headers["X-Request-ID"]
    assert response.status_code == 200
    assert replacement != request_id
    assert replacement.strip()
    assert " " not in replacement


def test_an_empty_request_id_is_replaced_by_a_generated_one(api: Api):
    response = raw_request(api, "GET", "/health", [(b"x-request-id", b"")])

    [request_id] = response.header("X-Request-ID")
    assert request_id


def test_the_answer_carries_exactly_one_request_id(api: Api):
    response = raw_request(
        api, "GET", "/health", [(b"x-request-id", b"first"), (b"x-request-id", b"second")]
    )

    assert response.header("X-Request-ID") == ["first"]


# Metrics


def test_metrics_are_prometheus_text_with_the_request_counter_and_latency_histogram(api: Api):
    api.client.get("/health")

    response = api.client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert f"# TYPE {REQUESTS}_total counter" in response.text
    assert f"# TYPE {LATENCY} histogram" in response.text
    families = {family.name for family in text_string_to_metric_families(response.text)}
    assert {REQUESTS, LATENCY} <= families


def test_the_metrics_content_type_names_its_charset_once(api: Api):
    response = api.client.get("/metrics")

    content_type = response.headers["Content-Type"]
    parameters = [part.split("=")[0].strip().lower() for part in content_type.split(";")[1:]]
    assert len(parameters) == len(set(parameters)), content_type


def test_requests_are_counted_by_route_template_method_and_status(make_api: MakeApi):
    api = make_api(env={"RATE_LIMIT_PER_MIN": "3", "MAX_BODY_SIZE": "1KiB"})
    auth = api.auth()
    input_path = f"/executions/{EXEC}/input"

    assert api.client.get(input_path, headers=auth).status_code == 200
    assert api.client.get(input_path).status_code == 401
    assert api.client.get(f"/executions/{EXEC}/variables/nope", headers=auth).status_code == 404
    too_large = {"data": "x" * 2000}
    output_path = f"/executions/{EXEC}/output"
    assert api.client.post(output_path, json=too_large, headers=auth).status_code == 413
    assert api.client.get(input_path, headers=auth).status_code == 429
    assert api.client.get(input_path, headers=auth).status_code == 429
    assert api.client.get(f"/executions/{EXEC}/nowhere").status_code == 404

    counts = {
        (labels["route"], labels["method"], labels["status"]): value
        for labels, value in scrape(api)[f"{REQUESTS}_total"]
    }

    assert counts == {
        ("/executions/{execution_id}/input", "GET", "200"): 1,
        ("/executions/{execution_id}/input", "GET", "401"): 1,
        ("/executions/{execution_id}/input", "GET", "429"): 2,
        ("/executions/{execution_id}/variables/{key}", "GET", "404"): 1,
        ("/executions/{execution_id}/output", "POST", "413"): 1,
        ("unmatched", "GET", "404"): 1,
    }


def test_route_labels_never_carry_an_execution_id_or_a_key(api: Api):
    api.client.put(
        f"/executions/{EXEC}/variables/secret-key", json={"value": 1}, headers=api.auth()
    )
    api.client.get(f"/executions/{EXEC}/variables/secret-key", headers=api.auth())
    api.client.get(f"/executions/{EXEC}/unknown/secret-key", headers=api.auth())

    samples = scrape(api)

    routes = {
        labels["route"] for name in samples for labels, _ in samples[name] if "route" in labels
    }
    assert routes
    assert not any(EXEC in route or "secret-key" in route for route in routes)


def test_the_latency_histogram_has_an_observation_per_request(api: Api):
    for _ in range(3):
        api.client.get(f"/executions/{EXEC}/input", headers=api.auth())

    samples = scrape(api)

    [(_, count)] = [
        (labels, value)
        for labels, value in samples[f"{LATENCY}_count"]
        if labels == {"route": "/executions/{execution_id}/input", "method": "GET"}
    ]
    [(_, total)] = [
        (labels, value)
        for labels, value in samples[f"{LATENCY}_sum"]
        if labels["route"] == "/executions/{execution_id}/input"
    ]
    assert count == 3
    assert total > 0


def test_a_request_refused_at_authentication_is_still_counted_with_its_status(api: Api):
    now = int(time.time())
    api.client.get(f"/executions/{EXEC}/input", headers=bearer(forge(claims(exp=now - 600))))

    counts = scrape(api)[f"{REQUESTS}_total"]

    assert (
        {"route": "/executions/{execution_id}/input", "method": "GET", "status": "401"},
        1.0,
    ) in (counts)


def test_each_app_counts_its_own_requests(make_api: MakeApi):
    first = make_api()
    second = make_api()
    first.client.get("/health")

    counts = scrape(second).get(f"{REQUESTS}_total", [])

    assert not any(labels["route"] == "/health" for labels, _ in counts)
