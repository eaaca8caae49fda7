"""Fixtures of the proof suite. One in-process suite (`live`) and one set of real processes (`procs`) per
backend for all the rows (package scope: gone before the rest of a `make test` session runs) — each row leaves
them as it found them — so the short form stays short.
Every row runs on SQLite and on PostgreSQL (RS_TEST_POSTGRES_URL; required under RS_REQUIRE_POSTGRES=1)."""
from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, settings

from tests.conftest import BACKENDS, require_backend
from tests.proof.figures import FULL, MODE
from tests.proof.live import Live
from tests.proof.procs import Processes
from tests.proof.record import record
from tests.proof.world import Actors, dispose_engines

settings.register_profile(
    "proof", deadline=None, derandomize=not FULL, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture, HealthCheck.large_base_example])

_session = {"started": time.monotonic(), "tests": 0, "failed": 0}


@pytest.fixture(scope="package", params=BACKENDS)
def proof_backend(request) -> str:
    require_backend(request.param)
    return request.param


@pytest.fixture(scope="package")
def live(proof_backend, tmp_path_factory):
    """authz, connections, depot and the gateway in this process, on `proof_backend`."""
    suite = Live(proof_backend, tmp_path_factory.mktemp(f"proof-live-{proof_backend}"))
    try:
        yield suite
    finally:
        dispose_engines()
        suite.close()


@pytest.fixture(scope="package")
def actors(live) -> Actors:
    return Actors(live)


@pytest.fixture(scope="package")
def procs(proof_backend, tmp_path_factory):
    """The four services as real processes, on `proof_backend`."""
    running = Processes(proof_backend, tmp_path_factory.mktemp(f"proof-procs-{proof_backend}"))
    try:
        running.start()
        yield running
    finally:
        dispose_engines()
        running.stop()


@pytest.fixture
def rec(request, proof_backend):
    """`rec(figure, passed, part="", **measures)` records this row's figure on this backend."""
    row = request.module.ROW
    started = time.monotonic()

    def write(figure: str, passed: bool, part: str = "", **measures):
        request.node.proof_recorded = True
        return record(row, proof_backend, figure, passed, test=request.node.originalname,
                      seconds=time.monotonic() - started, part=part, **measures)
    return write


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        _session["tests"] += 1
    if report.failed:
        _session["failed"] += 1
        row = getattr(item.module, "ROW", None)
        backend = getattr(item, "callspec", None) and item.callspec.params.get("proof_backend")
        if row and backend and not getattr(item, "proof_recorded", False):
            item.proof_recorded = True
            message = str(call.excinfo.value).splitlines()[0][:200] if call.excinfo else "failed"
            record(row, backend, f"{item.originalname} {report.when} failed: {message}", False,
                   test=item.originalname)


def pytest_sessionfinish(session, exitstatus):
    if not _session["tests"] or not any(getattr(i, "module", None) and getattr(i.module, "ROW", None)
                                        for i in session.items):
        return
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    except (ValueError, OSError):
        memory = "?"
    record(0, "all", MODE, _session["failed"] == 0, seconds=time.monotonic() - _session["started"],
           test="session", tests=_session["tests"], failed=_session["failed"], cpus=os.cpu_count(),
           memory_gib=memory)
    if FULL and os.environ.get("RS_PROOF_REPORT", "1") != "0":
        from tests.proof import report
        try:
            report.main([])
        except SystemExit as err:  # SECURITY.md without markers: say so, do not fail the session
            print(f"proof report: {err}")
