"""Event mailers for integration tests: a service's real EventMailer (its outbox, its recipients, authz's
ResolveNotificationRecipients as the service's own account, SMTP), mailing to the suite's sink unless told
another port; tests drive it with `mail_once()`."""
from __future__ import annotations

from email.message import EmailMessage

from services.kit import feed, notices
from services.kit.mail import Mailer, SmtpSettings


def event_mailer(suite, service: str, outbox, recipients, *, port: int | None = None) -> notices.EventMailer:
    token_file = suite.var / "secrets" / f"{service}.token"
    resolve = notices.authz_resolver(suite.channels["authz"], lambda: token_file.read_text().strip(), 5.0)
    return notices.EventMailer(service, outbox, recipients, resolve,
                               Mailer(SmtpSettings(port=port or suite.mail.port, timeout_s=2.0)), feed.Notifier(),
                               notices.MailSettings(enabled=True), suite.clock)


def body_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()
