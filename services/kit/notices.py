"""Event mails: the events that concern one user in particular, mailed to that user, at least once, from the
service's outbox (the events the feed and the SIEM read).

Each service that writes events runs one `EventMailer` when `RS_EVENT_MAILS=1` (`make run` sets it). A pass finds
the customers whose events go past what was mailed (`Outbox.behind`, on the service's `mail_cursors`), asks the
service who each event concerns (`Recipients`: the owner of the revealed or expiring entry, the reporter of the
taken incident, the opener of the closing window), asks authz where each mail goes (ResolveNotificationRecipients,
as the service's own account: the user's address, or none when the user muted that kind, is disabled or has no
address), sends them through the kit's SMTP sender and records the position mailed, in the service's own
database. So a crash or an unreachable mail server sends the unrecorded mails again, never skips one: a reader
may get a mail twice (its Message-ID is the same: drop the copy), and never misses one whose event committed.
A mail carries what the event says (who, what, when, which resource) and never a secret."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol, Sequence

from remotesupport.authz.v1 import authz_pb2, authz_pb2_grpc
from services.kit import clients, feed, names
from services.kit.clock import Clock, as_utc
from services.kit.config import env_bool, env_float, env_int
from services.kit.errors import DomainError
from services.kit.mail import Mail, Mailer, MailRefused, SmtpSettings
from services.kit.outbox import OutboxReader
from services.kit.siem import Outbox

logger = logging.getLogger(__name__)

MAX_RESOLVE = 500  # recipients in one ResolveNotificationRecipients

# kind -> (subject, first sentence, what the reader can do); {actor}, {resource}, {detail} from the event
TEXTS = {
    "LOGON_DATA_REVEALED": ("your logon data was revealed by {actor}",
                            "{actor} revealed the logon data you stored, {resource}.",
                            "If you did not expect this, check the depot's log (rsctl log list) and change the "
                            "password on the system."),
    "LOGON_DATA_EXPIRING": ("your logon data expires soon",
                            "The logon data you stored, {resource}, expires soon: {detail}.",
                            "Renew it in one step: rsctl logon extend {resource} --days 30"),
    "INCIDENT_TAKEN": ("{actor} took your incident",
                       "{actor} is now processing the incident you reported, {resource}.",
                       "The engineer may open the system's connections and read its logon data while the incident "
                       "is in process at the vendor."),
    "WEBHOOK_FAILING": ("a webhook delivery failed",
                        "A delivery to the webhook you registered was not answered with 2xx in time and is parked: "
                        "{resource} ({detail}).",
                        "Check the endpoint, then send it again: rsctl webhooks redeliver {resource}"),
    "WINDOW_CLOSING": ("your connection closes soon",
                       "The connection you opened, {resource}, closes soon: {detail}.",
                       "Give it a later end in one step: rsctl windows extend {resource} --hours 2"),
}


@dataclass(frozen=True)
class MailSettings:
    enabled: bool = False
    interval_s: float = 1.0  # how often a pass looks for events not yet mailed
    batch: int = 200  # events read at a time
    max_age_s: float = 86400.0  # an event older than this when its turn comes is news no more: not mailed

    @classmethod
    def from_env(cls) -> "MailSettings":
        settings = cls(enabled=env_bool("RS_EVENT_MAILS", False),
                       interval_s=env_float("RS_EVENT_MAILS_INTERVAL_S", 1.0),
                       batch=env_int("RS_EVENT_MAILS_BATCH", 200),
                       max_age_s=env_float("RS_EVENT_MAILS_MAX_AGE_S", 86400.0))
        if settings.interval_s <= 0 or not 1 <= settings.batch <= 1000 or settings.max_age_s <= 0:
            raise SystemExit("configuration error: RS_EVENT_MAILS_INTERVAL_S and RS_EVENT_MAILS_MAX_AGE_S must be "
                             "positive and RS_EVENT_MAILS_BATCH 1 to 1000")
        return settings


@dataclass(frozen=True)
class Notice:
    """Event `event` concerns user `user` ("users/{id}") as a mail of `kind` (a NotificationKind name without its
    prefix, a key of TEXTS)."""

    event: feed.FeedEvent
    user: str
    kind: str


class Recipients(Protocol):
    async def __call__(self, customer: str, events: Sequence[feed.FeedEvent]) -> list[Notice]:
        """Whom of the customer's `events` concern, in the events' order."""


def authz_resolver(channel, service_token: Callable[[], str], deadline_s: float
                   ) -> Callable[[list[Notice]], Awaitable[list[str]]]:
    """Each notice's address ("" for none), from authz's ResolveNotificationRecipients as this service."""
    stub = authz_pb2_grpc.AuthzServiceStub(channel)

    async def resolve(notices: list[Notice]) -> list[str]:
        out: list[str] = []
        for i in range(0, len(notices), MAX_RESOLVE):
            request = authz_pb2.ResolveNotificationRecipientsRequest(recipients=[
                authz_pb2.NotificationRecipient(user=n.user, kind=authz_pb2.NotificationKind.Value(
                    f"NOTIFICATION_KIND_{n.kind}")) for n in notices[i:i + MAX_RESOLVE]])
            response = await clients.call(stub.ResolveNotificationRecipients, request, service="authz",
                                          default_timeout=deadline_s,
                                          metadata=(("authorization", f"Bearer {service_token()}"),))
            out.extend(r.email for r in response.recipients)
        return out

    return resolve


def compose(source: str, customer: str, notice: Notice, to: str) -> Mail:
    """The mail of one notice: the event's facts and what the reader can do, no secret."""
    event = notice.event
    subject, sentence, hint = TEXTS[notice.kind]
    values = {"actor": event.actor or "the suite", "resource": event.resource, "detail": event.detail}
    message = feed.to_proto(source, customer, event)
    facts = [("What", event.type), ("When", as_utc(event.time).isoformat()), ("Who", event.actor),
             ("Resource", event.resource), ("System", event.system), ("Incident", event.incident),
             ("Detail", event.detail), ("Event", message.id)]
    if event.log_sequence:
        facts.append(("Log", f"sequence {event.log_sequence}, chain hash {event.chain_hash}"))
    body = "\n".join([sentence.format(**values), ""] + [f"  {k + ':':<10} {v}" for k, v in facts if v] + [
        "", hint.format(**values), "",
        f"You receive this mail as {notice.user} ({names.customer(customer)}). To stop mails of this kind: "
        f"rsctl notifications mute {notice.kind.lower().replace('_', '-')}"])
    return Mail(to=to, subject=f"Remote Support: {subject.format(**values)}", body=body + "\n",
                message_id=message_id(source, customer, notice))


