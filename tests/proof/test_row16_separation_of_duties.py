"""Row 16: separation of duties. No principal that administers identities — the platform admin, or a customer's
user administrator (with a second user administrator beside it, or alone) — obtains a secret, or another
principal's credential, by any sequence of identity operations.

The search: from a fresh world (a customer with its first user administrator A, a victim V holding EDIT_MY and
owning the planted secret S, and for one attacker a second user administrator B), every sequence of up to DEPTH
identity operations of the attacker (create users, with a fresh address or variants of its own; grant, approve
and revoke each authorization to each principal; reset passwords; change others' addresses and passwords;
disable and enable; mint service tokens) is run against the real in-process suite. A refused operation leaves
the state as it was, so a sequence is extended only by accepted operations, and a state reached before (the
users, their grants and requests, passwords set, addresses, the codes in the attacker's mailbox) is not
explored twice. After each accepted operation the attacker uses everything it holds: its own password, every
one-time code mailed to its own address (the mail it can read: any address that compares equal to its own), and
the tokens it minted — and tries to reveal every entry of the customer. Counted: sequences that end in S
revealed, and sequences that gave the attacker a credential of another principal. Target: 0 and 0."""
from __future__ import annotations

import datetime as dt
import itertools
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

import grpc
import pytest

from remotesupport.authz.v1 import authz_pb2 as az
from remotesupport.connections.v1 import connections_pb2 as cn
from remotesupport.depot.v1 import depot_pb2 as dp
from services.authz.model import SERVICE_ACCOUNTS, email_key
from services.authz.settings import AuthzSettings
from tests.harness import CODE, TEST_PASSWORD, email_of
from tests.proof.figures import size
from tests.proof.world import planted, ts

ROW = 16
DEPTH = size(2, 4)
AUTHS = ("EDIT_ALL_LOGIN_DATA", "USER_ADMIN", "EDIT_MY_LOGIN_DATA")
USER_OF_SUBJECT = re.compile(r"code for users/(\S+)$")
_n = itertools.count(1)


@dataclass
class World:
    """One fresh customer; `names` maps the search's labels (A, B, V, N) to user names."""

    customer: str
    system: str
    secret: str
    entry: str = ""
    names: dict[str, str] = field(default_factory=dict)


@dataclass
class Attacker:
    label: str  # "PA" or "A"
    user_id: str
    email: str


@dataclass
class Held:
    """What a sequence gave the attacker beyond its own account."""

    service_tokens: dict[str, str] = field(default_factory=dict)  # service account -> a token minted for it
    passwords: dict[str, str] = field(default_factory=dict)  # user ID -> a password the attacker set for it


