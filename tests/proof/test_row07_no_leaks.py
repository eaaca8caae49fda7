"""Row 7: mixed calls against the four real processes (through the gateway and straight to each service), each
with a unique planted secret (logon-data secrets, passwords, one-time codes, bearer tokens) and a unique planted
user name, including denied and malformed calls. Afterwards no planted secret — nor any bearer token used, nor
any one-time code authz mailed (enrollment and reset codes, read back from the mail sink's folder, where they
belong) — is in any process's log or stdout/stderr (services logging at DEBUG), in any error a caller got
(message, ErrorInfo, BadRequest, trailers, the client's debug string), or in any database byte (SQLite files
with their WAL; PostgreSQL rows, data files, the write-ahead log written meanwhile and the server's log: authz
keeps a code's SHA-256 only). The planted user names belong in the depot's database (they are logon data) and
nowhere else: not in any log or error."""
from __future__ import annotations

import datetime as dt
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

from remotesupport.authz.v1 import authz_pb2 as az
from remotesupport.depot.v1 import depot_pb2 as dp
from remotesupport.gateway.v1 import gateway_pb2 as gw
from tests.harness import TEST_PASSWORD, email_of
from tests.proof import scan
from tests.proof.figures import size
from tests.proof.world import (SAPROUTER, SYSTEM_USER, Actors, Principal, error_text, mailed_codes, md, new_customer,
                               planted, ts)

ROW = 7
CALLS = size(300, 10_000)
WORKERS = 6


class Run:
    """The world the calls act on, and everything planted and seen."""

    def __init__(self, procs) -> None:
        self.procs = procs
        self.gateway = Actors(procs, via="gateway")
        self.direct = Actors(procs, via=None)
        self.lock = threading.Lock()
        self.secrets: set[str] = set()
        self.user_names: set[str] = set()
        self.tokens: set[str] = set()
        self.errors: list[str] = []
        self.codes: dict[str, int] = {}
        self.calls = 0
        self.entries: list[tuple[str, Principal]] = []
        self.windows = 0

    def plant(self, label: str) -> str:
        value = planted(label)
        with self.lock:
            self.secrets.add(value)
        return value

    def user_name(self) -> str:
        value = planted("user")
        with self.lock:
            self.user_names.add(value)
        return value

    def call(self, method, request, metadata, label: str):
        """One RPC; its error text is kept (for the leak check), its code counted."""
        try:
            response = method(request, metadata=metadata, timeout=30)
            code = "OK"
        except grpc.RpcError as err:
            response, code = None, err.code().name
            with self.lock:
                self.errors.append(error_text(err))
        with self.lock:
            self.calls += 1
            key = f"{label} {code}"
            self.codes[key] = self.codes.get(key, 0) + 1
        return response


def build(run: Run) -> dict:
    a = run.gateway
    c = new_customer(a)
    w = {"c": c, "other": a.user(c.number, ["EDIT_MY_LOGIN_DATA"]), "nologon": a.user(c.number, ["CREATE_INCIDENTS"]),
         "engineer": a.engineer(), "outsider": a.engineer(),
         "preparer": a.user(c.number, ["OPEN_REMOTE_CONNECTIONS", "EDIT_MY_LOGIN_DATA"])}
    incident = a.incident(c.system, c.ops)
    a.assign(incident, w["engineer"])
    w["systems"] = [a.system(c.number, c.ops, sid=f"S{i:02d}") for i in range(3)]
    for who in (c.ops, c.creator, c.edit_all, w["other"], w["nologon"], w["engineer"], w["outsider"],
                w["preparer"]):
        run.tokens.add(who.token)
    run.tokens.add(a.admin.token)
    return w


