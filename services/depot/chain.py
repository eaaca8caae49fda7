"""The log's hash chain, pure: canonical content of an event, its hash, and verification of a sequence.

hash(n) = sha256(hash(n-1) || canonical JSON of event n), hash(0) = "". Each event stores its own hash and the
one before it; a per-customer head stores the last sequence and hash, so removing the newest events shows too.
The head is sealed under the master key (barrier.LogSealer, checked by audit.verify), so a chain rewritten with
recomputed hashes does not verify either.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any, NamedTuple

GENESIS = ""


class EventValues(NamedTuple):
    """A log event's stored columns (the log_events table's, without its pk), in table order."""

    customer: str
    sequence: int
    action: str
    outcome: str
    actor: str
    system: str
    logon_data: str
    incident: str
    detail: str
    event_time: dt.datetime
    request_id: str
    previous_hash: str
    hash: str


# What is chained: an EventValues, or a stored LogEventRow (the same attributes).
ChainedEvent = Any


def _time(value: dt.datetime) -> str:
    if value.tzinfo is not None:  # naive means UTC (as SQLite returns it)
        value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(event: ChainedEvent) -> bytes:
    """The reference definition of the canonical content: JSON with sorted keys, no spaces, UTF-8."""
    content = {
        "customer": event.customer, "sequence": event.sequence, "action": event.action, "outcome": event.outcome,
        "actor": event.actor, "system": event.system, "logon_data": event.logon_data, "incident": event.incident,
        "detail": event.detail, "event_time": _time(event.event_time), "request_id": event.request_id,
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_quote = json.encoder.encode_basestring  # a JSON string as json.dumps(..., ensure_ascii=False) writes it


def canonical(event: ChainedEvent) -> bytes:
    """The event's content as canonical JSON (sorted keys, no spaces, UTF-8): everything but the hashes.
    The same bytes as canonical_json, written directly (the verifier computes it for every stored event)."""
    text = (event.action, event.actor, event.customer, event.detail, event.incident, event.logon_data,
            event.outcome, event.request_id, event.system)
    if event.sequence.__class__ is not int or any(v.__class__ is not str for v in text):
        return canonical_json(event)
    action, actor, customer, detail, incident, logon_data, outcome, request_id, system = map(_quote, text)
    return (f'{{"action":{action},"actor":{actor},"customer":{customer},"detail":{detail},'
            f'"event_time":"{_time(event.event_time)}","incident":{incident},"logon_data":{logon_data},'
            f'"outcome":{outcome},"request_id":{request_id},"sequence":{event.sequence},"system":{system}}}'
            ).encode("utf-8")


def link(previous_hash: str, event: ChainedEvent) -> str:
    """The hex SHA-256 chaining `event` to the event before it."""
    return hashlib.sha256(previous_hash.encode("ascii") + canonical(event)).hexdigest()


class LogHead(NamedTuple):
    """A position of a customer's log: an event's sequence and hash (what a customer keeps to find a rollback)."""

    sequence: int
    hash: str


@dataclass(frozen=True)
class Verdict:
    valid: bool
    events_checked: int
    first_broken_sequence: int = 0
    problem: str = ""
    head: LogHead | None = None  # the newest event, when valid and there is one


def _short(digest: str) -> str:
    return digest[:16] + "..." if len(digest) > 16 else digest


class Verifier:
    """Feeds a customer's events in sequence order and stops at the first one that does not verify. With a
    `kept` head, the log must also still extend it: hold event `kept.sequence`, verified, with `kept.hash`."""

    def __init__(self, kept: LogHead | None = None) -> None:
        self.expected = 1
        self.previous = GENESIS
        self.checked = 0
        self.broken: Verdict | None = None
        self.kept = kept
        self.kept_found = ""  # the verified hash of event kept.sequence, once fed

    def feed(self, event: ChainedEvent) -> bool:
        """Check the next event; False once the chain is broken (stop feeding)."""
        self.checked += 1
        seq = self.expected
        if event.sequence > seq:
            return self._break(seq, f"event {seq} is missing (the next stored event is {event.sequence}): "
                                    "an event was removed")
        if event.sequence < seq:
            return self._break(seq, f"event {event.sequence} appears again after event {seq - 1}: "
                                    "the events were reordered or duplicated")
        if event.previous_hash != self.previous:
            return self._break(seq, "its previous_hash does not match the event before it: "
                                    "an event before it was removed, inserted or reordered")
        if link(self.previous, event) != event.hash:
            return self._break(seq, "its content does not match its hash: the event was edited")
        self.previous = event.hash
        if self.kept is not None and seq == self.kept.sequence:
            self.kept_found = event.hash
        self.expected += 1
        return True

    def against_kept(self, verdict: Verdict) -> Verdict:
        """The chain's `verdict` (finish's, or a later one), unless the log does not extend the kept head: of a
        break in the chain and a kept head the log does not extend, the one at the lower position."""
        kept = self.kept
        if kept is None or (not verdict.valid and verdict.first_broken_sequence <= kept.sequence):
            return verdict
        if not self.kept_found:  # the chain verified past its end without reaching the kept event
            last = self.expected - 1
            return Verdict(False, self.checked, kept.sequence,
                           f"the log holds {last} events, but the head you kept is event {kept.sequence}: the log "
                           "was rolled back or truncated to an earlier state (events after it were removed), so it "
                           "no longer extends the head you kept; an administrator must restore the log")
        if self.kept_found != kept.hash:
            return Verdict(False, self.checked, kept.sequence,
                           f"event {kept.sequence} has the hash {_short(self.kept_found)}, but the head you kept "
                           f"records {_short(kept.hash)}: the log was rewritten at or before event "
                           f"{kept.sequence}, so it no longer extends the head you kept; an "
                           "administrator must restore the log")
        return verdict

    def finish(self, head_sequence: int, head_hash: str) -> Verdict:
        """The chain's verdict, comparing the last event with the customer's head."""
        if self.broken:
            return self.broken
        last = self.expected - 1
        if head_sequence > last:
            return Verdict(False, self.checked, last + 1,
                           f"event {last + 1} is missing: the log head records {head_sequence} events "
                           "(the newest events were removed)")
        if head_sequence < last:
            return Verdict(False, self.checked, head_sequence + 1,
                           f"event {head_sequence + 1} is not recorded by the log head: events were added "
                           "outside the depot")
        if head_hash != self.previous:
            return Verdict(False, self.checked, last,
                           "the newest event does not match the hash recorded by the log head: it was replaced")
        return Verdict(True, self.checked, head=LogHead(last, self.previous) if last else None)

    def _break(self, sequence: int, problem: str) -> bool:
        self.broken = Verdict(False, self.checked, sequence, problem)
        return False
