"""What the connections service's unit tests share besides their fixtures (those are in conftest.py):
constants, fresh customer numbers and a stand-in for authz's support-assignment methods.

`conn_db` (conftest.py) is the store of a migrated connections database per backend (SQLite, and PostgreSQL as tests/conftest.py
decides: run when RS_TEST_POSTGRES_URL is set, required with RS_REQUIRE_POSTGRES=1), fresh per test
module. Tests isolate by customer number.
"""
from __future__ import annotations

import datetime as dt
import itertools
import os
from pathlib import Path

import grpc

from services.connections.assignment_client import Assignment, AssignmentRefused, AssignmentUnavailable
from services.connections.model import Actor
from services.kit.clock import UTC

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "connections" / "migrations"
T0 = dt.datetime(2031, 3, 1, 12, 0, 0, tzinfo=UTC)
USER = Actor("users/S0000000001", "CUSTOMER_USER", "customers/1")
ENGINEER = Actor("users/eng.one", "SUPPORT_ENGINEER")
_customers = itertools.count(1000 + os.getpid() % 1000 * 1000)


def new_customer() -> str:
    return str(next(_customers))


class FakeAssignments:
    """Stands in for authz's support-assignment methods: keeps the assignments, and fails when told to.

    `fail` takes one mode per coming call: "refuse" (authz says no, changes nothing), "down" (no answer,
    nothing changed), "lost_answer" (authz made the change but the answer never came back); with
    `fail_only` set, only calls for that incident take them.
    """

    def __init__(self) -> None:
        self.current: dict[str, Assignment] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail: list[str] = []
        self.fail_only: str | None = None
        self.after_change = None  # called after a successful change (to make the commit fail, say)

    async def set(self, assignment: Assignment) -> None:
        self.calls.append(("set", assignment.incident))
        self._apply(assignment.incident, lambda: self.current.__setitem__(assignment.incident, assignment))

    async def delete(self, incident: str) -> None:
        self.calls.append(("delete", incident))
        self._apply(incident, lambda: self.current.pop(incident, None))

    def _apply(self, incident: str, change) -> None:
        failing = self.fail and self.fail_only in (None, incident)
        mode = self.fail.pop(0) if failing else None
        if mode == "refuse":
            raise AssignmentRefused(grpc.StatusCode.INVALID_ARGUMENT, "engineer: not an enabled support engineer")
        if mode == "down":
            raise AssignmentUnavailable("authz did not answer (UNAVAILABLE)")
        change()
        if mode == "lost_answer":
            raise AssignmentUnavailable("authz did not answer (DEADLINE_EXCEEDED)")
        if self.after_change is not None:
            self.after_change()
