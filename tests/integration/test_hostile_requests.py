"""Hostile requests on a real socket, where the server (uvicorn) and not only the app shapes
the answer: each is a 4xx with a message, never a 5xx, and the service keeps serving.

What the app alone decides (JSON depth, non-UTF-8 bodies, key rules on every route) is
tested through the test client in tests/unit/http; key encodings in
test_variable_keys_over_http.py.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import jwt
import pytest

from entrypoints.cli.serve import MAX_REQUEST_HEAD

if TYPE_CHECKING:
    from conftest import ServerProcess, StartServer

SECRET = "integration-secret-at-least-32-bytes-long"
EXECUTION = "/executions/e1"
BODY_LIMIT = 1024


@pytest.fixture(scope="module")
def server(start_module_server: StartServer) -> ServerProcess:
    return start_module_server(JWT_SECRET=SECRET, MAX_BODY_SIZE="1KiB")


@pytest.fixture
def token() -> str:
    return jwt.encode(
        {"executionId": "e1", "userId": "local", "exp": int(time.time()) + 600},
        SECRET,
        algorithm="HS256",
    )


class Answer:
    def __init__(self, answer: http.client.HTTPResponse) -> None:
        self.status = answer.status
        self.headers = answer.headers
        self.body = answer.read()

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(
    server: ServerProcess,
    method: str,
    path: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | Iterable[bytes] | None = None,
    *,
    chunked: bool = False,
) -> Answer:
    """One request with the headers exactly as listed (repeats included)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        if chunked:
            connection.putheader("Transfer-Encoding", "chunked")
        elif isinstance(body, bytes):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(message_body=body, encode_chunked=chunked)  # type: ignore[arg-type]
        return Answer(connection.getresponse())
    finally:
        connection.close()


def assert_enveloped(answer: Answer, status: int, code: str) -> str:
    body = answer.json()
    assert answer.status == status, body
    assert set(body) == {"success", "error", "message", "code"}
    assert body["success"] is False
    assert body["code"] == code
    assert body["message"].strip()
    return str(body["message"])


def listed_keys(server: ServerProcess, token: str) -> list[str]:
    answer = exchange(
        server, "GET", f"{EXECUTION}/variables", [("Authorization", f"Bearer {token}")]
    )
    assert answer.status == 200
    return [entry["key"] for entry in answer.json()["data"]]


# Keys that look like paths


