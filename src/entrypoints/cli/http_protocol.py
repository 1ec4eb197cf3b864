"""The HTTP/1.1 protocol `serve` runs: uvicorn's httptools protocol with a bounded request head.

Why this class exists: uvicorn's httptools protocol parses a request in about half the time
of its h11 one (70 to 95 µs less a request, twice the requests a second on a bare app), but
it puts no bound on a request head: httptools gathers a header of any size in memory (a
10 MB header was read whole and answered 200), and uvicorn joins the URL's pieces the same
way. h11 refuses a head past a set size. This subclass gives httptools that bound and h11's
other refusals that matter here, and keeps everything else of uvicorn's protocol.

How the head is bounded: every byte of a request head, from the first byte of a request
(the first one of a connection, or the first after the previous request's end, for
keep-alive and pipelined requests alike) to the blank line ending its headers, is counted,
and the parser is never handed more than `MAX_REQUEST_HEAD` of them: a head that has not
ended within that many bytes gets the plain 400 uvicorn answers any request it cannot parse
(status, text and closed connection as with h11; with a Content-Length where h11 sent none)
and the rest is not read. httptools tells when a head ends, not where, so the data
is cut for the parser at the first CRLF CRLF (the only way a head can end: the parser
refuses bare LF line ends) and at the end of a Content-Length body; the next request's head
then starts exactly at a cut. After a chunked body, whose end only the parser finds, data
are handed over in pieces of `CHUNKED_PIECE`, so a head that follows one in the same read
may start counting up to that many bytes late: its bound is then
`MAX_REQUEST_HEAD + CHUNKED_PIECE`, never unbounded.

A chunked body's framing (each chunk-size line with its extensions, and the trailer
fields, which httptools also gathers in memory) is bounded too: pieces in which the parser
found no chunk boundary and no body data are counted, and more than `MAX_REQUEST_HEAD` bytes
of them in a row are refused with the 400. Counted by pieces, a run of framing is refused for
sure once it is longer than `MAX_REQUEST_HEAD + 2 * CHUNKED_PIECE`.

Refusals while an earlier response is still being written (a pipelined request) wait for
that response to end, so the 400 never lands inside it; what arrives meanwhile is dropped
unread.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

# The largest request head (request line and headers, with their line ends) the server
# reads; a larger one is refused by the protocol (400) before the application sees it.
MAX_REQUEST_HEAD = 64 * 1024
# How much of a chunked body the parser gets at a time (see the module's docstring).
CHUNKED_PIECE = 16 * 1024
# What uvicorn's h11 protocol logs and answers for every request it cannot parse.
INVALID_REQUEST = "Invalid HTTP request received."
HEAD_END = b"\r\n\r\n"


class RefusedRequestError(Exception):
    """Raised inside a parser callback to stop the parser on a request h11 would refuse."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with h11's bound on the request head (see the module)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # Whether the next bytes belong to a request head, and how many of it came so far.
        self._in_head = True
        self._head_bytes = 0
        # The last bytes of a head that spans reads, for a CRLF CRLF split between them.
        self._head_tail = b""
        # Body bytes still to come of a Content-Length body; None for a chunked one.
        self._body_left: int | None = 0
        # Chunked framing bytes handed over since a chunk or body data last ended.
        self._framing_bytes = 0
        self._framing_progress = False
        # Set once a request is refused: its 400 may wait for an earlier response.
        self._refusal: str | None = None

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._refusal is not None:
            return  # refused: the rest of the connection is dropped unread
        end = len(data)
        start = 0
        view: memoryview | None = None
        while start < end:
            stop = self._piece_end(data, start, end)
            if stop < 0:
                self._refuse(INVALID_REQUEST)
                return
            chunked = not self._in_head and self._body_left is None
            if start == 0 and stop == end:
                piece: bytes | memoryview = data
            else:
                if view is None:
                    view = memoryview(data)
                piece = view[start:stop]
            self._framing_progress = False
            if not self._feed(piece):
                return
            if chunked and not self._in_head:
                self._framing_bytes = (
                    0 if self._framing_progress else self._framing_bytes + stop - start
                )
                if self._framing_bytes > MAX_REQUEST_HEAD:
                    self._refuse(INVALID_REQUEST)
                    return
            start = stop

    def _piece_end(self, data: bytes, start: int, end: int) -> int:
        """Where the next piece for the parser ends: at the end of the request head, of a
        Content-Length body, or of a chunked body's piece; -1 when the head is too large."""
        if self._in_head:
            room = MAX_REQUEST_HEAD - self._head_bytes
            stop = self._head_end(data, start, start + room)
            if stop < 0:
                if end - start > room:
                    return -1
                stop = end
                self._head_tail = (self._head_tail + data[max(start, end - 3) : end])[-3:]
            self._head_bytes += stop - start
            return stop
        if self._body_left is None:
            return min(end, start + CHUNKED_PIECE)
        # The parser ends the message on the body's last byte, so a body never has nothing
        # left here; the guard only keeps a surprise from looping forever.
        return min(end, start + self._body_left) if self._body_left > 0 else end

    def _feed(self, piece: bytes | memoryview) -> bool:
        """Hand the piece to the parser; False when the connection is refused or upgraded."""
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserUpgrade:
            # What uvicorn's protocol does; the rest of the data is not for HTTP.
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        except httptools.HttpParserError:
            self._refuse(INVALID_REQUEST)
            return False
        return True

    def _head_end(self, data: bytes, start: int, limit: int) -> int:
        """Where the head that goes on at `start` ends (just past its CRLF CRLF) if it ends
        before `limit`, else -1."""
        if self._head_tail:
            joined = self._head_tail + data[start : start + 3]
            found = joined.find(HEAD_END)
            if found >= 0:
                stop = start + found + len(HEAD_END) - len(self._head_tail)
                self._head_tail = b""
                return stop if stop <= limit else -1
        found = data.find(HEAD_END, start, limit)
        return found + len(HEAD_END) if found >= 0 else -1

    def _refuse(self, message: str) -> None:
        """Answer h11's plain 400 and close; after the responses still being written, if
        the refused request came behind them on the same connection."""
        self.logger.warning(message)
        self._refusal = message
        behind_a_response = self._in_head and (
            bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)
        )
        if behind_a_response:
            self.flow.pause_reading()
        else:
            self.send_400_response(message)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if (
            self._refusal is not None
            and not self.pipeline
            and self.cycle.response_complete
            and not self.transport.is_closing()
        ):
            self._unset_keepalive_if_required()
            self.send_400_response(self._refusal)

    # Parser callbacks

    def on_headers_complete(self) -> None:
        body_left: int | None = 0
        hosts = 0
        for name, value in self.headers:
            if name == b"content-length":
                body_left = int(value)  # digits only: the parser refuses anything else
            elif name == b"transfer-encoding":
                # The parser takes `gzip, chunked` and decodes only the chunks; h11 refuses
                # every coding but chunked, and so do we.
                if value.strip().lower() != b"chunked":
                    raise RefusedRequestError("Transfer-Encoding other than chunked")
                body_left = None
            elif name == b"host":
                hosts += 1
        # h11's rules on Host, which httptools does not check.
        if hosts > 1 or (hosts == 0 and self.parser.get_http_version() == "1.1"):
            raise RefusedRequestError("no Host or more than one")
        self._in_head = False
        self._head_tail = b""
        self._body_left = body_left
        self._framing_bytes = 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._framing_progress = True
        if self._body_left is not None:
            self._body_left -= len(body)
        super().on_body(body)

    def on_chunk_header(self) -> None:
        self._framing_progress = True

    def on_chunk_complete(self) -> None:
        self._framing_progress = True

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        self._head_tail = b""
        super().on_message_complete()
