"""The app factory's own choices: CORS from the settings, OPTIONS answers, and an app built
from settings alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from http_harness import EXEC, SECRET, MakeApi, assert_error, bearer, claims, forge
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from entrypoints.http.app import create_app
from entrypoints.settings import load_settings

ORIGIN = "https://dashboard.example"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "PUT",
    "Access-Control-Request-Headers": "authorization, content-type",
}


def test_a_cors_preflight_is_answered_without_a_token(make_api: MakeApi):
    api = make_api()

    response = api.client.options(f"/executions/{EXEC}/variables/k", headers=PREFLIGHT)

    assert response.status_code in {200, 204}
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "PUT" in response.headers["Access-Control-Allow-Methods"]


def test_a_cross_origin_answer_exposes_the_request_id_and_rate_limit_fields(make_api: MakeApi):
    api = make_api()

    response = api.client.get(f"/executions/{EXEC}/input", headers={**api.auth(), "Origin": ORIGIN})

    exposed = {
        name.strip().lower()
        for name in response.headers["Access-Control-Expose-Headers"].split(",")
    }
    assert response.status_code == 200
    assert {"x-request-id", "ratelimit", "ratelimit-policy", "retry-after"} <= exposed


def test_with_cors_disabled_no_cross_origin_fields_are_sent(make_api: MakeApi):
    api = make_api(env={"ENABLE_CORS": "false"})

    response = api.client.get(f"/executions/{EXEC}/input", headers={**api.auth(), "Origin": ORIGIN})

    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_the_allowed_origins_are_a_setting(make_api: MakeApi):
    api = make_api(env={"ALLOWED_ORIGINS": ORIGIN})

    allowed = api.client.get("/health", headers={"Origin": ORIGIN})
    other = api.client.get("/health", headers={"Origin": "https://evil.example"})

    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Access-Control-Allow-Origin" not in other.headers


def test_an_app_built_from_settings_alone_serves_tokens_signed_with_the_configured_secret(
    tmp_path: Path,
):
    settings = load_settings({"HOME": str(tmp_path), "JWT_SECRET": SECRET}, cwd=tmp_path)

    with TestClient(create_app(settings=settings)) as client:
        response = client.get(f"/executions/{EXEC}/variables", headers=bearer(forge(claims())))

    assert response.status_code == 200
    assert response.json() == {"success": True, "data": []}


# CORS preflights against the configured origins, methods and headers

DASHBOARD_ONLY = {
    "ALLOWED_ORIGINS": ORIGIN,
    "ALLOWED_METHODS": "GET,PUT",
    "ALLOWED_HEADERS": "authorization,content-type",
}


def cors_fields(response: Any) -> dict[str, str]:
    return {
        name.lower(): value
        for name, value in response.headers.items()
        if name.lower().startswith("access-control-")
    }


def test_a_preflight_from_an_allowed_origin_is_allowed_what_the_settings_allow(
    make_api: MakeApi,
):
    api = make_api(env=DASHBOARD_ONLY)

    response = api.client.options(f"/executions/{EXEC}/variables/k", headers=PREFLIGHT)

    fields = cors_fields(response)
    assert response.status_code == 204
    assert fields["access-control-allow-origin"] == ORIGIN
    assert response.headers["Vary"] == "Origin"
    assert {m.strip() for m in fields["access-control-allow-methods"].split(",")} == {"GET", "PUT"}
    allowed_headers = {h.strip().lower() for h in fields["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed_headers


@pytest.mark.parametrize(
    ("origin", "method"),
    [("https://evil.example", "PUT"), (ORIGIN, "DELETE")],
    ids=["another origin", "a method not allowed"],
)
def test_a_preflight_outside_the_settings_gets_no_allow_fields(
    make_api: MakeApi, origin: str, method: str
):
    api = make_api(env=DASHBOARD_ONLY)
    headers = {**PREFLIGHT, "Origin": origin, "Access-Control-Request-Method": method}

    response = api.client.options(f"/executions/{EXEC}/variables/k", headers=headers)

    assert response.status_code == 400  # Litestar's own refusal: "Disallowed CORS ..."
    assert cors_fields(response) == {}


def test_with_cors_disabled_a_preflight_is_a_plain_options_answer(make_api: MakeApi):
    api = make_api(env={"ENABLE_CORS": "false"})

    response = api.client.options(f"/executions/{EXEC}/variables/k", headers=PREFLIGHT)

    assert response.status_code == 204
    assert cors_fields(response) == {}
    assert response.headers["Allow"] == "GET, PUT, DELETE, OPTIONS"


# OPTIONS without CORS: the methods a path answers


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        (f"/executions/{EXEC}/variables/k", "GET, PUT, DELETE, OPTIONS"),
        (f"/executions/{EXEC}/variables", "GET, PUT, DELETE, OPTIONS"),
        (f"/executions/{EXEC}/output", "POST, OPTIONS"),
        ("/tool-actions/execute", "POST, OPTIONS"),
        ("/health", "GET, OPTIONS"),
    ],
)
def test_options_names_every_method_of_the_path_without_a_token(
    make_api: MakeApi, path: str, allow: str
):
    api = make_api()

    response = api.client.options(path)

    assert response.status_code == 204
    assert response.headers["Allow"] == allow
    assert response.headers["X-Request-ID"]
    assert response.content == b""


def test_options_on_an_unknown_path_is_404_not_found(make_api: MakeApi):
    api = make_api()

    response = api.client.options("/nowhere")

    assert_error(response, 404, "NOT_FOUND", "Not Found")


def test_no_route_resolves_its_dependencies_in_a_task_group(make_api: MakeApi):
    # Litestar resolves two or more dependencies of one level in an anyio task group, a task
    # each, on every request; every route here needs one dependency at most per level.
    app = make_api(run_lifespan=False).client.app

    batch_sizes = {
        (route.path, method): [len(batch) for batch in kwargs_model.dependency_batches]
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for method, (_, kwargs_model) in route.route_handler_map.items()
    }

    assert ("/executions/{execution_id:str}/variables/{key:path}", "GET") in batch_sizes
    assert {route: sizes for route, sizes in batch_sizes.items() if max(sizes, default=0) > 1} == {}