@pytest.mark.parametrize(
    "raw_key",
    [
        pytest.param("../x", id="dot-dot-slash"),
        pytest.param("a/../b", id="dot-dot-inside"),
        pytest.param("../../input", id="climbing-to-another-route"),
        pytest.param("%2E%2E%2Fx", id="encoded-dots-and-slash"),
        pytest.param("..%2F..%2Fetc%2Fpasswd", id="encoded-climb"),
        pytest.param("./x", id="dot-slash"),
    ],
)
@pytest.mark.parametrize("method", ["PUT", "GET", "DELETE"])
def test_a_key_that_climbs_out_of_its_path_is_400_invalid_key_and_reaches_nothing(
    server: ServerProcess, token: str, raw_key: str, method: str
) -> None:
    """Sent as written on the request line: neither the server nor the app normalises the
    dots away, so the request can never land on another key or route."""
    body = b'{"value": "climbed"}' if method == "PUT" else None
    headers = [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")]

    answer = exchange(server, method, f"{EXECUTION}/variables/{raw_key}", headers, body)

    assert "'..'" in assert_enveloped(answer, 400, "INVALID_KEY")
    landed = {"x", "b", "input", "etc/passwd", raw_key} & set(listed_keys(server, token))
    assert not landed


def test_a_key_that_only_looks_like_a_path_is_an_ordinary_key(
    server: ServerProcess, token: str
) -> None:
    auth = [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")]
    path = f"{EXECUTION}/variables/..etc%2Fpasswd.."

    written = exchange(server, "PUT", path, auth, b'{"value": 1}')
    read = exchange(server, "GET", path, auth)

    assert written.status == 200
    assert read.json()["data"]["key"] == "..etc/passwd.."
    assert "..etc/passwd.." in listed_keys(server, token)


# Bodies over server.maxBodySize


def test_a_body_over_the_limit_with_its_content_length_is_413(
    server: ServerProcess, token: str
) -> None:
    body = b'{"data": "' + b"a" * BODY_LIMIT + b'"}'
    headers = [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")]

    answer = exchange(server, "POST", f"{EXECUTION}/output", headers, body)

    assert str(BODY_LIMIT) in assert_enveloped(answer, 413, "BODY_TOO_LARGE")


def test_a_chunked_body_over_the_limit_without_a_content_length_is_413(
    server: ServerProcess, token: str
) -> None:
    chunks = [b'{"data": "', *([b"a" * 300] * 5), b'"}']
    headers = [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")]

    answer = exchange(server, "POST", f"{EXECUTION}/output", headers, chunks, chunked=True)

    assert_enveloped(answer, 413, "BODY_TOO_LARGE")


def test_a_chunked_body_under_the_limit_is_taken(server: ServerProcess, token: str) -> None:
    chunks = [b'{"value": ', b'{"parts": ', b"[1, 2]}", b"}"]
    headers = [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")]
    path = f"{EXECUTION}/variables/chunked"

    answer = exchange(server, "PUT", path, headers, chunks, chunked=True)

    assert answer.status == 200
    assert answer.json()["data"]["value"] == {"parts": [1, 2]}


def test_a_huge_declared_content_length_is_413_without_waiting_for_the_body(
    server: ServerProcess, token: str
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(
            f"POST {EXECUTION}/output HTTP/1.1\r\nHost: runtime\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1073741824\r\n\r\n{".encode()
        )
        answer = http.client.HTTPResponse(connection)
        answer.begin()
        payload = json.loads(answer.read())

    assert answer.status == 413
    assert payload["code"] == "BODY_TOO_LARGE"


# Headers


def test_two_authorization_headers_on_the_wire_are_401_token_invalid(
    server: ServerProcess, token: str
) -> None:
    good = ("Authorization", f"Bearer {token}")

    answer = exchange(server, "GET", f"{EXECUTION}/input", [good, good])

    assert "one Authorization header" in assert_enveloped(answer, 401, "TOKEN_INVALID")


def head_filler(size: int) -> str:
    """A header value that makes a request head of `exchange` about `size` bytes long: the
    rest of it (request line, Host, Authorization, the filler's name) is under 1 KiB."""
    return "f" * (size - 1024)


def test_a_request_head_just_under_the_servers_limit_is_served(
    server: ServerProcess, token: str
) -> None:
    headers = [("Authorization", f"Bearer {token}"), ("X-Filler", head_filler(MAX_REQUEST_HEAD))]

    answer = exchange(server, "GET", f"{EXECUTION}/variables", headers)

    assert answer.status == 200
    assert answer.json()["success"] is True


def test_a_request_head_far_over_the_servers_limit_is_refused_by_the_server_alone(
    server: ServerProcess, token: str
) -> None:
    # Past one socket read (256 KiB) beyond the limit, so no read can hold the whole head.
    size = MAX_REQUEST_HEAD + 512 * 1024
    headers = [("Authorization", f"Bearer {token}"), ("X-Filler", head_filler(size))]

    try:
        answer = exchange(server, "GET", f"{EXECUTION}/input", headers)
    except ConnectionError:
        refused_status = None  # the server closed the connection while we were still sending
    else:
        refused_status = answer.status
        assert answer.headers.get_content_type() == "text/plain"  # uvicorn's, not enveloped

    assert refused_status in (None, 400)
    assert exchange(server, "GET", "/health").status == 200
    log = server.wait_for_stderr(lambda text: "Invalid HTTP request received" in text)
    assert "Invalid HTTP request received" in log
    assert '"level":"error"' not in log


# Methods


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("TRACE", f"{EXECUTION}/input", {"GET", "OPTIONS"}),
        ("TRACE", "/health", {"GET", "OPTIONS"}),
        ("PATCH", f"{EXECUTION}/variables/k", {"GET", "PUT", "DELETE", "OPTIONS"}),
        ("HEAD", f"{EXECUTION}/context", {"GET", "OPTIONS"}),
        ("CONNECT", "/tool-actions/execute", {"POST", "OPTIONS"}),
    ],
)
def test_an_odd_method_is_405_with_the_allowed_ones(
    server: ServerProcess, token: str, method: str, path: str, allowed: set[str]
) -> None:
    answer = exchange(server, method, path, [("Authorization", f"Bearer {token}")])

    assert answer.status == 405
    assert {name.strip() for name in answer.headers["Allow"].split(",")} == allowed
    if method != "HEAD":  # a HEAD answer has no body
        assert_enveloped(answer, 405, "METHOD_NOT_ALLOWED")
