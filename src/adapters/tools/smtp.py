"""The `email` tool: one message over SMTP with the standard library, off the event loop.

`smtplib` blocks, so the whole exchange runs in a worker thread. The thread and the event
loop agree, under a lock, on the one moment that matters: whether the message was handed to
the server. Before it (connect, greeting, STARTTLS, login) a failure or the deadline means
nothing was sent, and the caller may retry; from it on (MAIL FROM onwards) an interrupted
exchange has an unknown outcome. A deadline that passes before the hand-over stops the
thread from ever sending.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from adapters.tools.params import EmailRequest


@dataclass(frozen=True, kw_only=True)
class EmailConfig:
    """The SMTP server of the `email` tool (SPEC section 6, `tools.email.*`).

    `host` unset: the tool is not configured. `from_address` unset: the username when it is
    an address, else `cronium-runtime@localhost`.
    """

    host: str | None = None
    port: int = 587
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    from_address: str | None = None
    starttls: bool = True

    @property
    def sender(self) -> str:
        if self.from_address:
            return self.from_address
        if self.username and "@" in self.username:
            return self.username
        return "cronium-runtime@localhost"


class NotSentError(Exception):
    """The exchange failed before the message was handed over: nothing was sent."""


class SentFailedError(Exception):
    """The server refused the message (sender, every recipient, or the data)."""


class OutcomeUnknownError(Exception):
    """The exchange broke after the message may have been handed over."""


@dataclass(frozen=True, kw_only=True)
class SmtpDelivery:
    refused: list[str]


def build_message(request: EmailRequest, sender: str) -> EmailMessage:
    """The message as sent: no Bcc header (bcc recipients are in the envelope only)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(request.to)
    if request.cc:
        message["Cc"] = ", ".join(request.cc)
    message["Subject"] = request.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    domain = sender.rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(request.body, subtype="html" if request.html else "plain")
    return message


class _Handover:
    """Whether the message was handed over, or the caller gave up first; one wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._abandoned = False
        self._started = False

    def start_sending(self) -> bool:
        with self._lock:
            if self._abandoned:
                return False
            self._started = True
            return True

    def abandon(self) -> bool:
        """Give up; True when sending had already started."""
        with self._lock:
            self._abandoned = True
            return self._started


def _exchange(
    config: EmailConfig,
    timeout: float,
    message: EmailMessage,
    recipients: list[str],
    handover: _Handover,
) -> SmtpDelivery:
    assert config.host is not None
    try:
        client = smtplib.SMTP(config.host, config.port, timeout=timeout)
    except (OSError, smtplib.SMTPException) as error:
        raise NotSentError(_describe(error, "the email server could not be reached")) from None
    try:
        try:
            client.ehlo()
            if config.starttls:
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if config.username:
                client.login(config.username, config.password or "")
        except smtplib.SMTPAuthenticationError:
            raise NotSentError("the email server refused the configured credentials") from None
        except (OSError, smtplib.SMTPException) as error:
            raise NotSentError(_describe(error, "the email server failed before sending")) from None
        if not handover.start_sending():
            raise NotSentError("the email server did not answer in time")
        return _hand_over(client, config.sender, message, recipients)
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


def _hand_over(
    client: smtplib.SMTP, sender: str, message: EmailMessage, recipients: list[str]
) -> SmtpDelivery:
    """MAIL FROM, RCPT TO, DATA: from here on a broken exchange has an unknown outcome."""
    try:
        refused = client.send_message(message, from_addr=sender, to_addrs=recipients)
    except smtplib.SMTPRecipientsRefused as error:
        codes = sorted({str(code) for code, _ in error.recipients.values()})
        raise SentFailedError(
            f"the email server refused every recipient (SMTP {', '.join(codes)})"
        ) from None
    except smtplib.SMTPSenderRefused as error:
        raise SentFailedError(
            f"the email server refused the sender (SMTP {error.smtp_code})"
        ) from None
    except smtplib.SMTPDataError as error:
        raise SentFailedError(
            f"the email server refused the message (SMTP {error.smtp_code})"
        ) from None
    except smtplib.SMTPResponseException as error:
        raise SentFailedError(
            f"the email server answered an error (SMTP {error.smtp_code})"
        ) from None
    except (OSError, smtplib.SMTPException) as error:
        raise OutcomeUnknownError(
            _describe(error, "the email server connection broke while sending")
        ) from None
    return SmtpDelivery(refused=sorted(refused))


def _describe(error: BaseException, what: str) -> str:
    """A message naming the kind of failure, never the host or a credential."""
    if isinstance(error, ConnectionRefusedError):
        return f"{what} (connection refused)"
    if isinstance(error, TimeoutError):
        return f"{what} (timed out)"
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{what} (SMTP {error.smtp_code})"
    return f"{what} ({type(error).__name__})"


async def send_email(config: EmailConfig, deadline: float, request: EmailRequest) -> SmtpDelivery:
    """Send one message; raises `NotSentError`, `SentFailedError`, `OutcomeUnknownError`.

    `deadline` (seconds) bounds the whole exchange as the caller sees it, and each socket
    operation.
    """
    message = build_message(request, config.sender)
    recipients = [*request.to, *request.cc, *request.bcc]
    handover = _Handover()
    work = asyncio.ensure_future(
        asyncio.to_thread(_exchange, config, deadline, message, recipients, handover)
    )
    done, _ = await asyncio.wait({work}, timeout=deadline)
    if work in done:
        return work.result()
    # The thread goes on until its socket times out; its answer is no longer wanted.
    work.add_done_callback(_discard)
    if handover.abandon():
        raise OutcomeUnknownError("the email server did not answer in time while sending")
    raise NotSentError("the email server did not answer in time")


def _discard(future: asyncio.Future[SmtpDelivery]) -> None:
    if not future.cancelled():
        future.exception()
