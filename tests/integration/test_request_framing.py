"""Requests whose framing is wrong or too large, on a real socket to `cronium-runtime serve`:
the server's HTTP protocol (httptools, bounded as h11 was: src/entrypoints/cli/http_protocol.py)
answers each with its plain 400 and closes, before the service sees it, and keeps serving.

Among them the ways h11 was stricter than httptools alone (the bound on the head, Host, a
coding besides chunked) and those where httptools is the stricter (h11 took Content-Length
with Transfer-Encoding, obs-fold, bare LF and control characters in a value). The exact
bound on a request head, split across reads, is tested on the protocol itself in
tests/unit/cli/test_http_protocol.py.
"""

from __future__ import annotations

import http.client
import socket
from typing import TYPE_CHECKING, BinaryIO

import pytest

from entrypoints.cli.http_protocol import INVALID_REQUEST, MAX_REQUEST_HEAD

if TYPE_CHECKING:
    from conftest import ServerProcess, StartServer

SECRET = "integration-secret-at-least-32-bytes-long"


@pytest.fixture(scope="module")
def server(start_module_server: StartServer) -> ServerProcess:
    return start_module_server(JWT_SECRET=SECRET)


class _SharedReader:
    """The connection's one buffered reader, for each HTTPResponse in turn: answers one after
    another are each read from where the previous one ended, and an answer saying
    `Connection: close` does not close it before the test has seen the end."""

    def __init__(self, reader: BinaryIO) -> None:
        self.reader = reader

    def makefile(self, *args: object, **kwargs: object) -> _SharedReader:
        return self

    def read(self, size: int = -1) -> bytes:
        return self.reader.read(size)

    def readline(self, size: int = -1) -> bytes:
        return self.reader.readline(size)

    def readinto(self, buffer: bytearray) -> int:
        return self.reader.readinto(buffer)

    def close(self) -> None:
        """The test closes the reader."""


class Answer:
    def __init__(self, answer: http.client.HTTPResponse) -> None:
        self.status = answer.status
        self.headers = answer.headers
        self.body = answer.read()


class RawConnection:
    """Bytes exactly as written, and the answers read one by one."""

    def __init__(self, server: ServerProcess) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.reader = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self) -> Answer:
        response = http.client.HTTPResponse(_SharedReader(self.reader))  # type: ignore[arg-type]
        response.begin()
        return Answer(response)

    def closed_by_server(self) -> bool:
        return self.reader.read(1) == b""

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def assert_refused_by_the_server(answer: Answer) -> None:
    """uvicorn's own answer: plain text, not the service's JSON envelope."""
    assert answer.status == 400
    assert answer.headers.get_content_type() == "text/plain"
    assert answer.body == INVALID_REQUEST.encode()
    assert answer.headers["Connection"] == "close"


def exchange(server: ServerProcess, data: bytes) -> tuple[Answer, bool]:
    """The first answer to `data`, and whether the server closed the connection after it."""
    connection = RawConnection(server)
    try:
        connection.send(data)
        answer = connection.answer()
        return answer, connection.closed_by_server()
    finally:
        connection.close()


def health(server: ServerProcess) -> int:
    answer, _ = exchange(
        server, b"GET /health HTTP/1.1\r\nHost: runtime\r\nConnection: close\r\n\r\n"
    )
    return answer.status


CHUNKED = b"Transfer-Encoding: chunked\r\n"


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(
            b"POST /health HTTP/1.1\r\nHost: runtime\r\nContent-Length: 5\r\n"
            + CHUNKED
            + b"\r\n0\r\n\r\n",
            id="content-length-and-transfer-encoding",
        ),
        pytest.param(
            b"POST /health HTTP/1.1\r\nHost: runtime\r\nContent-Length: 3\r\n"
            b"Content-Length: 4\r\n\r\nabcd",
            id="two-content-lengths",
        ),
        pytest.param(
            b"POST /health HTTP/1.1\r\nHost: runtime\r\nContent-Length: 3, 4\r\n\r\nabcd",
            id="a-content-length-list",
        ),
        pytest.param(
            b"POST /health HTTP/1.1\r\nHost: runtime\r\nTransfer-Encoding: gzip, chunked\r\n"
            b"\r\n0\r\n\r\n",
            id="a-transfer-coding-besides-chunked",
        ),
        pytest.param(
            b"POST /health HTTP/1.1\r\nHost: runtime\r\n" + CHUNKED + CHUNKED + b"\r\n0\r\n\r\n",
            id="chunked-twice",
        ),
        pytest.param(
            b"GET /health HTTP/1.1\r\nHost: runtime\r\nX-Folded: a\r\n b\r\n\r\n",
            id="obs-fold",
        ),
        pytest.param(
            b"GET /health HTTP/1.1\r\nHost: runtime\r\nX Bad: a\r\n\r\n", id="space-in-a-name"
        ),
        pytest.param(
            b"GET /health HTTP/1.1\r\nHost: runtime\r\nX-Bad : a\r\n\r\n",
            id="space-before-the-colon",
        ),
        pytest.param(
            b"GET /health HTTP/1.1\r\nHost: runtime\r\nX(Bad): a\r\n\r\n",
            id="separator-in-a-name",
        ),
        pytest.param(
            b"GET /health HTTP/1.1\r\nHost: runtime\r\nX-Bad: a\x01b\r\n\r\n",
            id="control-character-in-a-value",
        ),
        pytest.param(b"GET /health HTTP/1.1\nHost: runtime\n\n", id="bare-lf-line-ends"),
        pytest.param(b"GET /health HTTP/1.1\r\nHost: runtime\n\r\n", id="bare-lf-after-a-header"),
        pytest.param(b"GET /hea\x00lth HTTP/1.1\r\nHost: runtime\r\n\r\n", id="nul-in-the-url"),
        pytest.param(b"GET /health HTTP/1.1\r\n\r\n", id="http-1.1-without-host"),
        pytest.param(
            b"GET /health HTTP/1.1\r\nHost: runtime\r\nHost: other\r\n\r\n", id="two-hosts"
        ),
        pytest.param(
            b"POST /health HTTP/1.1\r\nHost: runtime\r\n"
            + CHUNKED
            + b"\r\nfffffffffffffffffff\r\n",
            id="chunk-size-overflow",
        ),
        pytest.param(
            b"POST /health HTTP/1.1\r\nHost: runtime\r\n" + CHUNKED + b"\r\n3 x\r\nabc\r\n",
            id="bad-character-in-a-chunk-size",
        ),
    ],
)
def test_a_badly_framed_request_gets_the_servers_plain_400_and_the_connection_closes(
    server: ServerProcess, request_bytes: bytes
) -> None:
    answer, closed = exchange(server, request_bytes)

    assert_refused_by_the_server(answer)
    assert closed
    assert health(server) == 200


