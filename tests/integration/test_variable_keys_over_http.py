"""Variable keys as they travel in a real request line: URL-encoded, decoded exactly once."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import jwt
import pytest

if TYPE_CHECKING:
    from conftest import ServerProcess, StartServer

SECRET = "integration-secret-at-least-32-bytes-long"
VARIABLES = "/executions/e1/variables"


@pytest.fixture(scope="module")
def api(start_module_server: StartServer) -> ServerProcess:
    """One server for the module: every test writes keys of its own."""
    return start_module_server(JWT_SECRET=SECRET)


@pytest.fixture
def auth() -> dict[str, str]:
    token = jwt.encode(
        {"executionId": "e1", "userId": "local", "exp": int(time.time()) + 600},
        SECRET,
        algorithm="HS256",
    )
    return {"Authorization": f"Bearer {token}"}


def listed_keys(api: ServerProcess, auth: dict[str, str]) -> list[str]:
    answer = api.request("GET", VARIABLES, headers=auth)
    assert answer.status == 200
    return [entry["key"] for entry in answer.json()["data"]]


@pytest.mark.parametrize(
    ("encoded", "key"),
    [
        pytest.param("a%2Fb", "a/b", id="encoded-slash"),
        pytest.param("a%252Fb", "a%2Fb", id="encoded-percent-decoded-once"),
        pytest.param("with%20space", "with space", id="space"),
        pytest.param("caf%C3%A9", "café", id="latin"),
        pytest.param("%E6%97%A5%E6%9C%AC%F0%9F%98%80", "日本😀", id="cjk-and-emoji"),
        pytest.param("a%3Fb%23c", "a?b#c", id="query-and-fragment-characters"),
        pytest.param("%25", "%", id="lone-percent"),
    ],
)
def test_an_encoded_key_is_written_read_and_listed_decoded_once(
    api: ServerProcess, auth: dict[str, str], encoded: str, key: str
) -> None:
    path = f"{VARIABLES}/{encoded}"

    written = api.request("PUT", path, body={"value": {"n": 1}}, headers=auth)
    read = api.request("GET", path, headers=auth)

    assert written.status == 200, written.body
    assert written.json()["data"]["key"] == key
    assert read.status == 200, read.body
    assert read.json()["data"]["key"] == key
    assert read.json()["data"]["value"] == {"n": 1}
    assert key in listed_keys(api, auth)


def test_a_slash_and_an_encoded_slash_name_different_variables_when_percent_encoded_twice(
    api: ServerProcess, auth: dict[str, str]
) -> None:
    api.request("PUT", f"{VARIABLES}/a%2Fb", body={"value": "slash"}, headers=auth)
    api.request("PUT", f"{VARIABLES}/a%252Fb", body={"value": "percent"}, headers=auth)

    assert api.request("GET", f"{VARIABLES}/a%2Fb", headers=auth).json()["data"]["value"] == (
        "slash"
    )
    assert api.request("GET", f"{VARIABLES}/a%252Fb", headers=auth).json()["data"]["value"] == (
        "percent"
    )
    assert {"a/b", "a%2Fb"} <= set(listed_keys(api, auth))


def test_a_key_written_encoded_is_deleted_encoded(api: ServerProcess, auth: dict[str, str]) -> None:
    path = f"{VARIABLES}/caf%C3%A9%2Fx"
    api.request("PUT", path, body={"value": 1}, headers=auth)

    deleted = api.request("DELETE", path, headers=auth)

    assert deleted.status == 200
    assert deleted.json() == {"success": True}
    assert api.request("GET", path, headers=auth).status == 404
    assert "café/x" not in listed_keys(api, auth)


def test_a_key_of_255_characters_is_accepted(api: ServerProcess, auth: dict[str, str]) -> None:
    answer = api.request("PUT", f"{VARIABLES}/{'k' * 255}", body={"value": 1}, headers=auth)

    assert answer.status == 200
    assert answer.json()["data"]["key"] == "k" * 255


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param("k" * 256, id="256-characters"),
        pytest.param("%C3%A9" * 256, id="256-characters-after-decoding"),
        pytest.param("..%2Fx", id="dot-dot-segment"),
        pytest.param("a%2F..", id="trailing-dot-dot-segment"),
        pytest.param("a%0Ab", id="control-character"),
    ],
)
@pytest.mark.parametrize("method", ["PUT", "GET"])
def test_an_invalid_key_is_400_invalid_key(
    api: ServerProcess, auth: dict[str, str], encoded: str, method: str
) -> None:
    body = {"value": 1} if method == "PUT" else None

    answer = api.request(method, f"{VARIABLES}/{encoded}", body=body, headers=auth)

    assert answer.status == 400, answer.body
    assert answer.json() == {
        "success": False,
        "error": "Bad Request",
        "message": answer.json()["message"],
        "code": "INVALID_KEY",
    }


def test_a_long_encoded_key_is_refused_by_its_decoded_length_only(
    api: ServerProcess, auth: dict[str, str]
) -> None:
    # 255 characters that take 1530 bytes on the wire.
    encoded = "%C3%A9" * 255

    answer = api.request("PUT", f"{VARIABLES}/{encoded}", body={"value": 1}, headers=auth)

    assert answer.status == 200, answer.body
    assert answer.json()["data"]["key"] == "é" * 255


@pytest.mark.parametrize(
    ("encoded", "key"),
    [
        pytest.param("%2Fa", "/a", id="leading-slash"),
        pytest.param("a%2F", "a/", id="trailing-slash"),
        pytest.param("a%2F%2Fb", "a//b", id="double-slash"),
    ],
)
def test_an_encoded_slash_at_the_edge_of_a_key_is_kept(
    api: ServerProcess, auth: dict[str, str], encoded: str, key: str
) -> None:
    answer = api.request("PUT", f"{VARIABLES}/{encoded}", body={"value": 1}, headers=auth)

    assert answer.status == 200
    assert answer.json()["data"]["key"] == key
    read = api.request("GET", f"{VARIABLES}/{encoded}", headers=auth)
    assert read.json()["data"]["key"] == key


def test_a_key_that_is_not_utf8_is_400_invalid_key(
    api: ServerProcess, auth: dict[str, str]
) -> None:
    answer = api.request("PUT", f"{VARIABLES}/%FF", body={"value": 1}, headers=auth)

    assert answer.status == 400
    assert answer.json()["code"] == "INVALID_KEY"


def test_an_empty_key_is_400_invalid_key(api: ServerProcess, auth: dict[str, str]) -> None:
    answer = api.request("PUT", f"{VARIABLES}/", body={"value": 1}, headers=auth)

    assert answer.status == 400
    assert answer.json()["code"] == "INVALID_KEY"
