"""The built-in tools of SPEC section 4: webhook, Slack, Discord, email (SMTP) and log.

Outcome rules (SPEC section 4):

- params that do not fit the tool raise `InvalidToolParamsError` naming the field; an unknown
  tool, an unknown action or an unconfigured tool raise `ToolNotFoundError`, except in dry
  run (below);
- a failure known to have happened before anything was sent (connection refused, DNS, TLS
  handshake, SMTP connect/STARTTLS/login) raises `BackendUnavailableError` saying nothing
  was sent: a retry is safe;
- once the request may have reached the tool, every answer is a `ToolResult`: success with
  the tool's reply as `data`; `code="TOOL_FAILED"` when the tool said no (HTTP 3xx/4xx, an
  SMTP refusal); `code="TOOL_OUTCOME_UNKNOWN"` for a timeout, a reset or a 5xx after sending.

Dry run: a known tool's call is validated (configured or not) and answered
`{success: true, data: null, metadata: {dryRun: true}}`; an unknown tool or action has no
validator, so nothing is validated and it is answered the same. Nothing is ever sent.

The `log` tool takes any action and any params, sends nothing and answers
`metadata: {logged: true}` (in dry run too): the call is recorded by `LoggedToolGateway`.

Tool and action names are matched exactly (they are lower-case in the table).

Credentials: webhook URLs (a Slack or Discord webhook URL is a credential) and the SMTP
password appear in no result and no error; a tool's reply is quoted only after every
configured secret is masked out of it.

HTTP details: one `ClientSession` (`open()`/`close()`), no redirects followed (a 3xx is
TOOL_FAILED), and no keep-alive (`force_close`): a pooled connection the server has closed
would turn a call that never left into an unknown outcome.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp
import msgspec

from adapters.tools.params import (
    discord_payload,
    email_request,
    slack_payload,
    webhook_request,
)
from adapters.tools.smtp import (
    EmailConfig,
    NotSentError,
    OutcomeUnknownError,
    SentFailedError,
    send_email,
)
from application.ports import ToolGateway
from domain.errors import BackendUnavailableError, ToolNotFoundError
from domain.model import ToolCall, ToolResult

__all__ = ["BuiltinToolGateway", "BuiltinToolsConfig", "EmailConfig"]

TOOL_FAILED = "TOOL_FAILED"
TOOL_OUTCOME_UNKNOWN = "TOOL_OUTCOME_UNKNOWN"
MAX_REPLY_BYTES = 64 * 1024
MAX_ERROR_TEXT = 300
USER_AGENT = "cronium-runtime"

ACTIONS: dict[str, frozenset[str]] = {
    "webhook": frozenset({"post", "send"}),
    "slack": frozenset({"send_message"}),
    "discord": frozenset({"send_message"}),
    "email": frozenset({"send_message", "send"}),
}

_VALIDATORS: dict[str, Callable[[str, Mapping[str, Any]], object]] = {
    "webhook": webhook_request,
    "slack": slack_payload,
    "discord": discord_payload,
    "email": email_request,
}


@dataclass(frozen=True, kw_only=True)
class BuiltinToolsConfig:
    """`tools.*` of SPEC section 6. An unset URL (or email host) leaves that tool out."""

    webhook_url: str | None = field(default=None, repr=False)
    slack_webhook_url: str | None = field(default=None, repr=False)
    discord_webhook_url: str | None = field(default=None, repr=False)
    email: EmailConfig | None = None
    timeout: float = 10.0
    dry_run: bool = False

    def configured(self, tool: str) -> bool:
        if tool == "email":
            return self.email is not None and bool(self.email.host)
        return bool(self.url(tool))

    def url(self, tool: str) -> str | None:
        return {
            "webhook": self.webhook_url,
            "slack": self.slack_webhook_url,
            "discord": self.discord_webhook_url,
        }.get(tool)

    def secrets(self) -> list[str]:
        found = [self.webhook_url, self.slack_webhook_url, self.discord_webhook_url]
        if self.email is not None:
            found.append(self.email.password)
        return [secret for secret in found if secret]


class BuiltinToolGateway(ToolGateway):
    """Runs the built-in tools with the service's own URLs and credentials."""

    def __init__(self, config: BuiltinToolsConfig) -> None:
        self._config = config
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._config.timeout),
                connector=aiohttp.TCPConnector(force_close=True),
                headers={"User-Agent": USER_AGENT},
            )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> BuiltinToolGateway:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def execute(self, call: ToolCall) -> ToolResult:
        tool, action, params = call.tool, call.action, call.params
        if tool == "log":
            return ToolResult(success=True, data=None, metadata={"logged": True})
        known = action in ACTIONS.get(tool, frozenset())
        if self._config.dry_run:
            if known:
                _VALIDATORS[tool](action, params)
            return ToolResult(success=True, data=None, metadata={"dryRun": True})
        if not known or not self._config.configured(tool):
            raise ToolNotFoundError(tool, action)
        if tool == "email":
            return await self._email(action, params)
        if tool == "webhook":
            request = webhook_request(action, params)
            return await self._post(tool, request.body, request.headers)
        payload = (
            slack_payload(action, params) if tool == "slack" else discord_payload(action, params)
        )
        return await self._post(tool, payload, {})

    async def _post(self, tool: str, body: Any, headers: dict[str, str]) -> ToolResult:
        url = self._config.url(tool)
        assert url is not None
        session = self._session
        if session is None:
            raise RuntimeError("BuiltinToolGateway.open() was not called")
        content = msgspec.json.encode(body)
        sent_headers = {**headers, "Content-Type": "application/json"}
        try:
            async with session.post(
                url, data=content, headers=sent_headers, allow_redirects=False
            ) as response:
                status, content_type = response.status, response.content_type
                reply, complete = await _read_reply(response)
        except aiohttp.ClientConnectorError as error:
            # Raised while connecting (refused, DNS, TLS handshake): no byte of the request left.
            raise BackendUnavailableError(
                f"{tool} could not be reached ({_connect_reason(error)}); nothing was sent"
            ) from None
        except aiohttp.ConnectionTimeoutError:
            raise BackendUnavailableError(
                f"{tool} could not be reached (connection timed out); nothing was sent"
            ) from None
        except aiohttp.InvalidURL:
            raise BackendUnavailableError(
                f"{tool} is configured with an invalid URL; nothing was sent"
            ) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            return ToolResult(
                success=False,
                code=TOOL_OUTCOME_UNKNOWN,
                error=f"{tool} did not answer ({_broken_reason(error)}); "
                "the request may have been delivered",
            )
        return self._answer(tool, status, reply, complete, content_type)

    def _answer(
        self, tool: str, status: int, reply: bytes, complete: bool, content_type: str
    ) -> ToolResult:
        metadata = {"status": status}
        if 200 <= status < 300:
            return ToolResult(
                success=True, data=_reply_data(reply, complete, content_type), metadata=metadata
            )
        text = self._mask(reply.decode("utf-8", errors="replace").strip())[:MAX_ERROR_TEXT]
        detail = f": {text}" if text else ""
        if status >= 500:
            return ToolResult(
                success=False,
                code=TOOL_OUTCOME_UNKNOWN,
                error=f"{tool} answered HTTP {status}{detail}; the request may have been delivered",
                metadata=metadata,
            )
        return ToolResult(
            success=False,
            code=TOOL_FAILED,
            error=f"{tool} answered HTTP {status}{detail}",
            metadata=metadata,
        )

    async def _email(self, action: str, params: Mapping[str, Any]) -> ToolResult:
        email = self._config.email
        assert email is not None
        request = email_request(action, params)
        try:
            delivery = await send_email(email, self._config.timeout, request)
        except NotSentError as error:
            raise BackendUnavailableError(f"{error}; nothing was sent") from None
        except SentFailedError as error:
            return ToolResult(success=False, code=TOOL_FAILED, error=str(error))
        except OutcomeUnknownError as error:
            return ToolResult(
                success=False,
                code=TOOL_OUTCOME_UNKNOWN,
                error=f"{error}; the message may have been delivered",
            )
        recipients = len(request.to) + len(request.cc) + len(request.bcc)
        return ToolResult(
            success=True,
            data={"accepted": recipients - len(delivery.refused), "refused": delivery.refused},
        )

    def _mask(self, text: str) -> str:
        for secret in self._config.secrets():
            text = text.replace(secret, "[redacted]")
        return text


async def _read_reply(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """Up to MAX_REPLY_BYTES of the reply; False when it was cut short or broke off.

    The status is known by now, so a reply body that breaks off does not change the outcome.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.content.iter_chunked(8192):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_REPLY_BYTES:
                return b"".join(chunks)[:MAX_REPLY_BYTES], False
    except (TimeoutError, aiohttp.ClientError, OSError):
        return b"".join(chunks), False
    return b"".join(chunks), True


def _reply_data(reply: bytes, complete: bool, content_type: str) -> Any:
    """The reply's JSON when it is JSON, else its text, or None when empty or cut short."""
    if not reply or not complete:
        return None
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            return json.loads(reply)
        except ValueError:
            pass
    return reply.decode("utf-8", errors="replace")


def _connect_reason(error: aiohttp.ClientConnectorError) -> str:
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return "name not resolved"
    if isinstance(error, aiohttp.ClientSSLError):
        return "TLS handshake failed"
    if isinstance(error.os_error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error.os_error, TimeoutError):
        return "connection timed out"
    return "connection failed"


def _broken_reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "connection closed"
    if isinstance(error, (ConnectionResetError, aiohttp.ClientOSError)):
        return "connection reset"
    return type(error).__name__