class Search:
    """The search for one attacker, on the live suite's loop."""

    def __init__(self, live, attacker_label: str, second_admin: bool) -> None:
        self.live = live
        self.suite = live.suite
        self.authz = self.suite.stub("authz")
        self.attacker_label = attacker_label
        self.second_admin = second_admin
        self.seen_mail: set[str] = set()
        self.states: set[tuple] = set()
        self.sequences = self.accepted = self.refused = self.worlds = 0
        self.revealed: list[tuple[str, ...]] = []
        self.foreign: list[tuple[str, ...]] = []
        self.admin_email = AuthzSettings.from_env().admin_email

    # --- the world ---------------------------------------------------------------------------------------
    async def world(self) -> tuple[World, Attacker, str]:
        """A fresh world, the attacker, and the attacker's token."""
        self.worlds += 1
        s = self.suite
        number = await s.new_customer()
        a_name, a_token = s.customer_admin(number)
        w = World(number, "", planted("row16"), {"A": a_name})
        if self.second_admin:
            w.names["B"] = (await s.new_user(number, ["USER_ADMIN"]))[0]
        w.names["V"], v_token = await s.new_user(number, ["EDIT_MY_LOGIN_DATA", "MAINTAIN_SYSTEM_DATA"])
        w.system = (await s.stub("connections").CreateSystem(cn.CreateSystemRequest(
            parent=f"customers/{number}", system=cn.System(installation_number="20012345", system_id="PRD",
                                                           system_number=str(next(_n) + 10**8),
                                                           description="row 16")),
            metadata=s.md(v_token))).system.name
        w.entry = (await s.stub("depot").CreateLogonData(dp.CreateLogonDataRequest(
            parent=w.system, secret=w.secret, logon_data=dp.LogonData(
                kind=dp.LOGON_DATA_KIND_SYSTEM_USER, client="001", user_name="SUPPORT1",
                expire_time=ts(s.clock.now() + dt.timedelta(days=30)))),
            metadata=s.md(v_token))).logon_data.name
        if self.attacker_label == "PA":
            attacker = Attacker("PA", "admin", self.admin_email)
            token = s.admin_token
        else:
            attacker = Attacker("A", a_name.removeprefix("users/"), email_of(a_name.removeprefix("users/")))
            token = a_token
        self.new_mail()  # the world's own mail is not the attacker's loot
        return w, attacker, token

    def new_mail(self) -> list[EmailMessage]:
        """The messages the sink received since the last call."""
        folder = self.suite.mail.folder
        fresh = sorted(set(os.listdir(folder)) - self.seen_mail) if folder.exists() else []
        self.seen_mail.update(fresh)
        return [message_from_bytes((folder / name).read_bytes(), policy=policy.default)
                for name in fresh if name.endswith(".eml")]

    # --- the operations ------------------------------------------------------------------------------------
    def operations(self) -> list[str]:
        other_admin = "B" if self.second_admin else "A"
        targets = ["self", "V", "N"] + ([other_admin] if self.attacker_label == "PA" or self.second_admin else [])
        ops = ["create:fresh", "create:own+tag", "create:OWN"]
        ops += [f"grant:{a}:{t}" for a in AUTHS for t in targets]
        ops += [f"approve:{a}:{t}" for a in AUTHS[:2] for t in ("self", "V", "N")]
        ops += [f"revoke:USER_ADMIN:{other_admin}", "revoke:EDIT_MY_LOGIN_DATA:V"]
        ops += [f"reset:{t}" for t in targets]
        ops += ["email:V", "email:N", "password:V", "password:N"]
        ops += [f"disable:{other_admin}", f"enable:{other_admin}"]
        ops += [f"token:{svc}" for svc in SERVICE_ACCOUNTS]
        return ops

    def target(self, w: World, attacker: Attacker, label: str) -> str | None:
        return f"users/{attacker.user_id}" if label == "self" else w.names.get(label)

    def own_variant(self, attacker: Attacker, how: str) -> str:
        local, domain = attacker.email.split("@")
        return f"{local}+{uuid.uuid4().hex[:6]}@{domain}" if how == "own+tag" else attacker.email.upper()

    async def apply(self, op: str, w: World, attacker: Attacker, token: str, held: Held) -> bool | None:
        """Run one operation as the attacker: True accepted, False refused, None not applicable here."""
        md = self.suite.md(token)
        kind, _, rest = op.partition(":")
        try:
            if kind == "create":
                user_id = f"S{next(_n) + 7 * 10**9:010d}"
                email = (f"{user_id.lower()}@elsewhere.example" if rest == "fresh"
                         else self.own_variant(attacker, rest))
                await self.authz.CreateUser(az.CreateUserRequest(user=az.User(
                    user_id=user_id, kind=az.PRINCIPAL_KIND_CUSTOMER_USER, customer=f"customers/{w.customer}",
                    display_name="row 16", email=email)), metadata=md)
                w.names["N"] = f"users/{user_id}"
            elif kind in ("grant", "approve", "revoke"):
                auth, label = rest.split(":")
                user = self.target(w, attacker, label)
                if user is None:
                    return None
                value = az.Authorization.Value(f"AUTHORIZATION_{auth}")
                if kind == "grant":
                    await self.authz.GrantAuthorization(az.GrantAuthorizationRequest(user=user, authorization=value),
                                                        metadata=md)
                elif kind == "approve":
                    await self.authz.ApproveAuthorization(az.ApproveAuthorizationRequest(
                        user=user, authorization=value), metadata=md)
                else:
                    await self.authz.RevokeAuthorization(az.RevokeAuthorizationRequest(
                        user=user, authorization=value), metadata=md)
            elif kind == "reset":
                user = self.target(w, attacker, rest)
                if user is None:
                    return None
                await self.authz.ResetPassword(az.ResetPasswordRequest(name=user), metadata=md)
            elif kind in ("email", "password", "disable", "enable"):
                user = self.target(w, attacker, rest)
                if user is None:
                    return None
                request = az.UpdateUserRequest(user=az.User(name=user))
                if kind == "email":
                    request.user.email = self.own_variant(attacker, "own+tag")
                elif kind == "password":
                    request.new_password = held.passwords[user.removeprefix("users/")] = "attacker knows this one"
                else:
                    request.user.disabled = kind == "disable"
                request.update_mask.paths.append("disabled" if kind in ("disable", "enable") else kind)
                await self.authz.UpdateUser(request, metadata=md)
            elif kind == "token":
                response = await self.authz.CreateServiceToken(az.CreateServiceTokenRequest(
                    service_account=f"users/{SERVICE_ACCOUNTS[rest]}"), metadata=md)
                held.service_tokens[rest] = response.access_token
        except grpc.aio.AioRpcError as err:
            assert err.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (op, err.details())
            return False
        return True

    # --- what the attacker can do with what it holds --------------------------------------------------------
    async def credentials(self, attacker: Attacker, held: Held) -> dict[str, str]:
        """principal -> token: the attacker's own (its password, or a code mailed to it for its own user), and
        every other principal a code in its mailbox opens."""
        creds: dict[str, str] = {}
        mine = email_key(attacker.email)
        for message in self.new_mail():
            if email_key(str(message["To"])) != mine:
                continue
            code, user = CODE.search(message.get_content()), USER_OF_SUBJECT.search(str(message["Subject"]))
            if not code or not user:
                continue
            password = f"attacker {uuid.uuid4().hex}"
            try:
                await self.authz.SetPassword(az.SetPasswordRequest(user_id=user.group(1), code=code.group(1),
                                                                   new_password=password))
                creds[user.group(1)] = (await self.authz.Login(az.LoginRequest(
                    user_id=user.group(1), password=password))).access_token
            except grpc.aio.AioRpcError:
                pass
        for user_id, password in held.passwords.items():
            try:
                creds[user_id] = (await self.authz.Login(az.LoginRequest(user_id=user_id, password=password))
                                  ).access_token
            except grpc.aio.AioRpcError:
                pass
        if attacker.user_id not in creds and attacker.label != "PA":
            try:
                creds[attacker.user_id] = (await self.authz.Login(az.LoginRequest(
                    user_id=attacker.user_id, password=TEST_PASSWORD))).access_token
            except grpc.aio.AioRpcError:
                pass
        return creds

    async def reveals(self, w: World, tokens: list[str]) -> int:
        """How many reveals of S `tokens` achieve (S asked by name, and every entry each token can list)."""
        depot = self.suite.stub("depot")
        count = 0
        for token in tokens:
            md = self.suite.md(token)
            names = {w.entry}
            try:
                listed = await depot.ListLogonData(dp.ListLogonDataRequest(parent=w.system), metadata=md)
                names |= {e.name for e in listed.logon_data}
            except grpc.aio.AioRpcError:
                pass
            for name in sorted(names):
                try:
                    revealed = await depot.RevealLogonData(dp.RevealLogonDataRequest(name=name), metadata=md)
                except grpc.aio.AioRpcError:
                    continue
                count += revealed.secret == w.secret
        return count

    async def fingerprint(self, w: World, attacker: Attacker, creds: dict[str, str], held: Held) -> tuple:
        """The state as the platform admin sees it, with users named by their labels."""
        md = self.suite.md(self.suite.admin_token)
        labels = {name: label for label, name in w.names.items()}
        users = await self.authz.ListUsers(az.ListUsersRequest(customer=f"customers/{w.customer}", page_size=1000),
                                           metadata=md)
        state = []
        for user in users.users:
            label = labels.get(user.name, "other")
            grants = await self.authz.ListAuthorizations(az.ListAuthorizationsRequest(user=user.name), metadata=md)
            state.append((label, user.disabled, user.password_set, email_key(user.email) == email_key(attacker.email),
                          tuple(sorted((g.authorization, g.state) for g in grants.grants))))
        held_by = tuple(sorted(labels.get(f"users/{u}", "other") for u in creds))
        return tuple(sorted(state)), held_by, tuple(sorted(held.service_tokens))

    # --- the search ------------------------------------------------------------------------------------------
    async def replay(self, sequence: tuple[str, ...]) -> tuple[World, Attacker, str, Held]:
        w, attacker, token = await self.world()
        held = Held()
        for op in sequence:
            assert await self.apply(op, w, attacker, token, held), f"replaying {sequence}: {op} was refused"
        return w, attacker, token, held

    async def run(self, max_depth: int = DEPTH) -> None:
        ops = self.operations()
        frontier: list[tuple[str, ...]] = [()]
        for depth in range(1, max_depth + 1):
            nxt = []
            for prefix in frontier:
                w, attacker, token, held = await self.replay(prefix)
                dirty = False
                for op in ops:
                    if dirty:  # the world moved on: the next operation starts from the prefix again
                        w, attacker, token, held = await self.replay(prefix)
                        dirty = False
                    outcome = await self.apply(op, w, attacker, token, held)
                    if outcome is None:
                        continue
                    if not outcome:
                        self.refused += 1
                        continue
                    self.accepted += 1
                    sequence = prefix + (op,)
                    self.sequences += 1
                    creds = await self.credentials(attacker, held)
                    if set(creds) - {attacker.user_id}:
                        self.foreign.append(sequence)
                    if await self.reveals(w, [token, *creds.values(), *held.service_tokens.values()]):
                        self.revealed.append(sequence)
                    if depth < max_depth:  # a state reached before is not explored again
                        state = await self.fingerprint(w, attacker, creds, held)
                        if state not in self.states:
                            self.states.add(state)
                            nxt.append(sequence)
                    dirty = True
            frontier = nxt


