"""The event feed, the SIEM export, the event mails and a webhook across crashes, on the real processes: the depot
is killed with SIGKILL while writes commit (the keeper stores entries, the engineer processing an incident of the
system reveals them), a reader follows the gateway's feed, the depot exports to a SIEM (a TCP receiver), mails the
keeper of each revealed entry (the supervisor's mail sink, var/mail/) and posts the creations and reveals to a
webhook (an HTTP receiver), ten times; the reader reconnects from its cursor each time. At the end the depot
events the reader read are exactly the depot's log (every committed event delivered, once, in order, none the log
does not hold), the SIEM holds every event of the log at least once and nothing else, the keeper's mails are one
(by Message-ID) for each reveal in the log, and no other, and the webhook received every creation and reveal of the
log at least once, signed, and nothing else."""
from __future__ import annotations

import datetime as dt
import json
import random
import signal
import threading
import time

import grpc

from remotesupport.authz.v1 import authz_pb2 as az
from remotesupport.common.v1 import events_pb2 as ep
from remotesupport.connections.v1 import connections_pb2 as cn
from remotesupport.depot.v1 import depot_pb2 as dp
from remotesupport.gateway.v1 import gateway_pb2 as gpb
from remotesupport.gateway.v1 import gateway_pb2_grpc
import pytest

from services.kit.mailsink import read_messages
from tests.conftest import BACKENDS, require_backend
from tests.e2e.conftest import E2E
from tests.e2e.test_e2e_seed import CUSTOMER, Actors, email, md, ts
from tests.siem_receiver import ThreadedReceiver
from tests.webhook_receiver import Receiver
from tests.webhook_signature import verify

ROUNDS = 10
DEPOT_TYPES = [v for n, v in ep.EventType.items() if n.startswith("EVENT_TYPE_LOGON_DATA_")]


@pytest.fixture(scope="module", params=BACKENDS)
def e2e(request, tmp_path_factory):
    """The suite of tests/e2e/conftest.py, exporting to its own SIEM (`e2e.siem`) every 0.2 s."""
    require_backend(request.param)
    siem = ThreadedReceiver()
    siem.start_in_thread()
    receiver = Receiver().start()
    suite = E2E(request.param, tmp_path_factory.mktemp(f"e2e-events-{request.param}"),
                {"RS_SIEM_ADDRESS": f"127.0.0.1:{siem.port}", "RS_SIEM_INTERVAL_S": "0.2",
                 "RS_EVENT_MAILS_INTERVAL_S": "0.2", "RS_WEBHOOK_TIMEOUT_S": "2", "RS_WEBHOOK_BACKOFF_S": "0.5",
                 "RS_WEBHOOK_BACKOFF_MAX_S": "1", "RS_WEBHOOK_INTERVAL_S": "0.2"})
    suite.siem, suite.receiver = siem, receiver
    try:
        suite.start()
        yield suite
    finally:
        suite.stop()
        siem.stop_thread()
        receiver.stop()


class Reader(threading.Thread):
    """Follows the gateway's feed of the customer's depot events, reconnecting from its cursor when it ends."""

    def __init__(self, channel: grpc.Channel, token: str) -> None:
        super().__init__(daemon=True)
        self.stub = gateway_pb2_grpc.RemoteSupportServiceStub(channel)
        self.token = token
        self.events: list[ep.Event] = []
        self.cursor = ""
        self.reconnects = 0
        self.opened = threading.Event()
        self.stopping = False
        self._call = None

    def run(self) -> None:
        while not self.stopping:
            self._call = self.stub.WatchEvents(gpb.WatchEventsRequest(
                parent=f"customers/{CUSTOMER}", types=DEPOT_TYPES, cursor=self.cursor), metadata=md(self.token))
            try:
                for response in self._call:
                    self.events.extend(response.events)
                    self.cursor = response.cursor
                    self.opened.set()
            except grpc.RpcError as err:
                assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), err
                self.reconnects += 1
                time.sleep(0.2)

    def stop(self) -> None:
        self.stopping = True
        if self._call is not None:
            self._call.cancel()


