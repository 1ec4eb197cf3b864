"""Stand-ins for the built-in tools' far ends, on loopback: an HTTP server playing Slack,
Discord and a webhook (each at its own secret path), and an SMTP sink (aiosmtpd).

Both record what reached them and can be told how to answer: the HTTP one with any status
and body, by hanging, or by dropping the connection; the SMTP one by refusing recipients or
the message. Timeouts are 1 s, so a hang costs one second.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from adapters.tools.builtin import BuiltinToolGateway, BuiltinToolsConfig, EmailConfig
from domain.model import ToolCall

HOST = "127.0.0.1"
TIMEOUT = 1.0
SECRET = "s3cr3t-T0K3N"
SMTP_PASSWORD = "smtp-pa55word"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int = 200
    body: str = ""
    content_type: str = "text/plain"
    behaviour: str = "answer"  # "answer", "hang" or "close"


@dataclass
class FakeHttpTool:
    """One HTTP server; `answers[path]` says how to answer each path (default: 200 "ok")."""

    base_url: str = ""
    received: list[Received] = field(default_factory=list)
    answers: dict[str, Answer] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def at(self, path: str) -> list[Received]:
        return [request for request in self.received if request.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(request.path, dict(request.headers), body))
        answer = self.answers.get(request.path, Answer(body="ok"))
        if answer.behaviour == "hang":
            await self.release.wait()
        elif answer.behaviour == "close":
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        return web.Response(
            status=answer.status, body=answer.body.encode(), content_type=answer.content_type
        )


SLACK_PATH = f"/services/T000/B000/{SECRET}"
DISCORD_PATH = f"/api/webhooks/123/{SECRET}"
WEBHOOK_PATH = f"/hook/{SECRET}"


@pytest.fixture
async def http_tool() -> AsyncIterator[FakeHttpTool]:
    tool = FakeHttpTool()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", tool.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = runner.addresses[0][1]
    tool.base_url = f"http://{HOST}:{port}"
    try:
        yield tool
    finally:
        tool.release.set()
        await runner.cleanup()


@dataclass
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


class SinkHandler:
    """Records each accepted message; refuses the recipients in `refuse` with 550, and the
    message with `data_reply` when set."""

    def __init__(self) -> None:
        self.delivered: list[Delivered] = []
        self.refuse: set[str] = set()
        self.data_reply: str | None = None
        self.rcpt_attempts: list[str] = []
        self.data_delay = 0.0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.rcpt_attempts.append(address)
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_reply is not None:
            return self.data_reply
        content = envelope.original_content or b""
        self.delivered.append(
            Delivered(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(content))
        )
        return "250 Message accepted for delivery"


@dataclass
class SmtpSink:
    port: int
    handler: SinkHandler


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    handler = SinkHandler()
    port = free_port()
    controller = Controller(handler, hostname=HOST, port=port, ready_timeout=5)
    controller.start()
    try:
        yield SmtpSink(port=port, handler=handler)
    finally:
        controller.stop()


def email_config(port: int, **overrides: Any) -> EmailConfig:
    values: dict[str, Any] = {
        "host": HOST,
        "port": port,
        "from_address": "runtime@cronium.test",
        "starttls": False,
    }
    values.update(overrides)
    return EmailConfig(**values)


def tools_config(
    http_tool: FakeHttpTool | None = None, smtp_port: int | None = None, **overrides: Any
) -> BuiltinToolsConfig:
    values: dict[str, Any] = {"timeout": TIMEOUT, "dry_run": False}
    if http_tool is not None:
        values.update(
            webhook_url=http_tool.url(WEBHOOK_PATH),
            slack_webhook_url=http_tool.url(SLACK_PATH),
            discord_webhook_url=http_tool.url(DISCORD_PATH),
        )
    if smtp_port is not None:
        values["email"] = email_config(smtp_port)
    values.update(overrides)
    return BuiltinToolsConfig(**values)


@pytest.fixture
async def open_gateway() -> AsyncIterator[Any]:
    """`await open_gateway(config)`: an opened gateway, closed at teardown."""
    opened: list[BuiltinToolGateway] = []

    async def open_one(config: BuiltinToolsConfig) -> BuiltinToolGateway:
        gateway = BuiltinToolGateway(config)
        await gateway.open()
        opened.append(gateway)
        return gateway

    yield open_one
    for gateway in opened:
        await gateway.close()


def call(tool: str, action: str, **params: Any) -> ToolCall:
    return ToolCall(
        execution_id="exec-1",
        user_id="user-1",
        tool=tool,
        action=action,
        params=params,
        request_id="req-1",
    )
