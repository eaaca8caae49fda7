"""A window as the relay sees it: open or not, and how to say why not."""
from __future__ import annotations

import datetime as dt

from services.connections.model import WindowState
from services.connections.relay.model import EndReason
from services.connections.tables import WindowRow
from services.connections.windows import state_of, window_name
from services.kit.clock import as_utc


def not_open(row: WindowRow, now: dt.datetime) -> tuple[WindowState, str] | None:
    """None while the window is open; else its state and a sentence that says since or until when."""
    state = state_of(row, now)
    if state is WindowState.OPEN:
        return None
    name = window_name(row)
    if state is WindowState.SCHEDULED:
        return state, f"connection {name} is scheduled: it opens at {as_utc(row.start_time).isoformat()}"
    if state is WindowState.CLOSED:
        return state, f"connection {name} was closed early at {as_utc(row.close_time).isoformat()}"
    return state, f"connection {name} ended at {as_utc(row.end_time).isoformat()}"


def end_reason(state: WindowState) -> EndReason:
    return EndReason.WINDOW_CLOSED if state is WindowState.CLOSED else EndReason.WINDOW_ENDED


def effective_end(row: WindowRow) -> dt.datetime:
    """When the window ends: its end, or its early close."""
    return as_utc(row.close_time) if row.close_time is not None and row.close_time < row.end_time \
        else as_utc(row.end_time)