def writes(a: Actors, tokens: tuple[str, str], system: str, stop: threading.Event, done: list) -> None:
    """Create (the keeper) and reveal (the engineer) entries until `stop`; a call the kill interrupts may or may
    not have committed."""
    token, engineer = tokens
    while not stop.is_set():
        try:
            entry = a.depot.CreateLogonData(dp.CreateLogonDataRequest(parent=system, logon_data=dp.LogonData(
                kind=dp.LOGON_DATA_KIND_SYSTEM_USER, user_name="SUPPORT1", client="001",
                expire_time=ts(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3))), secret="kill-9-secret"),
                metadata=md(token), timeout=5).logon_data
            a.depot.RevealLogonData(dp.RevealLogonDataRequest(name=entry.name), metadata=md(engineer), timeout=5)
            done.append(entry.name)
        except grpc.RpcError:
            time.sleep(0.05)


class _Once:
    """A stop flag that lets `writes` try exactly once."""

    def __init__(self) -> None:
        self.tried = False

    def is_set(self) -> bool:
        tried, self.tried = self.tried, True
        return tried


def log_events(a: Actors, token: str) -> list[dp.LogEvent]:
    out, page = [], ""
    while True:
        response = a.depot.ListLogEvents(dp.ListLogEventsRequest(parent=f"customers/{CUSTOMER}", page_size=1000,
                                                                 page_token=page), metadata=md(token))
        out.extend(response.events)
        page = response.next_page_token
        if not page:
            return out


def test_every_committed_depot_event_is_delivered_across_kill_9(e2e):
    siem = e2e.siem
    a = Actors(e2e)
    admin = e2e.admin_token
    a.authz.CreateCustomer(az.CreateCustomerRequest(customer=az.Customer(customer_number=CUSTOMER,
                                                                         display_name="ACME Corp")), metadata=md(admin))
    useradmin = a.create_user(admin, "S0004711001", [az.AUTHORIZATION_USER_ADMIN])
    basis = a.create_user(useradmin, "S0004711002", [az.AUTHORIZATION_MAINTAIN_SYSTEM_DATA])
    keeper = a.create_user(useradmin, "S0004711004", [az.AUTHORIZATION_EDIT_MY_LOGIN_DATA])
    reporter = a.create_user(useradmin, "S0004711005", [az.AUTHORIZATION_CREATE_INCIDENTS])
    engineer = a.create_user(admin, "eng.kill", [], engineer=True)
    system = a.conn.CreateSystem(cn.CreateSystemRequest(parent=f"customers/{CUSTOMER}", system=cn.System(
        installation_number="20047110", system_id="PRD", system_number="310000471100", description="ERP")),
        metadata=md(basis)).system.name
    incident = a.conn.CreateIncident(cn.CreateIncidentRequest(parent=f"customers/{CUSTOMER}", incident=cn.Incident(
        system=system, title="Kill nine", priority=cn.INCIDENT_PRIORITY_HIGH)), metadata=md(reporter)).incident
    a.conn.AssignProcessor(cn.AssignProcessorRequest(name=incident.name), metadata=md(engineer))
    hook = a.depot.CreateWebhook(dp.CreateWebhookRequest(parent=f"customers/{CUSTOMER}", webhook=dp.Webhook(
        url=e2e.receiver.url, event_types=[ep.EVENT_TYPE_LOGON_DATA_CREATED, ep.EVENT_TYPE_LOGON_DATA_REVEALED])),
        metadata=md(useradmin))
    reader = Reader(e2e.channel, keeper)
    reader.start()
    try:
        log = _rounds(e2e, a, (keeper, engineer), system, reader)
    finally:
        reader.stop()
        reader.join(10)
    exported = {(e.sequence, e.hash) for e in log}
    deadline = time.monotonic() + 30
    while _siem_depot(siem) != exported and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _siem_depot(siem) == exported  # every event at least once, none the log does not hold
    sent = [m for m in siem.messages if m["id"].startswith("depot/")]
    print(f"SIEM: {len(sent)} depot messages for {len(log)} events ({len(sent) - len(log)} sent again after a kill)")

    reveals = {f"<depot.customers.{CUSTOMER}.events.{e.sequence}.S0004711004@remotesupport>" for e in log
               if e.action == dp.LOG_ACTION_REVEAL and e.outcome == dp.LOG_OUTCOME_SUCCESS}
    deadline = time.monotonic() + 30
    while _mailed(e2e) != reveals and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _mailed(e2e) == reveals and reveals  # every committed reveal mailed to the keeper, nothing else
    mails = [m for m in read_messages(e2e.mail_dir, email("S0004711004")) if m["Message-ID"]]
    assert all("kill-9-secret" not in m.as_string() for m in mails)
    print(f"mail: {len(mails)} messages for {len(reveals)} reveals ({len(mails) - len(reveals)} sent again)")

    hooked = {f"depot/customers/{CUSTOMER}/events/{e.sequence}" for e in log
              if e.action == dp.LOG_ACTION_CREATE or (e.action == dp.LOG_ACTION_REVEAL
                                                      and e.outcome == dp.LOG_OUTCOME_SUCCESS)}
    deadline = time.monotonic() + 60  # a delivery leased by a killed depot is taken again after its lease
    while _hooked(e2e) != hooked and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _hooked(e2e) == hooked and hooked  # every committed event delivered at least once, nothing else
    received = e2e.receiver.answered()
    for request in received:
        verify(hook.secret, request.headers["RemoteSupport-Signature"], request.body, now=int(time.time()))
        assert b"kill-9-secret" not in request.body
    ids = [r.headers["RemoteSupport-Delivery"] for r in received]
    print(f"webhook: {len(received)} deliveries for {len(hooked)} events ({len(ids) - len(set(ids))} sent again)")