CASES = {"platform admin": ("PA", False), "user admin beside a second one": ("A", True),
         "user admin alone": ("A", False)}


@pytest.mark.parametrize("case", list(CASES))
def test_no_sequence_of_identity_operations_reveals_a_secret(live, rec, case):
    started = time.monotonic()
    search = Search(live, *CASES[case])
    live.run(search.run(), timeout=3600)
    passed = not search.revealed and not search.foreign and search.sequences > 0
    rec(f"{case}: {search.sequences:,} sequences of up to {DEPTH} accepted identity operations ({search.accepted:,} "
        f"accepted, {search.refused:,} refused; {len(search.states):,} distinct states; {search.worlds:,} fresh "
        f"worlds) -> {len(search.revealed)} revealed the victim's secret, {len(search.foreign)} gave the attacker "
        f"another principal's credential ({time.monotonic() - started:.0f} s)", passed, part=case,
        sequences=search.sequences, revealed=len(search.revealed), foreign=len(search.foreign),
        examples=[list(s) for s in (search.revealed + search.foreign)[:5]])
    assert not search.revealed, f"sequences that revealed the secret: {search.revealed[:5]}"
    assert not search.foreign, f"sequences that gave another principal's credential: {search.foreign[:5]}"
    assert search.sequences > len(search.operations()) // 4


@pytest.mark.parametrize("weakness", ["self-grant", "setting a colleague's password"])
def test_the_search_finds_a_planted_weakness(live, weakness, monkeypatch):
    """The search is not blind: with one rule taken out of the in-process authz, one operation is enough."""
    from services.authz import model
    if weakness == "self-grant":
        original = model.check_grant_request
        monkeypatch.setattr(model, "check_grant_request",
                            lambda *, caller, grantee, **kw: original(caller=caller, grantee=f"{grantee}-not", **kw))
        expected = ("grant:EDIT_ALL_LOGIN_DATA:self",)
    else:
        monkeypatch.setattr(model, "check_own_fields", lambda paths, caller, target: None)
        expected = ("password:V",)
    search = Search(live, "A", False)
    live.run(search.run(max_depth=1), timeout=600)
    assert expected in search.revealed + search.foreign, (search.revealed, search.foreign)