def test_a_request_line_up_to_the_limit_is_served_and_one_byte_more_is_refused(
    server: ServerProcess,
) -> None:
    line_end = b" HTTP/1.1\r\nHost: runtime\r\nConnection: close\r\n\r\n"
    start = b"GET /health?padding="
    fits = start + b"a" * (MAX_REQUEST_HEAD - len(start) - len(line_end)) + line_end

    served, _ = exchange(server, fits)
    refused, closed = exchange(server, fits.replace(start, start + b"a"))

    assert served.status == 200
    assert_refused_by_the_server(refused)
    assert closed


def test_many_small_headers_within_the_limit_are_served(server: ServerProcess) -> None:
    fields = b"".join(b"X-%d: v\r\n" % number for number in range(5000))
    request_bytes = (
        b"GET /health HTTP/1.1\r\nConnection: close\r\nHost: runtime\r\n" + fields + b"\r\n"
    )
    assert len(request_bytes) <= MAX_REQUEST_HEAD

    answer, _ = exchange(server, request_bytes)

    assert answer.status == 200


def test_too_many_headers_for_the_limit_are_refused(server: ServerProcess) -> None:
    fields = b"".join(b"X-%d: v\r\n" % number for number in range(10000))
    request_bytes = b"GET /health HTTP/1.1\r\nHost: runtime\r\n" + fields + b"\r\n"
    assert MAX_REQUEST_HEAD < len(request_bytes) < 2 * MAX_REQUEST_HEAD

    try:
        answer, closed = exchange(server, request_bytes)
    except ConnectionError:
        pass  # closed while the rest was still on its way: refused unread
    else:
        assert_refused_by_the_server(answer)
        assert closed
    assert health(server) == 200


def filler_head(path: str, size: int) -> bytes:
    start = f"GET {path} HTTP/1.1\r\nHost: runtime\r\n".encode()
    filler = size - len(start) - len(b"X-Filler: \r\n\r\n")
    return start + b"X-Filler: " + b"f" * filler + b"\r\n\r\n"


def test_a_keep_alive_request_over_the_limit_is_refused_after_one_that_was_served(
    server: ServerProcess,
) -> None:
    connection = RawConnection(server)
    try:
        connection.send(filler_head("/health", MAX_REQUEST_HEAD))
        first = connection.answer()
        connection.send(filler_head("/health", MAX_REQUEST_HEAD + 1))
        second = connection.answer()
        closed = connection.closed_by_server()
    finally:
        connection.close()

    assert first.status == 200
    assert_refused_by_the_server(second)
    assert closed


def test_a_pipelined_request_over_the_limit_is_refused_after_the_answer_before_it(
    server: ServerProcess,
) -> None:
    connection = RawConnection(server)
    try:
        connection.send(
            b"GET /health HTTP/1.1\r\nHost: runtime\r\n\r\n"
            + filler_head("/health", MAX_REQUEST_HEAD + 1)
        )
        first = connection.answer()
        second = connection.answer()
        closed = connection.closed_by_server()
    finally:
        connection.close()

    assert first.status == 200
    assert first.headers.get_content_type() == "application/json"
    assert_refused_by_the_server(second)
    assert closed


def test_pipelined_requests_are_answered_in_order(server: ServerProcess) -> None:
    connection = RawConnection(server)
    try:
        connection.send(
            b"GET /health HTTP/1.1\r\nHost: runtime\r\n\r\n"
            b"GET /nowhere HTTP/1.1\r\nHost: runtime\r\n\r\n"
            + filler_head("/health", MAX_REQUEST_HEAD)
        )
        statuses = [connection.answer().status for _ in range(3)]
    finally:
        connection.close()

    assert statuses == [200, 404, 200]
