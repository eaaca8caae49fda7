"""Sending mail: the suite's one SMTP sender (stdlib smtplib on a worker thread), with STARTTLS and
authentication when configured. `make run` points it at the local sink (services.kit.mailsink) that writes every
message to var/mail/; production points it at the customer's or vendor's mail server."""
from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from services.kit import tracing
from services.kit.config import env, env_bool, env_float, env_int, env_path
from services.kit.errors import DependencyUnavailable

DEFAULT_SMTP_PORT = 8025  # the local sink of `make run`


@dataclass(frozen=True)
class SmtpSettings:
    """Where mail goes: host and port, STARTTLS, an optional login (its password read from a 0600 file), the
    sender address and how long one delivery may take."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_SMTP_PORT
    starttls: bool = False
    username: str = ""
    password_file: Path | None = None
    sender: str = "remote-support@localhost"
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls) -> "SmtpSettings":
        """RS_SMTP_HOST, RS_SMTP_PORT, RS_SMTP_STARTTLS, RS_SMTP_USERNAME, RS_SMTP_PASSWORD_FILE, RS_MAIL_FROM and
        RS_SMTP_TIMEOUT_S; a login needs STARTTLS unless the server is on loopback."""
        settings = cls(host=env("RS_SMTP_HOST", cls.host), port=env_int("RS_SMTP_PORT", cls.port),
                       starttls=env_bool("RS_SMTP_STARTTLS", cls.starttls), username=env("RS_SMTP_USERNAME", ""),
                       password_file=env_path("RS_SMTP_PASSWORD_FILE"), sender=env("RS_MAIL_FROM", cls.sender),
                       timeout_s=env_float("RS_SMTP_TIMEOUT_S", cls.timeout_s))
        if not 1 <= settings.port <= 65535:
            raise SystemExit("configuration error: RS_SMTP_PORT must be 1 to 65535")
        if settings.username and not settings.starttls and settings.host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("configuration error: RS_SMTP_USERNAME needs RS_SMTP_STARTTLS=1 for a server that "
                             "is not on loopback (the password would cross the network in clear)")
        return settings


class MailRefused(DependencyUnavailable):
    """The mail server refused this one message for good (a 5xx answer to it: an unknown recipient, an address it
    cannot carry); another message may go. Never names the recipient."""


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str
    message_id: str = ""  # "<...@...>": the same for a message sent again, so a reader can drop the copy


class Mailer:
    """Sends one message at a time per call, off the event loop; a server that does not take the message is
    DependencyUnavailable (UNAVAILABLE), naming the mail server, never the message."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    async def send(self, mail: Mail) -> None:
        # the span names the server, never the recipient or the message (a one-time code travels in it)
        with tracing.span("mail delivery", {"server.address": self.settings.host, "server.port": self.settings.port}):
            await asyncio.to_thread(self._send, mail)

    def _message(self, mail: Mail) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        if mail.message_id:
            message["Message-ID"] = mail.message_id
        message.set_content(mail.body)
        return message

    def _send(self, mail: Mail) -> None:
        s = self.settings
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout_s) as smtp:
                if s.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if s.username:
                    password = s.password_file.read_text().strip() if s.password_file else ""
                    smtp.login(s.username, password)
                smtp.send_message(self._message(mail))
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPNotSupportedError) as err:
            raise MailRefused(f"the mail server {s.host}:{s.port} refused this message for good "
                              f"({type(err).__name__})") from None
        except smtplib.SMTPResponseException as err:
            if 500 <= err.smtp_code < 600 and not isinstance(err, (smtplib.SMTPSenderRefused,
                                                                   smtplib.SMTPAuthenticationError)):
                raise MailRefused(f"the mail server {s.host}:{s.port} refused this message for good "
                                  f"(SMTP {err.smtp_code})") from None
            raise DependencyUnavailable(f"the mail server {s.host}:{s.port} did not take the message "
                                        f"(SMTP {err.smtp_code})") from None
        except (OSError, smtplib.SMTPException) as err:
            raise DependencyUnavailable(f"the mail server {s.host}:{s.port} did not take the message "
                                        f"({type(err).__name__})") from None
