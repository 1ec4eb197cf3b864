"""The app factory's own choices: CORS from the settings, and an app built from settings alone."""

from __future__ import annotations

from pathlib import Path

from http_harness import EXEC, SECRET, MakeApi, bearer, claims, forge
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