def operations(run: Run, w: dict):
    c = w["c"]

    def pick(rng, direct_share=0.25):
        return run.direct if rng.random() < direct_share else run.gateway

    def create_ok(rng):
        actors, who = pick(rng), rng.choice([c.creator, c.edit_all])
        kind = rng.choice([SYSTEM_USER, SAPROUTER])
        data = dp.LogonData(kind=kind, expire_time=ts(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=5)),
                            client="001" if kind == SYSTEM_USER else "",
                            user_name=run.user_name() if kind == SYSTEM_USER else "")
        response = run.call(actors.depot.CreateLogonData, dp.CreateLogonDataRequest(
            parent=c.system, logon_data=data, secret=run.plant("secret")), who.md, "create")
        if response is not None:
            with run.lock:
                run.entries.append((response.logon_data.name, who))

    def create_bad(rng):
        actors = pick(rng)
        secret = run.plant("secret")
        variants = [
            dp.CreateLogonDataRequest(parent=c.system, secret=secret + "x" * 1100, logon_data=dp.LogonData(
                kind=SYSTEM_USER, client="001", user_name=run.user_name(), expire_time=a_day())),
            dp.CreateLogonDataRequest(parent=c.system, secret=secret, logon_data=dp.LogonData(
                kind=SYSTEM_USER, client="1", user_name=run.user_name())),
            dp.CreateLogonDataRequest(parent=c.system + "/../x", secret=secret, logon_data=dp.LogonData(kind=77)),
            dp.CreateLogonDataRequest(parent=c.system, secret=secret, logon_data=dp.LogonData(
                kind=SYSTEM_USER, client="001", user_name=run.user_name() + "\x00", expire_time=a_day(),
                restricted_incident="customers/1/incidents/nope")),
        ]
        who = rng.choice([c.creator, w["nologon"], w["engineer"]])
        run.call(actors.depot.CreateLogonData, rng.choice(variants), who.md, "create (malformed or denied)")

    def overwrite(rng, denied=False):
        with run.lock:
            if not run.entries:
                return
            name, owner = rng.choice(run.entries)
        request = dp.UpdateLogonDataRequest(logon_data=dp.LogonData(name=name), secret=run.plant("secret"))
        request.update_mask.paths.append("secret")
        if rng.random() < 0.2:
            request.logon_data.etag = "stale"
        who = rng.choice([w["nologon"], w["outsider"]]) if denied else rng.choice([owner, c.edit_all])
        run.call(pick(rng).depot.UpdateLogonData, request, who.md, "overwrite" + (" (denied)" if denied else ""))

    def reveal(rng, denied=False):
        with run.lock:
            if not run.entries:
                return
            name, owner = rng.choice(run.entries)
        who = rng.choice([w["other"], w["outsider"], w["nologon"], a_admin]) if denied else c.edit_all
        if denied and who is w["other"] and owner is w["other"]:
            who = w["nologon"]
        run.call(pick(rng).depot.RevealLogonData, dp.RevealLogonDataRequest(name=name, reason="row 7"),
                 who.md, "reveal" + (" (denied)" if denied else ""))

    def login(rng):
        roll = rng.random()
        if roll < 0.6:  # a wrong password for a real user
            request = az.LoginRequest(user_id=rng.choice([c.creator, c.edit_all]).user_id, password=run.plant("pw"))
        elif roll < 0.9:  # an unknown user
            request = az.LoginRequest(user_id=run.user_name(), password=run.plant("pw"))
        else:
            request = az.LoginRequest(user_id=c.creator.user_id, password=TEST_PASSWORD)
        response = run.call(pick(rng).authz.Login, request, (), "login")
        if response is not None:
            with run.lock:
                run.tokens.add(response.access_token)

    def users(rng):
        actors = pick(rng)
        password = run.plant("pw")
        user_id = f"S{rng.randrange(10**9, 10**10):010d}"
        roll = rng.random()
        if roll < 0.25:  # malformed: a bad user id, no address, or an initial password (no longer accepted)
            request = az.CreateUserRequest(user=az.User(
                user_id=rng.choice(["x", user_id]), kind=az.PRINCIPAL_KIND_CUSTOMER_USER, customer=c.name,
                display_name="Bad", email=rng.choice(["", email_of(user_id)])),
                initial_password=rng.choice([password, password[:8], ""]))
            run.call(actors.authz.CreateUser, request, c.ops.md, "create user (malformed)")
            return
        if roll < 0.4:  # a planted code: wrong for a real user, for one with a live code, for an unknown one
            who = rng.choice([c.creator.user_id, user_id, run.user_name()])
            run.call(actors.authz.SetPassword, az.SetPasswordRequest(
                user_id=who, code=run.plant("code"), new_password=rng.choice([password, password[:8]])), (),
                "set password (planted code)")
            return
        created = run.call(actors.authz.CreateUser, az.CreateUserRequest(user=az.User(
            user_id=user_id, kind=az.PRINCIPAL_KIND_CUSTOMER_USER, customer=c.name, display_name="New",
            email=email_of(user_id))), c.ops.md, "create user")
        if created is None:
            return
        session = enroll(actors, user_id, password, "set password (mailed code)")
        if session is None:
            return
        update = az.UpdateUserRequest(user=az.User(name=f"users/{user_id}"), new_password=run.plant("pw"))
        update.update_mask.paths.append("password")
        run.call(actors.authz.UpdateUser, update, md(session), "change own password")
        if rng.random() < 0.5:  # its user administrator resets it; the user sets a new one with the mailed code
            reset = run.call(actors.authz.ResetPassword, az.ResetPasswordRequest(name=f"users/{user_id}"), c.ops.md,
                             "reset password")
            if reset is not None:
                enroll(actors, user_id, run.plant("pw"), "set password (reset code)")

    def enroll(actors, user_id: str, password: str, label: str) -> str | None:
        """SetPassword with the code mailed to the user, then Login: the session's token (None if refused)."""
        if run.call(actors.authz.SetPassword, az.SetPasswordRequest(
                user_id=user_id, code=actors.code_for(user_id), new_password=password), (), label) is None:
            return None
        session = run.call(actors.authz.Login, az.LoginRequest(user_id=user_id, password=password), (), "login")
        if session is None:
            return None
        with run.lock:
            run.tokens.add(session.access_token)
        return session.access_token

    def garbage_token(rng):
        token = run.plant("token")
        header = rng.choice([f"Bearer {token}", f"bearer {token}", f"Basic {token}", token, f"Bearer {token}" * 40])
        run.call(pick(rng, 0.5).depot.ListLogonData, dp.ListLogonDataRequest(parent=c.system),
                 (("authorization", header),), "garbage token")

    def malformed(rng):
        secret = run.plant("secret")
        request = dp.UpdateLogonDataRequest(logon_data=dp.LogonData(name=rng.choice([
            "customers/x/systems/1/logonData/1", c.system + "/logonData/NOPE", "", c.system]),
            user_name=run.user_name()), secret=secret)
        request.update_mask.paths.extend(rng.choice([["secret"], ["secret", "nonsense"], ["user_name", "secret"]]))
        run.call(pick(rng).depot.UpdateLogonData, request, c.creator.md, "update (malformed)")

    def prepare(rng):
        with run.lock:
            run.windows += 1
            slot = run.windows
        start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2 * (slot if rng.random() < 0.7 else 1))
        request = gw.PrepareRemoteAccessRequest(
            system=rng.choice(w["systems"]), connection_type="connectionTypes/R3_SUPPORT",
            parameters={"host": "app01", "instance_number": "00"}, start_time=ts(start),
            end_time=ts(start + dt.timedelta(hours=1)), reason="row 7",
            logon_data=dp.LogonData(kind=SYSTEM_USER, client="001", user_name=run.user_name()),
            secret=run.plant("secret"))
        who = rng.choice([w["preparer"], w["preparer"], w["preparer"], c.ops, w["nologon"]])
        run.call(run.procs.stub("gateway").PrepareRemoteAccess, request, who.md, "prepare remote access")

    def a_day():
        return ts(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))

    a_admin = run.gateway.admin
    return [(create_ok, 18), (create_bad, 8), (lambda r: overwrite(r), 10), (lambda r: overwrite(r, True), 5),
            (lambda r: reveal(r), 12), (lambda r: reveal(r, True), 10), (login, 10), (users, 5),
            (garbage_token, 8), (malformed, 8), (prepare, 6)]


