"""The bounded httptools protocol, driven byte by byte through a fake transport: which requests
reach the application, which get uvicorn's plain 400, and exactly where the bound on a request
head lies, however the bytes are split into reads (pipelined and keep-alive requests too).

Over a real socket, against the service: tests/integration/test_request_framing.py.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from entrypoints.cli.http_protocol import (
    CHUNKED_PIECE,
    INVALID_REQUEST,
    MAX_REQUEST_HEAD,
    BoundedHttpToolsProtocol,
)

Scope = dict[str, Any]


class FakeTransport(asyncio.Transport):
    """Keeps what the protocol writes; `closed` once the protocol closes it, after which the
    protocol is told the connection is lost, as a socket's transport does."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.written = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.written += data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        addresses = {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}
        return addresses.get(name, default)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading


class EchoApp:
    """Answers 200 with what it received: method, path, the X-Filler length and the body.
    While `gate` is clear, answers wait for it (a response still being written), and
    `waiting` tells that one does."""

    def __init__(self) -> None:
        self.requests: list[Scope] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Callable[..., Any], send: Any) -> None:
        self.requests.append(scope)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.waiting.set()
        await self.gate.wait()
        filler = dict(scope["headers"]).get(b"x-filler", b"")
        text = f"{scope['method']} {scope['path']} filler={len(filler)} body={body.decode()}"
        payload = text.encode()
        headers = [(b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class Answer:
    def __init__(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def answers(written: bytes) -> list[Answer]:
    """The responses in what the server wrote; each has a Content-Length."""
    found = []
    rest = bytes(written)
    while rest:
        head, _, rest = rest.partition(b"\r\n\r\n")
        status_line, *lines = head.split(b"\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers[b"content-length"])
        found.append(Answer(int(status_line.split()[1]), headers, rest[:length]))
        rest = rest[length:]
    return found


class Connection:
    """One connection to the protocol: `send` hands it reads exactly as split."""

    def __init__(self, app: EchoApp) -> None:
        config = Config(app, http=BoundedHttpToolsProtocol, lifespan="off", log_config=None)
        config.load()
        self.state = ServerState()
        self.protocol = BoundedHttpToolsProtocol(
            config, self.state, {}, _loop=asyncio.get_running_loop()
        )
        self.transport = FakeTransport(self.protocol)
        self.protocol.connection_made(self.transport)

    def send(self, *reads: bytes) -> None:
        for data in reads:
            if not self.transport.closed:
                self.protocol.data_received(data)

    async def settle(self) -> list[Answer]:
        """Lets every request in flight (and those queued behind it) finish."""
        while self.state.tasks:
            await asyncio.wait(set(self.state.tasks))
        return answers(self.transport.written)


def head(path: str = "/", *, size: int | None = None, extra: Iterable[bytes] = ()) -> bytes:
    """A GET head; with `size`, exactly that many bytes long (an X-Filler pads it)."""
    start = f"GET {path} HTTP/1.1\r\nHost: runtime\r\n".encode() + b"".join(extra)
    if size is None:
        return start + b"\r\n"
    filler = size - len(start) - len(b"X-Filler: \r\n\r\n")
    assert filler >= 0
    return start + b"X-Filler: " + b"f" * filler + b"\r\n\r\n"


def post(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: runtime\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def chunked(path: str, chunks: Iterable[bytes], *, trailer: bytes = b"") -> bytes:
    framed = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return (
        f"POST {path} HTTP/1.1\r\nHost: runtime\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        + framed
        + b"0\r\n"
        + trailer
        + b"\r\n"
    )


def split(data: bytes, *at: int) -> list[bytes]:
    """`data` cut at the given offsets: the reads the server gets."""
    bounds = [0, *at, len(data)]
    return [data[start:stop] for start, stop in itertools.pairwise(bounds)]


def assert_refused(answer: Answer) -> None:
    assert answer.status == 400
    assert answer.headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert answer.headers[b"connection"] == b"close"
    assert answer.body == INVALID_REQUEST.encode()


@pytest.fixture
def app() -> EchoApp:
    return EchoApp()


# --- the bound on a request head ---------------------------------------------------------


@pytest.mark.parametrize(
    "cuts",
    [
        pytest.param((), id="one-read"),
        pytest.param((MAX_REQUEST_HEAD - 1,), id="last-byte-alone"),
        pytest.param((MAX_REQUEST_HEAD - 2,), id="cr-lf-split"),
        pytest.param((MAX_REQUEST_HEAD - 3,), id="crlf-crlf-split-in-the-middle"),
        pytest.param((MAX_REQUEST_HEAD - 4, MAX_REQUEST_HEAD - 1), id="three-reads"),
        pytest.param(tuple(range(1000, MAX_REQUEST_HEAD, 1000)), id="many-reads"),
    ],
)
async def test_a_head_of_exactly_the_limit_reaches_the_app(
    app: EchoApp, cuts: tuple[int, ...]
) -> None:
    connection = Connection(app)

    connection.send(*split(head("/ok", size=MAX_REQUEST_HEAD), *cuts))
    [answer] = await connection.settle()

    assert answer.status == 200
    assert answer.body.startswith(b"GET /ok filler=")
    assert not connection.transport.closed


@pytest.mark.parametrize(
    "cuts",
    [
        pytest.param((), id="one-read"),
        pytest.param((MAX_REQUEST_HEAD,), id="end-in-the-next-read"),
        pytest.param((MAX_REQUEST_HEAD - 2,), id="crlf-crlf-split"),
        pytest.param((MAX_REQUEST_HEAD - 1, MAX_REQUEST_HEAD + 1), id="three-reads"),
    ],
)
async def test_a_head_one_byte_over_the_limit_gets_the_plain_400_and_never_reaches_the_app(
    app: EchoApp, cuts: tuple[int, ...]
) -> None:
    connection = Connection(app)

    connection.send(*split(head("/over", size=MAX_REQUEST_HEAD + 1), *cuts))
    [answer] = await connection.settle()

    assert_refused(answer)
    assert connection.transport.closed
    assert app.requests == []


async def test_an_endless_head_is_refused_once_it_passes_the_limit_without_reading_on(
    app: EchoApp,
) -> None:
    connection = Connection(app)
    endless = b"GET / HTTP/1.1\r\nHost: runtime\r\nX-Filler: " + b"f" * (10 * 1024 * 1024)

    connection.send(endless[: MAX_REQUEST_HEAD + 1])

    assert connection.transport.closed  # refused at the first byte past the limit
    connection.send(endless[MAX_REQUEST_HEAD + 1 :])  # whatever comes next is not read
    [answer] = await connection.settle()
    assert_refused(answer)


async def test_a_long_request_line_counts_against_the_head(app: EchoApp) -> None:
    line_end = b" HTTP/1.1\r\nHost: runtime\r\n\r\n"
    fits = b"GET /q?" + b"a" * (MAX_REQUEST_HEAD - len(b"GET /q?") - len(line_end)) + line_end
    too_long = fits.replace(b"/q?", b"/q?a")
    served, refused = Connection(app), Connection(app)

    served.send(fits)
    refused.send(too_long)

    assert (await served.settle())[0].status == 200
    assert_refused((await refused.settle())[0])


async def test_a_keep_alive_request_gets_the_whole_limit_again_and_no_more(app: EchoApp) -> None:
    connection = Connection(app)

    connection.send(head("/first", size=MAX_REQUEST_HEAD))
    await connection.settle()
    connection.send(head("/second", size=MAX_REQUEST_HEAD))
    await connection.settle()
    connection.send(head("/third", size=MAX_REQUEST_HEAD + 1))
    first, second, third = await connection.settle()

    assert first.status == second.status == 200
    assert second.body.startswith(b"GET /second")
    assert_refused(third)
    assert [scope["path"] for scope in app.requests] == ["/first", "/second"]


@pytest.mark.parametrize(
    "before",
    [
        pytest.param(head("/first"), id="after-a-get"),
        pytest.param(post("/first", b"hello"), id="after-a-content-length-body"),
        pytest.param(chunked("/first", [b"hel", b"lo"]), id="after-a-chunked-body"),
    ],
)
@pytest.mark.parametrize(
    ("size", "served"), [(MAX_REQUEST_HEAD, True), (MAX_REQUEST_HEAD + CHUNKED_PIECE + 1, False)]
)
async def test_a_pipelined_head_is_bounded_from_its_own_first_byte(
    app: EchoApp, before: bytes, size: int, *, served: bool
) -> None:
    """In the same read as the request before it: a head of exactly the limit is served
    behind any request; one over it is refused (right at the limit, as below, except behind
    a chunked body, where it may count up to CHUNKED_PIECE late)."""
    connection = Connection(app)

    connection.send(before + head("/second", size=size))
    first, second = await connection.settle()

    assert first.status == 200
    assert first.body.split()[1] == b"/first"
    if served:
        assert second.status == 200
        assert second.body.startswith(b"GET /second")
    else:
        assert_refused(second)


@pytest.mark.parametrize(
    "before",
    [
        pytest.param(head("/first"), id="after-a-get"),
        pytest.param(post("/first", b"hello"), id="after-a-content-length-body"),
    ],
)
async def test_a_pipelined_head_one_byte_over_the_limit_is_refused(
    app: EchoApp, before: bytes
) -> None:
    connection = Connection(app)

    connection.send(before + head("/second", size=MAX_REQUEST_HEAD + 1))
    first, second = await connection.settle()

    assert first.status == 200
    assert_refused(second)
    assert [scope["path"] for scope in app.requests] == ["/first"]


async def test_a_refusal_behind_a_response_still_being_written_comes_after_it(
    app: EchoApp,
) -> None:
    connection = Connection(app)
    app.gate.clear()

    connection.send(head("/slow") + head("/second", size=MAX_REQUEST_HEAD + 1))
    await asyncio.wait_for(app.waiting.wait(), timeout=5)

    assert connection.transport.written == b""  # nothing cuts into the pending answer
    connection.send(head("/third"))  # read no more: the connection ends with the 400
    app.gate.set()
    first, second = await connection.settle()
    assert first.status == 200
    assert first.body.startswith(b"GET /slow")
    assert_refused(second)
    assert connection.transport.closed
    assert [scope["path"] for scope in app.requests] == ["/slow"]


# --- chunked bodies ------------------------------------------------------------------------


async def test_a_chunked_body_in_many_small_chunks_is_taken(app: EchoApp) -> None:
    """Its framing adds up to more than the head limit, but no single line is long."""
    chunks = [b"x"] * (MAX_REQUEST_HEAD // 4)
    connection = Connection(app)

    connection.send(chunked("/many", chunks))
    [answer] = await connection.settle()

    assert answer.status == 200
    assert answer.body.endswith(b"body=" + b"x" * len(chunks))


# Counted by pieces (see the module under test), a run of framing is refused for sure past
# this length.
FRAMING_BOUND = MAX_REQUEST_HEAD + 2 * CHUNKED_PIECE


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param(b"0" * FRAMING_BOUND + b"1\r\nx\r\n0\r\n\r\n", id="chunk-size-line"),
        pytest.param(b"1;e=" + b"e" * FRAMING_BOUND + b"\r\nx\r\n0\r\n\r\n", id="extension"),
        pytest.param(b"0\r\nX-Trailer: " + b"t" * FRAMING_BOUND + b"\r\n\r\n", id="trailer"),
    ],
)
async def test_an_endless_chunk_line_or_trailer_is_refused(app: EchoApp, framing: bytes) -> None:
    body_head = b"POST /c HTTP/1.1\r\nHost: runtime\r\nTransfer-Encoding: chunked\r\n\r\n"
    connection = Connection(app)

    connection.send(body_head, *split(framing, *range(4096, len(framing), 4096)))
    answered = await connection.settle()

    assert_refused(answered[-1])
    assert connection.transport.closed


# --- what h11 refused and httptools alone would not --------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: runtime\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"0\r\n\r\n",
            id="a-coding-besides-chunked",
        ),
        pytest.param(b"GET / HTTP/1.1\r\n\r\n", id="http-1.1-without-host"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", id="two-hosts"),
    ],
)
async def test_a_request_h11_refused_gets_the_plain_400(app: EchoApp, request_bytes: bytes) -> None:
    connection = Connection(app)

    connection.send(request_bytes)
    [answer] = await connection.settle()

    assert_refused(answer)
    assert app.requests == []


async def test_an_http_1_0_request_needs_no_host(app: EchoApp) -> None:
    connection = Connection(app)

    connection.send(b"GET /old HTTP/1.0\r\n\r\n")
    [answer] = await connection.settle()

    assert answer.status == 200
    assert answer.body.startswith(b"GET /old")