def message_id(source: str, customer: str, notice: Notice) -> str:
    """The same for every copy of one notice's mail: a reader drops the copy."""
    event_id = feed.to_proto(source, customer, notice.event).id
    return f"<{event_id.replace('/', '.')}.{notice.user.removeprefix('users/')}@remotesupport>"


def build(settings: MailSettings, source: str, outbox: Outbox, recipients: Recipients, authz_channel,
          service_token: Callable[[], str], deadline_s: float, notifier: feed.Notifier, clock: Clock
          ) -> "EventMailer | None":
    """The service's EventMailer when `settings.enabled` (SMTP from RS_SMTP_*), else None."""
    if not settings.enabled:
        return None
    return EventMailer(source, outbox, recipients, authz_resolver(authz_channel, service_token, deadline_s),
                       Mailer(SmtpSettings.from_env()), notifier, settings, clock)


class EventMailer(OutboxReader):
    """Mails a service's events to whom they concern, at least once (the module docstring)."""

    what = "event mail"
    transient = (DomainError,)  # the mail server or authz did not answer

    def __init__(self, source: str, outbox: Outbox, recipients: Recipients,
                 resolve: Callable[[list[Notice]], Awaitable[list[str]]], mailer: Mailer, notifier: feed.Notifier,
                 settings: MailSettings, clock: Clock) -> None:
        super().__init__(outbox, notifier, settings.interval_s, settings.batch)
        self.source, self.recipients, self.resolve, self.mailer = source, recipients, resolve, mailer
        self.settings, self.clock = settings, clock

    async def outage(self, error: BaseException) -> str:
        return error.message if isinstance(error, DomainError) else type(error).__name__

    async def mail_once(self) -> int:
        """Mail every event not yet mailed; returns how many mails were sent."""
        return await self.pass_once()

    async def handle(self, customer: str, events: Sequence[feed.FeedEvent]) -> int:
        """Mail the notices of `events`; the position is recorded past each event whose mails all went (up to a
        failure, which is raised after recording what went)."""
        notices = await self.recipients(customer, events)
        addresses = await self.resolve(notices) if notices else []
        by_event: dict[int, list[tuple[Notice, str]]] = {}
        for notice, to in zip(notices, addresses):
            if to:
                by_event.setdefault(notice.event.position, []).append((notice, to))
        done, sent = None, 0
        oldest = self.clock.now() - dt.timedelta(seconds=self.settings.max_age_s)
        try:
            for event in events:
                if as_utc(event.time) < oldest:  # news no more (mails were off, or down, for that long)
                    done = event.position
                    continue
                for notice, to in by_event.get(event.position, ()):
                    try:
                        await self.mailer.send(compose(self.source, customer, notice, to))
                    except MailRefused as refused:  # this one message, for good: the others still go
                        logger.warning("event mail of %s to %s not sent: %s", message_id(self.source, customer,
                                       notice), notice.user, refused.message)
                        continue
                    sent += 1
                done = event.position
        finally:
            if done is not None:
                await asyncio.shield(self.outbox.exported(customer, done))
        return sent
