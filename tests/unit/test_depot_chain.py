"""The log's hash chain, without a database: canonical content, linking, and the verifier's verdicts."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.depot import chain

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


@dataclasses.dataclass
class Event:
    sequence: int
    detail: str = ""
    customer: str = "1234"
    action: str = "CREATE"
    outcome: str = "SUCCESS"
    actor: str = "users/S0000000001"
    system: str = "customers/1234/systems/1"
    logon_data: str = ""
    incident: str = ""
    event_time: dt.datetime = T0
    request_id: str = "r"
    previous_hash: str = ""
    hash: str = ""


def build(n: int) -> list[Event]:
    events, previous = [], chain.GENESIS
    for seq in range(1, n + 1):
        event = Event(seq, detail=f"event {seq}", event_time=T0 + dt.timedelta(seconds=seq), previous_hash=previous)
        event.hash = previous = chain.link(previous, event)
        events.append(event)
    return events


def verdict(events: list[Event], head: tuple[int, str] | None = None,
            kept: chain.LogHead | None = None) -> chain.Verdict:
    verifier = chain.Verifier(kept)
    for event in events:
        if not verifier.feed(event):
            break
    head = head if head is not None else (events[-1].sequence, events[-1].hash) if events else (0, "")
    return verifier.against_kept(verifier.finish(*head))


def test_canonical_content_is_stable_and_excludes_the_hashes():
    event = Event(1, detail="ünïcode ✓", event_time=dt.datetime(2030, 1, 1))  # naive = UTC
    assert chain.canonical(event) == (
        '{"action":"CREATE","actor":"users/S0000000001","customer":"1234","detail":"ünïcode ✓",'
        '"event_time":"2030-01-01T00:00:00.000000Z","incident":"","logon_data":"","outcome":"SUCCESS",'
        '"request_id":"r","sequence":1,"system":"customers/1234/systems/1"}').encode()
    assert chain.canonical(dataclasses.replace(event, hash="x", previous_hash="y")) == chain.canonical(event)
    assert len(chain.link("", event)) == 64 and chain.link("", event) != chain.link("a" * 64, event)


def test_an_intact_chain_and_an_empty_one_verify():
    events = build(5)
    assert verdict(events) == chain.Verdict(True, 5, head=chain.LogHead(5, events[-1].hash))
    assert verdict([]) == chain.Verdict(True, 0)


@pytest.mark.parametrize("field, value", [("detail", "other"), ("actor", "users/S0000000002"),
                                          ("outcome", "DENIED"), ("event_time", T0), ("customer", "9"),
                                          ("request_id", ""), ("logon_data", "x"), ("incident", "y"),
                                          ("system", "z"), ("action", "REVEAL")])
def test_an_edited_field_breaks_at_that_event(field, value):
    events = build(5)
    setattr(events[2], field, value)
    result = verdict(events)
    assert (result.valid, result.first_broken_sequence) == (False, 3) and "edited" in result.problem


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link():
    events = build(5)
    events[1].detail = "forged"
    events[1].hash = chain.link(events[1].previous_hash, events[1])
    result = verdict(events)
    assert result.first_broken_sequence == 3 and "previous_hash" in result.problem


def test_a_removed_event_is_missing():
    events = build(5)
    del events[1]
    result = verdict(events, head=(5, events[-1].hash))
    assert result.first_broken_sequence == 2 and "missing" in result.problem


def test_removed_newest_events_are_found_by_the_head():
    events = build(5)
    head = (5, events[-1].hash)
    result = verdict(events[:3], head)
    assert result.first_broken_sequence == 4 and "newest events were removed" in result.problem


def test_reordered_events_break_at_the_first_moved_one():
    events = build(5)
    events[1], events[2] = events[2], events[1]
    events[1].sequence, events[2].sequence = 2, 3  # renumbered to look contiguous
    result = verdict(events)
    assert result.first_broken_sequence == 2 and "reordered" in result.problem


def test_a_repeated_sequence_is_reported():
    events = build(3)
    result = verdict([events[0], events[1], events[1], events[2]])
    assert result.first_broken_sequence == 3 and "again" in result.problem


def test_events_beyond_the_head_or_a_replaced_newest_event():
    events = build(4)
    assert verdict(events, head=(3, events[2].hash)).first_broken_sequence == 4
    result = verdict(events, head=(4, "0" * 64))
    assert result.first_broken_sequence == 4 and "replaced" in result.problem


# --- a head the customer kept ------------------------------------------------------------------------------
def test_a_log_that_extends_the_kept_head_verifies():
    events = build(8)
    for kept in (5, 8):
        assert verdict(events, kept=chain.LogHead(kept, events[kept - 1].hash)) == verdict(events)


def test_a_log_rolled_back_below_the_kept_head_does_not_extend_it():
    events = build(8)
    result = verdict(events[:5], kept=chain.LogHead(8, events[7].hash))  # consistent: its own head is event 5
    assert (result.valid, result.first_broken_sequence, result.head) == (False, 8, None)
    assert "holds 5 events" in result.problem and "rolled back or truncated" in result.problem
    assert verdict([], head=(0, ""), kept=chain.LogHead(1, events[0].hash)).first_broken_sequence == 1


def test_a_log_rewritten_at_the_kept_event_does_not_extend_it():
    events, other = build(8), build(9)
    other[0].detail = "another first event"  # a whole other chain, consistent in itself
    previous = chain.GENESIS
    for event in other:
        event.previous_hash, event.hash = previous, chain.link(previous, event)
        previous = event.hash
    result = verdict(other, kept=chain.LogHead(5, events[4].hash))
    assert (result.valid, result.first_broken_sequence) == (False, 5)
    assert f"records {events[4].hash[:16]}..." in result.problem and "rewritten at or before event 5" in result.problem


def test_a_break_before_the_kept_event_is_reported_first_and_one_after_it_second():
    events = build(8)
    events[2].detail = "edited"
    assert verdict(events, kept=chain.LogHead(6, events[5].hash)).first_broken_sequence == 3
    events = build(8)
    events[6].detail = "edited"
    assert verdict(events, kept=chain.LogHead(4, events[3].hash)).first_broken_sequence == 7
    assert verdict(events, kept=chain.LogHead(4, "0" * 64)).first_broken_sequence == 4


@given(st.builds(chain.EventValues, customer=st.text(), sequence=st.integers(0, 2**62), action=st.text(),
                 outcome=st.text(), actor=st.text(), system=st.text(), logon_data=st.text(), incident=st.text(),
                 detail=st.text(), event_time=st.datetimes(timezones=st.none() | st.timezones()),
                 request_id=st.text(), previous_hash=st.just(""), hash=st.just("")))
def test_the_direct_canonical_form_is_byte_for_byte_the_json_definition(event):
    assert chain.canonical(event) == chain.canonical_json(event)
