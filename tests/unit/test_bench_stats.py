"""The benchmark's pure helpers: percentiles, /proc parsing, ratios, target verdicts, py-spy stacks."""
from __future__ import annotations

import math

import pytest

from bench import stats


def test_percentile_interpolates_between_closest_ranks():
    values = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose
    assert stats.percentile(values, 0) == 1.0
    assert stats.percentile(values, 100) == 4.0
    assert stats.percentile(values, 50) == pytest.approx(2.5)
    assert stats.percentile(values, 99) == pytest.approx(3.97)


def test_percentile_of_one_value_and_exact_ranks():
    assert stats.percentile([7.0], 99) == 7.0
    assert stats.percentile(list(range(101)), 99) == 99
    assert stats.percentile(list(range(101)), 50) == 50


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_rejects_out_of_range(q):
    with pytest.raises(ValueError):
        stats.percentile([1.0], q)


def test_percentile_rejects_empty():
    with pytest.raises(ValueError):
        stats.percentile([], 50)


def test_summarize():
    s = stats.summarize([0.001 * i for i in range(1, 101)])
    assert s.count == 100
    assert s.p50_s == pytest.approx(0.0505)
    assert s.p99_s == pytest.approx(0.09901)
    assert s.max_s == pytest.approx(0.1)
    assert s.mean_s == pytest.approx(0.0505)
    assert math.isnan(stats.summarize([]).p50_s)


PROC_STAT = ("4242 (python -m services.authz.server) S 1 4242 4242 0 -1 4194560 12345 0 0 0 "
             "1500 250 0 0 20 0 12 0 777 123456789 20000 18446744073709551615 1 1 0 0 0 0 0 16781312 16386 0 0 0 17 1 0 "
             "0 0 0 0")


def test_parse_proc_stat_reads_utime_and_stime():
    assert stats.parse_proc_stat(PROC_STAT) == (1500, 250)


def test_parse_proc_stat_survives_parentheses_and_spaces_in_the_name():
    tricky = PROC_STAT.replace("(python -m services.authz.server)", "(we ird) (name))")
    assert stats.parse_proc_stat(tricky) == (1500, 250)


def test_parse_status_kib():
    text = "Name:\tpython\nVmPeak:\t  300000 kB\nVmRSS:\t   91234 kB\nThreads:\t12\n"
    assert stats.parse_status_kib(text) == 91234
    assert stats.parse_status_kib(text, "VmPeak") == 300000
    assert stats.parse_status_kib("Name:\tzombie\n") == 0


def test_cpu_of_this_process_is_readable_and_grows():
    import os
    before = stats.cpu_seconds(os.getpid())
    sum(i * i for i in range(300_000))
    assert stats.cpu_seconds(os.getpid()) >= before
    assert stats.rss_mib(os.getpid()) > 1


def test_cpu_per_request_sums_the_processes():
    before = {1: 10.0, 2: 5.0}
    after = {1: 10.3, 2: 5.1}
    assert stats.cpu_per_request_us(before, after, 1000) == pytest.approx(400.0)
    assert math.isnan(stats.cpu_per_request_us(before, after, 0))


def test_ratio():
    assert stats.ratio(3.0, 2.0) == 1.5
    assert math.isnan(stats.ratio(1.0, 0.0))
    assert math.isnan(stats.ratio(math.nan, 1.0))
    assert math.isnan(stats.ratio(None, 1.0))


def test_target_verdicts():
    at_most = stats.Target("cpu", "<=", 1.0)
    assert at_most.verdict(1.0) == "PASS"
    assert at_most.verdict(1.01) == "FAIL"
    assert at_most.verdict(math.nan) == "N/A"
    assert at_most.verdict(None) == "N/A"
    at_least = stats.Target("throughput", ">=", 0.8)
    assert at_least.verdict(0.8) == "PASS"
    assert at_least.verdict(0.79) == "FAIL"
    assert stats.Target("sweep", "<=", 60).verdict(math.inf) == "FAIL"


def test_formatting():
    assert stats.fmt_us(0.000255) == "255 µs"
    assert stats.fmt_us(0.0123) == "12.3 ms"
    assert stats.fmt_us(math.nan) == "-"
    assert stats.fmt_num(1.2345) == "1.23"
    assert stats.fmt_num(None) == "-"


RAW = """\
thread (0x1): MainThread;main (services/kit/app.py:90);around (/x/services/kit/interceptors.py:70);check (/x/services/authz/decisions.py:50) 6
thread (0x1): MainThread;main (services/kit/app.py:90);select (/usr/lib/python3.11/selectors.py:468) 50
thread (0x2): Thread-3 (_connection_worker_thread);_connection_worker_thread (/v/site-packages/aiosqlite/core.py:59) 4
garbage line
"""


def test_parse_collapsed_and_top_frames():
    stacks = stats.parse_collapsed(RAW.splitlines())
    assert len(stacks) == 3
    assert stacks[0][1] == 6
    top = stats.top_frames(stacks, limit=5)
    assert top["samples"] == 10  # the idle selector is left out
    assert top["self"][0] == ("check (services/authz/decisions.py)", 60.0)
    assert ("_connection_worker_thread (aiosqlite/core.py)", 40.0) in top["self"]
    inclusive = dict(top["inclusive"])
    assert inclusive["around (services/kit/interceptors.py)"] == 60.0
    assert "main (services/kit/app.py)" not in inclusive  # boilerplate every sample passes through
    assert dict(top["threads"]) == {"event loop (MainThread)": 60.0, "aiosqlite worker threads": 40.0}
