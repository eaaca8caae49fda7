"""The relay benchmark's pure helpers: throughput, CPU per MB, added latency, rsctl's listening line, /proc's
listening ports, the target verdicts - and the target server's sink/echo protocol."""
from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace

import pytest

from bench import relay

PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:C350 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0100007F:C350 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1
   3: 0100007F:D2F0 0100007F:C350 06 00000000:00000000 03:00000a3c 00000000     0        0 0 3 0
"""


def test_mb_per_s_is_decimal_megabytes_per_second_and_nan_without_a_duration():
    assert relay.mb_per_s(200_000_000, 4.0) == 50.0
    assert math.isnan(relay.mb_per_s(1, 0.0))
    assert math.isnan(relay.mb_per_s(1, -1.0))
    assert math.isnan(relay.mb_per_s(1, None))


def test_cpu_ms_per_mb():
    assert relay.cpu_ms_per_mb(2.0, 200_000_000) == pytest.approx(10.0)
    assert math.isnan(relay.cpu_ms_per_mb(1.0, 0))
    assert math.isnan(relay.cpu_ms_per_mb(math.nan, 10))


def test_added_ms_is_the_difference_in_milliseconds():
    assert relay.added_ms(0.0015, 0.0005) == pytest.approx(1.0)
    assert relay.added_ms(0.0004, 0.0005) == pytest.approx(-0.1)  # a negative difference is reported as it is
    assert math.isnan(relay.added_ms(math.nan, 0.001))
    assert math.isnan(relay.added_ms(0.001, None))


@pytest.mark.parametrize("text, expected", [
    ("listening on 127.0.0.1:40123 for customers/1/systems/2/connections/3; point your client at it\n",
     ("127.0.0.1", 40123)),
    ("listening on [::1]:2222, 127.0.0.1:2222 for customers/1/systems/2/connections/3\n", ("::1", 2222)),
    ("rsctl: warning: something\nlistening on localhost:9 for x\n", ("localhost", 9)),
])
def test_listener_address_reads_rsctl_tunnel_s_first_listening_line(text, expected):
    assert relay.listener_address(text) == expected


def test_listener_address_is_none_before_the_line_is_printed():
    assert relay.listener_address("") is None
    assert relay.listener_address("connector for x until y\n") is None


def test_listening_ports_takes_only_listen_sockets():
    assert relay.listening_ports(PROC_NET_TCP) == {0xC350, 0x1F90}
    assert relay.listening_ports("  sl  local_address rem_address   st\n") == set()


def test_rusage_cpu_seconds_sums_user_and_system_time():
    assert relay.rusage_cpu_seconds(SimpleNamespace(ru_utime=0.25, ru_stime=0.5)) == 0.75


def test_figures_are_rounded_or_a_dash_when_missing():
    assert relay.us(0.0012345) == 1234 and relay.us(math.nan) == "-" and relay.us(None) == "-"
    assert relay.rounded(1.2345, 2) == 1.23 and relay.rounded(7.6) == 8 and isinstance(relay.rounded(7.6), int)
    assert relay.rounded(math.nan, 1) == "-"


def _figures(**overrides):
    figs = {relay.F + "bulk: bytes": 200_000_000, relay.F + relay.BULK_RATIO: 31.0,
            relay.F + relay.ADDED_P50: 450, relay.F + "tunnels: connections": 100,
            relay.F + "tunnels: p99/p50": 2.5, relay.F + "errors, all rows": 0}
    figs.update({relay.F + k: v for k, v in overrides.items()})
    return figs


def test_targets_pass_within_their_limits():
    rows = relay.targets(_figures())
    assert [r["verdict"] for r in rows] == ["PASS"] * 4
    by_name = {r["name"]: r for r in rows}
    assert by_name["relay bulk stream: tunnel MB/s / socat two-hop MB/s"]["value"] == pytest.approx(0.31)
    assert by_name["relay round trip of 64 bytes: added p50 (ms)"]["value"] == pytest.approx(0.45)
    assert "relay 100 concurrent tunnels: p99/p50" in by_name


def test_targets_fail_beyond_their_limits_and_a_missing_figure_is_not_a_pass():
    rows = relay.targets(_figures(**{relay.BULK_RATIO: 24.9, relay.ADDED_P50: 1001, "tunnels: p99/p50": 3.2,
                                     "errors, all rows": 1}))
    assert [r["verdict"] for r in rows] == ["FAIL"] * 4
    rows = relay.targets(_figures(**{relay.ADDED_P50: "-"}))
    assert [r["verdict"] for r in rows] == ["PASS", "N/A", "PASS", "PASS"]
    figs = _figures()
    del figs[relay.F + "tunnels: p99/p50"]
    assert relay.targets(figs)[2]["verdict"] == "N/A"


def test_no_targets_when_the_group_did_not_run():
    assert relay.targets({"sweep: expired entries": 100}) == []


def test_a_group_that_failed_before_measuring_shows_its_targets_unmet():
    rows = relay.targets({relay.F + "failed": "RuntimeError: tunnel exited with code 2",
                          relay.F + "errors, all rows": 1})
    assert [r["verdict"] for r in rows] == ["N/A", "N/A", "N/A", "FAIL"]


def test_sizes_come_from_the_environment_with_full_and_quick_defaults():
    assert relay.Sizes.from_env(False, {}) == relay.Sizes(200_000_000, 100, 100)
    assert relay.Sizes.from_env(True, {}) == relay.Sizes(20_000_000, 10, 20)
    assert relay.Sizes.from_env(False, {"BENCH_RELAY_BULK_MB": "0.5", "BENCH_RELAY_TUNNELS": "3",
                                        "BENCH_RELAY_SESSIONS": "4"}) == relay.Sizes(500_000, 3, 4)


def test_messages_are_64_bytes_and_never_start_the_sink():
    for worker in range(50):
        message = relay.message(worker)
        assert len(message) == relay.MESSAGE_BYTES and message[:1] != relay.SINK


async def test_the_target_echoes_or_counts_what_it_sinks():
    server = await asyncio.get_running_loop().create_server(relay._Target, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        message = relay.message(7)
        writer.write(message)
        assert await reader.readexactly(len(message)) == message
        writer.write_eof()
        assert await reader.read() == b""  # the echo closes after EOF
        writer.close()
        # more than one chunk and a partial one; bulk_send raises unless the sink counted every byte
        assert await asyncio.to_thread(relay.bulk_send, ("127.0.0.1", port), 2 * relay.BULK_CHUNK + 12_345) > 0
    finally:
        server.close()
        await server.wait_closed()