def _hooked(e2e) -> set[str]:
    return {json.loads(r.body)["id"] for r in e2e.receiver.answered()}


def _mailed(e2e) -> set[str]:
    return {m["Message-ID"] for m in read_messages(e2e.mail_dir, email("S0004711004")) if m["Message-ID"]}


def _siem_depot(siem) -> set[tuple[int, str]]:
    return {(int(m["logSequence"]), m["chainHash"]) for m in list(siem.messages) if m["id"].startswith("depot/")}


def _rounds(e2e, a: Actors, tokens: tuple[str, str], system: str, reader: Reader) -> list[dp.LogEvent]:
    assert reader.opened.wait(30), "the feed did not open"
    supervisor, done = e2e.supervisor, []
    rng = random.Random(17)
    for _ in range(ROUNDS):
        stop = threading.Event()
        writer = threading.Thread(target=writes, args=(a, tokens, system, stop, done), daemon=True)
        writer.start()
        before, deadline = len(done), time.monotonic() + 30
        while len(done) == before and time.monotonic() < deadline:  # the restarted depot answers again
            time.sleep(0.05)
        time.sleep(rng.uniform(0.05, 0.4))
        supervisor.stop("depot", sig=signal.SIGKILL)  # kill -9, between commits and their delivery
        stop.set()
        writer.join(30)
        supervisor.start(("depot",), timeout=60)
    deadline = time.monotonic() + 30  # one more complete write once the depot is back (its channel may back off)
    before = len(done)
    while len(done) == before and time.monotonic() < deadline:
        writes(a, tokens, system, _Once(), done)
    log = log_events(a, tokens[0])
    deadline = time.monotonic() + 30
    while (not reader.events or reader.events[-1].log_sequence < log[-1].sequence) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(done) > ROUNDS, f"only {len(done)} create-and-reveal pairs completed"
    assert reader.reconnects >= ROUNDS, reader.reconnects
    assert [(e.log_sequence, e.chain_hash) for e in reader.events] == [(e.sequence, e.hash) for e in log]
    assert [e.log_sequence for e in reader.events] == list(range(1, len(log) + 1))
    assert all("kill-9-secret" not in repr(e) for e in reader.events)
    print(f"kill -9 x{ROUNDS}: {len(log)} log events, all delivered once; {len(done)} complete writes, "
          f"{reader.reconnects} reconnects")
    return log
