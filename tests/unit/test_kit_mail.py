"""The suite's SMTP sender and the local sink: a message sent is the message written (0600, found by its
recipient), a mail server that does not take it is UNAVAILABLE naming the server and never the message, and the
settings refuse what cannot work."""
from __future__ import annotations

import asyncio
import stat

import grpc
import pytest

from services.kit.errors import DependencyUnavailable
from services.kit.mail import Mail, Mailer, SmtpSettings
from services.kit.mailsink import Sink, free_port, read_messages


@pytest.fixture
def sink(tmp_path):
    running = Sink(tmp_path / "mail").start()
    yield running
    running.stop()


def test_a_sent_message_is_written_once_per_recipient_as_a_0600_file(sink):
    mailer = Mailer(SmtpSettings(port=sink.port, sender="rs@example.com"))
    asyncio.run(mailer.send(Mail("a+tag@example.com", "Subject one", "Body with code ABCDE-FGHIJ")))
    asyncio.run(mailer.send(Mail("b@example.com", "Subject two", "Other body")))
    files = sorted(sink.folder.glob("*.eml"))
    assert len(files) == 2
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    (only,) = read_messages(sink.folder, "a+tag@example.com")
    assert only["Subject"] == "Subject one" and only["From"] == "rs@example.com"
    assert "ABCDE-FGHIJ" in only.get_content()
    assert [m["To"] for m in sink.messages()] == ["a+tag@example.com", "b@example.com"]
    assert read_messages(sink.folder, "tag@example.com") == []  # a suffix of another address is not it


def test_a_mail_server_that_is_not_there_is_unavailable_without_the_message():
    mailer = Mailer(SmtpSettings(port=free_port(), timeout_s=2))
    with pytest.raises(DependencyUnavailable) as caught:
        asyncio.run(mailer.send(Mail("a@example.com", "secret subject", "one-time code: SECRET-CODE")))
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert "127.0.0.1" in caught.value.message
    assert "SECRET" not in caught.value.message and "a@example.com" not in caught.value.message


@pytest.mark.parametrize("env,problem", [
    ({"RS_SMTP_PORT": "0"}, "RS_SMTP_PORT"),
    ({"RS_SMTP_PORT": "x"}, "RS_SMTP_PORT"),
    ({"RS_SMTP_HOST": "mail.example.com", "RS_SMTP_USERNAME": "rs"}, "RS_SMTP_STARTTLS"),
])
def test_settings_that_cannot_work_stop_the_service_naming_them(monkeypatch, env, problem):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as caught:
        SmtpSettings.from_env()
    assert problem in str(caught.value)


def test_settings_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RS_SMTP_HOST", "mail.example.com")
    monkeypatch.setenv("RS_SMTP_PORT", "587")
    monkeypatch.setenv("RS_SMTP_STARTTLS", "1")
    monkeypatch.setenv("RS_SMTP_USERNAME", "rs")
    monkeypatch.setenv("RS_SMTP_PASSWORD_FILE", str(tmp_path / "pw"))
    monkeypatch.setenv("RS_MAIL_FROM", "support@example.com")
    settings = SmtpSettings.from_env()
    assert (settings.host, settings.port, settings.starttls, settings.username, settings.sender) == (
        "mail.example.com", 587, True, "rs", "support@example.com")
    assert settings.password_file == tmp_path / "pw"


class _Refusing:
    """An SMTP handler that refuses one recipient for good (550) and accepts the others."""

    def __init__(self, refused: str) -> None:
        self.refused, self.accepted = refused, []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's name
        if address == self.refused:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.accepted.extend(envelope.rcpt_tos)
        return "250 OK"


def test_a_message_refused_for_good_is_mail_refused_and_the_next_one_goes():
    from aiosmtpd.controller import Controller

    from services.kit.mail import MailRefused
    handler = _Refusing("gone@example.com")
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        mailer = Mailer(SmtpSettings(port=port, timeout_s=5))
        with pytest.raises(MailRefused) as caught:
            asyncio.run(mailer.send(Mail("gone@example.com", "S", "B")))
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE and "for good" in caught.value.message
        assert "gone@example.com" not in caught.value.message  # never the recipient
        asyncio.run(mailer.send(Mail("here@example.com", "S", "B")))
        assert handler.accepted == ["here@example.com"]
    finally:
        controller.stop()
