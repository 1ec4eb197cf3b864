"""Validation of the built-in tools' params (SPEC section 4's table).

Each validator takes the script's params and answers what will be sent, or raises
`InvalidToolParamsError` naming the field. Params the table does not list are ignored (the
helpers may send more than a tool reads); an optional param given as `null` counts as
absent. Messages never repeat the script's values (they may hold anything, CR/LF included).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.errors import InvalidToolParamsError

# A header name is an RFC 9110 token.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

# Headers a script may not set on a webhook call: the body is always JSON, and framing,
# routing and connection handling are the runtime's.
RESERVED_WEBHOOK_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)


def _fail(
    tool: str, action: str, field: str, expected: str, detail: str = ""
) -> InvalidToolParamsError:
    suffix = f": {detail}" if detail else ""
    return InvalidToolParamsError(f"{tool}.{action} needs `{field}` ({expected}){suffix}")


def _has_line_break(value: str) -> bool:
    return "\r" in value or "\n" in value or "\x00" in value


class _Fields:
    """Reads one call's params, failing with the tool's and action's names."""

    def __init__(self, tool: str, action: str, params: Mapping[str, Any]) -> None:
        self.tool = tool
        self.action = action
        self.params = params

    def fail(self, field: str, expected: str, detail: str = "") -> InvalidToolParamsError:
        return _fail(self.tool, self.action, field, expected, detail)

    def string(self, field: str, *, required: bool, non_empty: bool = False) -> str | None:
        value = self.params.get(field)
        expected = "a non-empty string" if non_empty else "a string"
        if value is None:
            if required:
                raise self.fail(field, expected)
            return None
        if not isinstance(value, str) or (non_empty and not value.strip()):
            raise self.fail(field, expected)
        return value

    def single_line(self, field: str, *, required: bool, non_empty: bool = False) -> str | None:
        value = self.string(field, required=required, non_empty=non_empty)
        if value is not None and _has_line_break(value):
            raise self.fail(field, "a string", "line breaks are not allowed")
        return value

    def objects(self, field: str) -> list[dict[str, Any]] | None:
        value = self.params.get(field)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self.fail(field, "a list of objects")
        return value

    def boolean(self, field: str) -> bool | None:
        value = self.params.get(field)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self.fail(field, "true or false")
        return value

    def addresses(self, field: str, *, required: bool) -> list[str]:
        expected = "an address or a list of addresses"
        value = self.params.get(field)
        if value is None:
            if required:
                raise self.fail(field, expected)
            return []
        if isinstance(value, str):
            items: list[Any] = value.split(",")
            names = [field] * len(items)
        elif isinstance(value, list):
            items = value
            names = [f"{field}[{index}]" for index in range(len(items))]
        else:
            raise self.fail(field, expected)
        found: list[str] = []
        for name, item in zip(names, items, strict=True):
            if not isinstance(item, str):
                raise self.fail(field, expected, f"`{name}` is not a string")
            address = item.strip()
            if not address and isinstance(value, str):
                continue  # "a@x.org, " : a trailing comma
            if not looks_like_address(address):
                raise self.fail(field, expected, f"`{name}` is not an email address")
            found.append(address)
        if required and not found:
            raise self.fail(field, expected)
        return found


def looks_like_address(value: str) -> bool:
    """`local@domain`: one `@` with text on both sides, no spaces, no line breaks, nothing
    that would end or split a header (`<>,;:"()[]\\`)."""
    if _has_line_break(value) or any(char.isspace() for char in value):
        return False
    if any(char in value for char in '<>,;:"()[]\\'):
        return False
    local, at, domain = value.partition("@")
    return bool(at) and bool(local) and bool(domain) and "@" not in domain


@dataclass(frozen=True, kw_only=True)
class WebhookRequest:
    body: Any
    headers: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class EmailRequest:
    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject: str
    body: str
    html: bool


def webhook_request(action: str, params: Mapping[str, Any]) -> WebhookRequest:
    fields = _Fields("webhook", action, params)
    if "body" not in params:
        raise fields.fail("body", "any JSON")
    raw_headers = params.get("headers")
    headers: dict[str, str] = {}
    if raw_headers is not None:
        if not isinstance(raw_headers, dict):
            raise fields.fail("headers", "an object of strings")
        for name, value in raw_headers.items():
            if not isinstance(name, str) or not _TOKEN.match(name):
                raise fields.fail("headers", "an object of strings", "a header name is invalid")
            field = f"headers.{name}"
            if not isinstance(value, str):
                raise fields.fail(field, "a string")
            if _has_line_break(value):
                raise fields.fail(field, "a string", "line breaks are not allowed")
            if name.lower() in RESERVED_WEBHOOK_HEADERS:
                raise fields.fail(
                    "headers", "an object of strings", f"`{name}` is set by the runtime"
                )
            headers[name] = value
    return WebhookRequest(body=params["body"], headers=headers)


def slack_payload(action: str, params: Mapping[str, Any]) -> dict[str, Any]:
    fields = _Fields("slack", action, params)
    payload: dict[str, Any] = {"text": fields.string("text", required=True, non_empty=True)}
    for name in ("channel", "username", "icon_emoji", "icon_url"):
        value = fields.string(name, required=False)
        if value is not None:
            payload[name] = value
    blocks = fields.objects("blocks")
    if blocks is not None:
        payload["blocks"] = blocks
    return payload


def discord_payload(action: str, params: Mapping[str, Any]) -> dict[str, Any]:
    fields = _Fields("discord", action, params)
    payload: dict[str, Any] = {"content": fields.string("content", required=True, non_empty=True)}
    username = fields.string("username", required=False)
    if username is not None:
        payload["username"] = username
    embeds = fields.objects("embeds")
    if embeds is not None:
        payload["embeds"] = embeds
    channel = params.get("channelId")
    if channel is not None and not isinstance(channel, (str, int)):
        raise fields.fail("channelId", "a string")
    return payload  # channelId: accepted, ignored (the webhook fixes the channel)


def email_request(action: str, params: Mapping[str, Any]) -> EmailRequest:
    fields = _Fields("email", action, params)
    to = fields.addresses("to", required=True)
    cc = fields.addresses("cc", required=False)
    bcc = fields.addresses("bcc", required=False)
    subject = fields.single_line("subject", required=True)
    body = fields.string("body", required=True)
    html = fields.boolean("html")
    assert subject is not None and body is not None  # required
    return EmailRequest(to=to, cc=cc, bcc=bcc, subject=subject, body=body, html=bool(html))
