"""The email tool against an SMTP sink (aiosmtpd) on loopback, plain SMTP."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from typing import Any

import pytest
from tool_fakes import (
    HOST,
    SMTP_PASSWORD,
    SmtpSink,
    call,
    email_config,
    free_port,
    tools_config,
)

from domain.errors import BackendUnavailableError, InvalidToolParamsError

MESSAGE = {"to": "ann@example.test", "subject": "Report", "body": "All done."}


@pytest.mark.parametrize("action", ["send_message", "send"])
async def test_a_plain_message_reaches_the_server_with_its_headers(
    smtp_sink: SmtpSink, open_gateway: Any, action: str
) -> None:
    gateway = await open_gateway(tools_config(smtp_port=smtp_sink.port))

    result = await gateway.execute(call("email", action, **MESSAGE))

    assert result.success is True
    assert result.data == {"accepted": 1, "refused": []}
    [delivered] = smtp_sink.handler.delivered
    assert delivered.mail_from == "runtime@cronium.test"
    assert delivered.rcpt_tos == ["ann@example.test"]
    message = message_from_bytes(delivered.content, policy=policy.default)
    assert message["From"] == "runtime@cronium.test"
    assert message["To"] == "ann@example.test"
    assert message["Subject"] == "Report"
    assert message["Cc"] is None and message["Bcc"] is None
    assert message.get_content_type() == "text/plain"
    assert message.get_content().strip() == "All done."


async def test_cc_and_bcc_are_in_the_envelope_and_bcc_is_in_no_header(
    smtp_sink: SmtpSink, open_gateway: Any
) -> None:
    gateway = await open_gateway(tools_config(smtp_port=smtp_sink.port))

    result = await gateway.execute(
        call(
            "email",
            "send",
            to=["ann@example.test", "bob@example.test"],
            cc="cat@example.test, dan@example.test",
            bcc=["eve@example.test"],
            subject="Hi",
            body="<p>Hello</p>",
            html=True,
        )
    )

    assert result.success is True
    [delivered] = smtp_sink.handler.delivered
    assert delivered.rcpt_tos == [
        "ann@example.test",
        "bob@example.test",
        "cat@example.test",
        "dan@example.test",
        "eve@example.test",
    ]
    message = message_from_bytes(delivered.content, policy=policy.default)
    assert message["To"] == "ann@example.test, bob@example.test"
    assert message["Cc"] == "cat@example.test, dan@example.test"
    assert message["Bcc"] is None
    assert b"eve@example.test" not in delivered.content
    assert message.get_content_type() == "text/html"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"subject": "s", "body": "b"}, "`to`"),
        ({**MESSAGE, "to": []}, "`to`"),
        ({**MESSAGE, "to": 5}, "`to`"),
        ({**MESSAGE, "to": "not-an-address"}, "`to`"),
        ({**MESSAGE, "to": "a@b@c"}, "`to`"),
        ({**MESSAGE, "to": "@example.test"}, "`to`"),
        ({**MESSAGE, "to": ["ok@example.test", 3]}, "`to[1]`"),
        ({**MESSAGE, "to": "ann@example.test\r\nBcc: x@evil.test"}, "`to`"),
        ({**MESSAGE, "cc": "x@evil.test\nSubject: spoof"}, "`cc`"),
        ({**MESSAGE, "bcc": ["ok@example.test", "nope"]}, "`bcc[1]`"),
        ({"to": "a@example.test", "body": "b"}, "`subject`"),
        ({**MESSAGE, "subject": 1}, "`subject`"),
        ({**MESSAGE, "subject": "Hi\r\nBcc: x@evil.test"}, "`subject`"),
        ({"to": "a@example.test", "subject": "s"}, "`body`"),
        ({**MESSAGE, "body": ["b"]}, "`body`"),
        ({**MESSAGE, "html": "yes"}, "`html`"),
    ],
)
async def test_a_bad_param_or_a_header_injection_is_refused_naming_the_field(
    smtp_sink: SmtpSink, open_gateway: Any, params: dict[str, Any], field: str
) -> None:
    gateway = await open_gateway(tools_config(smtp_port=smtp_sink.port))

    with pytest.raises(InvalidToolParamsError) as raised:
        await gateway.execute(call("email", "send", **params))

    assert raised.value.message.startswith("email.send needs `")
    assert field in raised.value.message
    assert "\r" not in raised.value.message and "\n" not in raised.value.message
    assert smtp_sink.handler.delivered == []
    assert smtp_sink.handler.rcpt_attempts == []


async def test_dry_run_validates_and_sends_no_mail(smtp_sink: SmtpSink, open_gateway: Any) -> None:
    gateway = await open_gateway(tools_config(smtp_port=smtp_sink.port, dry_run=True))

    result = await gateway.execute(call("email", "send", **MESSAGE))
    with pytest.raises(InvalidToolParamsError, match="`subject`"):
        await gateway.execute(call("email", "send", to="a@example.test", body="b"))

    assert result.metadata == {"dryRun": True}
    assert smtp_sink.handler.rcpt_attempts == []


async def test_nothing_listening_is_unavailable_without_the_password(open_gateway: Any) -> None:
    config = tools_config(
        email=email_config(free_port(), username="runtime", password=SMTP_PASSWORD)
    )
    gateway = await open_gateway(config)

    with pytest.raises(BackendUnavailableError) as raised:
        await gateway.execute(call("email", "send", **MESSAGE))

    assert "nothing was sent" in raised.value.message
    assert SMTP_PASSWORD not in raised.value.message and "127.0.0.1" not in raised.value.message
    assert SMTP_PASSWORD not in repr(config)


async def test_every_recipient_refused_is_tool_failed(
    smtp_sink: SmtpSink, open_gateway: Any
) -> None:
    smtp_sink.handler.refuse = {"ann@example.test"}
    gateway = await open_gateway(tools_config(smtp_port=smtp_sink.port))

    result = await gateway.execute(call("email", "send", **MESSAGE))

    assert result.success is False
    assert result.code == "TOOL_FAILED"
    assert "550" in (result.error or "")
    assert smtp_sink.handler.delivered == []


async def test_some_recipients_refused_is_success_naming_them(
    smtp_sink: SmtpSink, open_gateway: Any
) -> None:
    smtp_sink.handler.refuse = {"bob@example.test"}
    gateway = await open_gateway(tools_config(smtp_port=smtp_sink.port))

    result = await gateway.execute(
        call("email", "send", **{**MESSAGE, "to": ["ann@example.test", "bob@example.test"]})
    )

    assert result.success is True
    assert result.data == {"accepted": 1, "refused": ["bob@example.test"]}
    assert smtp_sink.handler.delivered[0].rcpt_tos == ["ann@example.test"]


async def test_a_refused_message_is_tool_failed(smtp_sink: SmtpSink, open_gateway: Any) -> None:
    smtp_sink.handler.data_reply = "554 5.7.1 rejected as spam"
    gateway = await open_gateway(tools_config(smtp_port=smtp_sink.port))

    result = await gateway.execute(call("email", "send", **MESSAGE))

    assert result.success is False
    assert result.code == "TOOL_FAILED"
    assert result.error == "the email server refused the message (SMTP 554)"


async def test_starttls_that_the_server_lacks_fails_before_sending(
    smtp_sink: SmtpSink, open_gateway: Any
) -> None:
    config = tools_config(email=email_config(smtp_sink.port, starttls=True))
    gateway = await open_gateway(config)

    with pytest.raises(BackendUnavailableError, match="nothing was sent"):
        await gateway.execute(call("email", "send", **MESSAGE))

    assert smtp_sink.handler.rcpt_attempts == []


async def test_a_server_that_never_greets_is_unavailable_and_nothing_is_sent(
    open_gateway: Any,
) -> None:
    connections: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(silent, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        gateway = await open_gateway(tools_config(email=email_config(port)))
        with pytest.raises(BackendUnavailableError, match="nothing was sent"):
            await gateway.execute(call("email", "send", **MESSAGE))
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()
    assert len(connections) == 1


async def test_a_server_silent_after_the_message_is_an_unknown_outcome(
    smtp_sink: SmtpSink, open_gateway: Any
) -> None:
    smtp_sink.handler.data_delay = 1.5
    gateway = await open_gateway(tools_config(smtp_port=smtp_sink.port))

    result = await gateway.execute(call("email", "send", **MESSAGE))

    assert result.success is False
    assert result.code == "TOOL_OUTCOME_UNKNOWN"
    assert smtp_sink.handler.rcpt_attempts == ["ann@example.test"]
