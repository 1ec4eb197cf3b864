"""The metrics an operator watches beyond the request counter: requests in flight, the
build, rate-limit refusals, and labels that stay few whatever a client sends."""

from __future__ import annotations

import asyncio
import json
import platform
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from http_harness import EXEC, SECRET, Api, MakeApi
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.http.observability import MULTIPROC_VARIABLE, AnswerCutOff, scrape_registry
from entrypoints.settings import load_settings

README = Path(__file__).resolve().parents[3] / "README.md"

REQUESTS = "cronium_runtime_http_requests_total"
Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(api: Api) -> Samples:
    response = api.client.get("/metrics")
    assert response.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def counted(api: Api) -> dict[tuple[str, str, str], float]:
    return {
        (labels["route"], labels["method"], labels["status"]): value
        for labels, value in scrape(api)[REQUESTS]
    }


def test_the_build_is_one_series_with_the_version_and_python(api: Api) -> None:
    [(labels, value)] = scrape(api)["cronium_runtime_build_info"]

    assert labels == {"version": version("cronium-runtime"), "python": platform.python_version()}
    assert value == 1


def test_in_flight_counts_only_the_scrape_itself_after_answers_of_every_kind(
    make_api: MakeApi,
) -> None:
    api = make_api(env={"MAX_BODY_SIZE": "1KiB"})
    api.client.get(f"/executions/{EXEC}/input", headers=api.auth())
    api.client.get(f"/executions/{EXEC}/input")
    api.client.get("/nowhere")
    api.client.post(f"/executions/{EXEC}/output", json={"data": "x" * 2000}, headers=api.auth())

    [(_, in_flight)] = scrape(api)["cronium_runtime_http_requests_in_flight"]

    assert in_flight == 1


def test_each_rate_limit_refusal_is_counted(make_api: MakeApi) -> None:
    api = make_api(env={"RATE_LIMIT_PER_MIN": "2"})
    statuses = [
        api.client.get(f"/executions/{EXEC}/input", headers=api.auth()).status_code
        for _ in range(5)
    ]

    [(_, refused)] = scrape(api)["cronium_runtime_rate_limit_rejections_total"]

    assert statuses == [200, 200, 429, 429, 429]
    assert refused == 3


def test_a_made_up_method_is_counted_as_other(api: Api) -> None:
    for method in ("BREW", "WHEN", "PROPFIND"):
        assert api.client.request(method, "/health").status_code == 405

    assert counted(api)[("/health", "OTHER", "405")] == 3
    assert not any(method in {"BREW", "WHEN", "PROPFIND"} for _, method, _ in counted(api))


def test_a_wrong_method_on_a_known_route_is_counted_under_its_template(api: Api) -> None:
    api.client.delete(f"/executions/{EXEC}/input", headers=api.auth())
    api.client.post("/nowhere")

    counts = counted(api)

    assert counts[("/executions/{execution_id}/input", "DELETE", "405")] == 1
    assert counts[("unmatched", "POST", "404")] == 1


def test_one_process_scrapes_its_own_registry() -> None:
    registry = CollectorRegistry()

    assert scrape_registry(registry)() is registry


def test_a_multiprocess_folder_set_after_prometheus_client_was_imported_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # This process imported prometheus-client without the variable: its values live in
    # memory, and a scrape of the folder would miss them all.
    monkeypatch.setenv(MULTIPROC_VARIABLE, str(tmp_path))

    with pytest.raises(RuntimeError, match="imported before PROMETHEUS_MULTIPROC_DIR"):
        scrape_registry(CollectorRegistry())


def test_the_readmes_metrics_table_names_every_metric_the_service_has_and_no_other(
    tmp_path: Path,
) -> None:
    # With a backend and Valkey configured (never reached: nothing here starts the app), so
    # that every adapter that reports metrics is built.
    settings = load_settings(
        {
            "HOME": str(tmp_path),
            "JWT_SECRET": SECRET,
            "BACKEND_URL": "http://127.0.0.1:9",
            "BACKEND_TOKEN": "backend-token",
            "VALKEY_URL": "valkey://127.0.0.1:9",
        },
        cwd=tmp_path,
    )
    container = Container(settings=settings)
    create_app(container=container)
    exposed = {
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in container.metrics_registry().collect()
    }

    section = README.read_text(encoding="utf-8").split("\n## Metrics\n", 1)[1].split("\n## ")[0]
    listed = set(re.findall(r"^\| `(cronium_runtime_[a-z_]+)` \|", section, re.MULTILINE))

    assert listed == exposed


# A request cut off at shutdown: uvicorn cancels what still runs after server.shutdownTimeout.


def cancelled_after(started_answer: bool) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if started_answer:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        raise asyncio.CancelledError

    return app


async def run_cut_off(app: Any, path_template: str) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "POST", "path_template": path_template}
    await AnswerCutOff(app)(scope, receive, send)  # type: ignore[arg-type]
    return sent


async def test_a_tool_call_cut_off_at_shutdown_is_answered_as_outcome_unknown() -> None:
    sent = await run_cut_off(cancelled_after(False), "/tool-actions/execute")

    start, body = sent
    assert start["status"] == 200
    assert json.loads(body["body"]) == {
        "success": False,
        "data": None,
        "error": "the service stopped before the tool's answer came; the tool may or may not"
        " have run, and it will not be sent again",
        "code": "TOOL_OUTCOME_UNKNOWN",
    }


async def test_any_other_request_cut_off_at_shutdown_is_503_shutting_down() -> None:
    sent = await run_cut_off(cancelled_after(False), "/executions/{execution_id}/variables/{key}")

    start, body = sent
    assert start["status"] == 503
    answer = json.loads(body["body"])
    assert answer["code"] == "SHUTTING_DOWN"
    assert answer["error"] == "Service Unavailable"
    assert (b"content-type", b"application/json") in start["headers"]


async def test_a_request_cut_off_after_its_answer_started_stays_cancelled() -> None:
    with pytest.raises(asyncio.CancelledError):
        await run_cut_off(cancelled_after(True), "/executions/{execution_id}/input")