def test_no_planted_secret_anywhere(procs, rec):
    started = time.time()
    run = Run(procs)
    w = build(run)
    ops = operations(run, w)
    functions = [f for f, weight in ops for _ in range(weight)]
    rng = random.Random(7)
    plan = [(rng.choice(functions), random.Random(rng.random())) for _ in range(CALLS)]

    def work(chunk):
        for function, op_rng in chunk:
            if run.calls >= CALLS:
                return
            function(op_rng)

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(work, [plan[i::WORKERS] for i in range(WORKERS)]))
    time.sleep(0.5)  # let the processes' last lines reach their logs

    sources = scan.files(procs.log_files(), "process log (stdout/stderr)")
    logs = list(sources)
    errors = [scan.Source("error details", "\n".join(run.errors).encode())]
    databases = []
    for service in ("authz", "connections", "depot"):
        databases += scan.database(procs.database_url(service), service, started)
    databases += scan.postgres_server(started) if procs.backend == "postgres" else []
    found = scan.offenders(logs + errors + databases, run.secrets, run.tokens)
    codes = mailed_codes(procs.mail_dir)  # every code mailed so far, as mailed and as authz would normalize it
    codes_found = scan.offenders(logs + errors + databases, set(), codes | {code.replace("-", "") for code in codes})
    names_found = scan.offenders(logs + errors, run.user_names)
    names_stored = len(scan.planted_in(b"".join(s.data for s in databases)) & run.user_names)
    denied = sum(n for k, n in run.codes.items() if k.endswith(("PERMISSION_DENIED", "UNAUTHENTICATED")))
    malformed = sum(n for k, n in run.codes.items() if k.endswith(("INVALID_ARGUMENT", "FAILED_PRECONDITION",
                                                                   "ABORTED", "NOT_FOUND")))
    internal = sum(n for k, n in run.codes.items() if k.endswith(("INTERNAL", "UNKNOWN")))
    enrolled = sum(n for k, n in run.codes.items() if k.startswith("set password (") and k.endswith(" OK"))
    passed = (not found and not codes_found and not names_found and run.calls >= CALLS and internal == 0
              and enrolled > 0)
    rec(f"{run.calls:,} calls ({denied:,} denied, {malformed:,} malformed or refused, {internal} INTERNAL) with "
        f"{len(run.secrets):,} planted secrets and {len(run.user_names):,} planted user names, and {len(codes):,} "
        f"one-time codes mailed ({enrolled:,} of them used here): "
        f"{sum(len(v) for v in found.values())} secrets or tokens and {sum(len(v) for v in codes_found.values())} "
        f"codes found in {scan.size_of(logs) / 2**20:.1f} MiB of "
        f"process logs, {len(run.errors):,} error details and {scan.size_of(databases) / 2**20:.1f} MiB of "
        f"database files; {len(names_found)} places with a user name outside the depot's database "
        f"({names_stored:,} stored there, as logon data)", passed,
        calls=run.calls, codes=run.codes, found=found, codes_found=codes_found, names_found=names_found)
    assert passed, (found, codes_found, names_found, enrolled,
                    {k: n for k, n in run.codes.items() if "INTERNAL" in k or "UNKNOWN" in k})
