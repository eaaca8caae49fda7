"""`make bench`: every scenario of issue 7, ours and theirs with the same load generator, then
bench/results/latest.{md,json,png} and the table on stdout.

    python -m bench.run            # the full run (aim: < 15 minutes on 2 cores)
    python -m bench.run --quick    # smoke check: short runs, 1 and 4 clients, scale 0.01
    python -m bench.run --profile  # also py-spy profiles of authz Check and depot Reveal (extra runs)

Environment: BENCH_SCALE (default 1.0, 0.01 with --quick) multiplies the scale sizes (1,000,000 entries,
100,000 principals, 100,000 expired entries, 1,000,000 log events); BENCH_DURATION_S / BENCH_WARMUP_S the
length of each measured run and its warm-up; BENCH_CLIENTS e.g. "1,32"; BENCH_KEEP=1 keeps the work dir."""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from bench import httpclient, load, loginflood, peers, relay, report, stats, suite, tracing
from bench.probe import METHOD as PROBE_METHOD
from bench.probe import Request as ProbeRequest
from bench.probe import Response as ProbeResponse
from remotesupport.authz.v1 import authz_pb2, authz_pb2_grpc
from remotesupport.depot.v1 import depot_pb2, depot_pb2_grpc
from services.kit import permissions as P

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
N_SECRETS = 100  # entries revealed round-robin, on both sides

COMPARISONS = [
    {"label": "empty RPC: kit floor vs bare grpc.aio", "scenario": "floor", "ours": "kit", "ours_label": "kit",
     "ref_scenario": "floor", "ref": "bare", "ref_label": "bare grpc.aio"},
    {"label": "authz Check vs Cerbos CheckResources", "scenario": "check", "ours": "ours", "ours_label": "authz",
     "ref_scenario": "check", "ref": "cerbos", "ref_label": "Cerbos"},
    {"label": "depot RevealLogonData vs OpenBao audited KV v2 read", "scenario": "reveal", "ours": "ours",
     "ours_label": "depot+authz", "ref_scenario": "reveal", "ref": "openbao", "ref_label": "OpenBao"},
    {"label": "depot CreateLogonData vs OpenBao KV v2 write", "scenario": "create", "ours": "ours",
     "ours_label": "depot+authz+connections", "ref_scenario": "create", "ref": "openbao", "ref_label": "OpenBao"},
    {"label": "gateway pass-through reveal vs empty-RPC chain", "scenario": "gateway-reveal", "ours": "ours",
     "ours_label": "gateway+depot+authz", "ref_scenario": "gateway-reveal", "ref": "chain",
     "ref_label": "3 kit probes"},
    {"label": "list a page: big vs small system", "scenario": "list", "ours": "big", "ours_label": "big",
     "ref_scenario": "list", "ref": "small", "ref_label": "small"},
    {"label": "Check: many vs 10 principals", "scenario": "check-scale", "ours": "many", "ours_label": "many",
     "ref_scenario": "check-scale", "ref": "few", "ref_label": "few"},
    loginflood.COMPARISON,
]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.scale = float(os.environ.get("BENCH_SCALE", "0.01" if self.quick else "1.0"))
        self.duration = float(os.environ.get("BENCH_DURATION_S", "2" if self.quick else "8"))
        self.warmup = float(os.environ.get("BENCH_WARMUP_S", "0.5" if self.quick else "2"))
        default_clients = "1,4" if self.quick else "1,32"
        self.clients = [int(c) for c in os.environ.get("BENCH_CLIENTS", default_clients).split(",")]
        self.only = set(args.only.split(",")) if args.only else None
        self.workdir = Path(tempfile.mkdtemp(prefix="rs-bench-"))
        self.results: list[load.LoadResult] = []
        self.scale_figures: dict[str, object] = {}
        self.rss: dict[str, dict[str, float]] = {}
        self.notes: list[str] = []
        self.profiles: dict[str, dict] = {}
        self.started = dt.datetime.now(dt.timezone.utc)
        self.cleanup: list = []

    def wanted(self, group: str) -> bool:
        return self.only is None or group in self.only

    def size(self, full: int, minimum: int = 10) -> int:
        return max(minimum, int(full * self.scale))

    # --- runner ---------------------------------------------------------------------------------------
    async def measure(self, operation, *, scenario: str, side: str, processes: dict[str, int],
                      touched: tuple[str, ...] | None = None, note: str = "", clients: list[int] | None = None,
                      duration: float | None = None) -> list[load.LoadResult]:
        out = []
        for c in clients or self.clients:
            result = await load.closed_loop(operation, scenario=scenario, side=side, clients=c,
                                            duration_s=duration or self.duration, warmup_s=self.warmup,
                                            processes=processes, touched=touched, note=note)
            log(f"{scenario:<15} {side:<8} c={c:<3} {result.throughput_rps:8.0f} rps  p50 {stats.fmt_us(result.p50_s):>9}"
                f"  p99 {stats.fmt_us(result.p99_s):>9}  CPU {result.cpu_us_per_request:7.0f} µs/req"
                f"  errors {result.errors}{'  ' + str(result.error_samples) if result.errors else ''}")
            self.results.append(result)
            out.append(result)
        return out

    # --- the floor --------------------------------------------------------------------------------------
    async def floor(self) -> None:
        kit = suite.start_probe("floor", self.workdir)
        bare = suite.start_probe("bare", self.workdir, bare=True)
        self.cleanup += [kit.stop, bare.stop]
        for probe, side in ((kit, "kit"), (bare, "bare")):
            async with grpc.aio.insecure_channel(probe.address) as channel:
                call = channel.unary_unary(PROBE_METHOD, request_serializer=ProbeRequest.SerializeToString,
                                           response_deserializer=ProbeResponse.FromString)

                async def op(_w, _i, call=call):
                    await call(ProbeRequest(), timeout=10)

                await self.measure(op, scenario="floor", side=side, processes={"probe": probe.pid})
            probe.stop()

    # --- authz Check vs Cerbos ----------------------------------------------------------------------------
    def check_request(self, fx: suite.Fixture) -> authz_pb2.CheckRequest:
        return authz_pb2.CheckRequest(subject_token=fx.token, permission=P.LOGON_REVEAL,
                                      resource=authz_pb2.ResourceAttributes(
                                          customer=f"customers/{fx.customer}", installation=fx.installation,
                                          system=fx.system, owner=fx.user))

    async def check_ours(self, ours: suite.OurSuite, fx: suite.Fixture, scenario: str = "check", side: str = "ours",
                         note: str = "") -> None:
        request = self.check_request(fx)
        metadata = suite.md(fx.depot_service_token)
        async with grpc.aio.insecure_channel(ours.address("authz")) as channel:
            stub = authz_pb2_grpc.AuthzServiceStub(channel)

            async def op(_w, _i):
                response = await stub.Check(request, metadata=metadata, timeout=10)
                if not response.allowed:
                    raise RuntimeError(f"Check denied: {response.reason}")

            await self.measure(op, scenario=scenario, side=side, processes=ours.pids("authz"), note=note)

    async def check_cerbos(self, fx: suite.Fixture) -> None:
        from cerbos.engine.v1 import engine_pb2
        from cerbos.request.v1 import request_pb2
        from cerbos.svc.v1 import svc_pb2_grpc
        from google.protobuf import struct_pb2

        cerbos = peers.start_cerbos(self.workdir / "cerbos")
        self.cleanup.append(cerbos.stop)
        s = lambda v: struct_pb2.Value(string_value=v)  # noqa: E731
        request = request_pb2.CheckResourcesRequest(
            request_id="bench",
            principal=engine_pb2.Principal(id=fx.user, roles=["EDIT_MY_LOGIN_DATA"],
                                           attr={"customer": s(f"customers/{fx.customer}")}),
            resources=[request_pb2.CheckResourcesRequest.ResourceEntry(
                actions=["reveal"], resource=engine_pb2.Resource(
                    kind="logon_data", id=fx.entries[0].rsplit("/", 1)[-1],
                    attr={"customer": s(f"customers/{fx.customer}"), "owner": s(fx.user),
                          "system": s(fx.system), "installation": s(fx.installation)}))])
        async with grpc.aio.insecure_channel(cerbos.address) as channel:
            stub = svc_pb2_grpc.CerbosServiceStub(channel)

            async def op(_w, _i):
                response = await stub.CheckResources(request, timeout=10)
                if response.results[0].actions["reveal"] != 1:  # EFFECT_ALLOW
                    raise RuntimeError("Cerbos denied the reveal")

            await self.measure(op, scenario="check", side="cerbos", processes={"cerbos": cerbos.pid})
        cerbos.stop()

    # --- depot vs OpenBao ------------------------------------------------------------------------------
    @staticmethod
    def reveal_operation(stub: depot_pb2_grpc.LogonDepotServiceStub, fx: suite.Fixture):
        """One reveal per call, round-robin over the fixture's entries (the same on the depot and the gateway)."""
        metadata = suite.md(fx.token)
        n = len(fx.entries)

        async def reveal(w, i):
            response = await stub.RevealLogonData(depot_pb2.RevealLogonDataRequest(
                name=fx.entries[(w * 7 + i) % n], reason="benchmark"), metadata=metadata, timeout=10)
            if not response.secret or not response.user_name:
                raise RuntimeError("reveal returned no secret")
        return reveal

    async def measure_reveal(self, ours: suite.OurSuite, fx: suite.Fixture, *, scenario: str,
                             side: str) -> list[load.LoadResult]:
        """The depot's RevealLogonData, called directly; CPU of the depot and authz."""
        async with grpc.aio.insecure_channel(ours.address("depot")) as channel:
            return await self.measure(self.reveal_operation(depot_pb2_grpc.LogonDepotServiceStub(channel), fx),
                                      scenario=scenario, side=side,
                                      processes=ours.pids("depot", "authz", "connections", "gateway"),
                                      touched=("depot", "authz"))

    async def depot_ours(self, ours: suite.OurSuite, fx: suite.Fixture) -> None:
        if self.wanted("reveal"):
            await self.measure_reveal(ours, fx, scenario="reveal", side="ours")
        metadata = suite.md(fx.token)
        async with grpc.aio.insecure_channel(ours.address("depot")) as channel:
            stub = depot_pb2_grpc.LogonDepotServiceStub(channel)

            async def create(w, i):
                response = await stub.CreateLogonData(suite.entry_request(fx.system, w * 1_000_000 + i),
                                                      metadata=metadata, timeout=10)
                if not response.logon_data.name:
                    raise RuntimeError("create returned no name")

            if self.wanted("create"):
                await self.measure(create, scenario="create", side="ours",
                                   processes=ours.pids("depot", "authz", "connections", "gateway"),
                                   touched=("depot", "authz", "connections"))

    async def depot_openbao(self) -> None:
        bao = peers.start_openbao(self.workdir / "openbao")
        self.cleanup.append(bao.stop)
        token = await peers.openbao_client_token(bao)
        headers = {"X-Vault-Token": token}
        setup = httpclient.KeepAliveConnection("127.0.0.1", bao.port, headers)
        for k in range(N_SECRETS):
            await setup.json("POST", f"/v1/secret/data/bench/e{k}",
                             {"data": {"user_name": f"BENCH{k:05d}", "password": f"pw-{k:06d}-0123456789ab"}})
        await setup.close()
        connections: dict[int, httpclient.KeepAliveConnection] = {}

        def conn(w: int) -> httpclient.KeepAliveConnection:
            if w not in connections:
                connections[w] = httpclient.KeepAliveConnection("127.0.0.1", bao.port, headers)
            return connections[w]

        async def read(w, i):
            body = await conn(w).json("GET", f"/v1/secret/data/bench/e{(w * 7 + i) % N_SECRETS}")
            data = body["data"]["data"]
            if not data.get("password") or not data.get("user_name"):
                raise RuntimeError("OpenBao returned no secret")

        async def write(w, i):
            body = await conn(w).json("POST", f"/v1/secret/data/bench/w{w}-{i}",
                                      {"data": {"user_name": f"BENCH{i:05d}", "password": f"pw-{i:06d}-0123456789ab"}})
            if not body["data"].get("version"):
                raise RuntimeError("OpenBao wrote no version")

        try:
            if self.wanted("reveal"):
                await self.measure(read, scenario="reveal", side="openbao", processes={"openbao": bao.pid})
            if self.wanted("create"):
                await self.measure(write, scenario="create", side="openbao", processes={"openbao": bao.pid})
            audit_lines = sum(1 for _ in open(bao.extra["audit_log"], "rb"))
            self.notes.append(f"OpenBao's file audit device wrote {audit_lines} lines (request + response per call).")
        finally:
            for c in connections.values():
                await c.close()
            bao.stop()

    # --- gateway vs chain -------------------------------------------------------------------------------
    async def gateway(self, ours: suite.OurSuite, fx: suite.Fixture) -> None:
        async with grpc.aio.insecure_channel(ours.address("gateway")) as channel:
            reveal = self.reveal_operation(depot_pb2_grpc.LogonDepotServiceStub(channel), fx)
            await self.measure(reveal, scenario="gateway-reveal", side="ours",
                               processes=ours.pids("gateway", "depot", "authz", "connections"),
                               touched=("gateway", "depot", "authz"))
        p3 = suite.start_probe("chain-authz", self.workdir)
        p2 = suite.start_probe("chain-depot", self.workdir, next_address=p3.address)
        p1 = suite.start_probe("chain-gateway", self.workdir, next_address=p2.address)
        self.cleanup += [p1.stop, p2.stop, p3.stop]
        async with grpc.aio.insecure_channel(p1.address) as channel:
            call = channel.unary_unary(PROBE_METHOD, request_serializer=ProbeRequest.SerializeToString,
                                       response_deserializer=ProbeResponse.FromString)

            async def op(_w, _i):
                await call(ProbeRequest(), timeout=10)

            await self.measure(op, scenario="gateway-reveal", side="chain",
                               processes={"p-gateway": p1.pid, "p-depot": p2.pid, "p-authz": p3.pid})
        for p in (p1, p2, p3):
            p.stop()

    # --- scale ------------------------------------------------------------------------------------------
    async def list_page(self, ours: suite.OurSuite, fx: suite.Fixture, side: str, stored: int) -> None:
        metadata = suite.md(fx.token)
        async with grpc.aio.insecure_channel(ours.address("depot")) as channel:
            stub = depot_pb2_grpc.LogonDepotServiceStub(channel)
            request = depot_pb2.ListLogonDataRequest(parent=fx.list_system, page_size=50)

            async def op(_w, _i):
                response = await stub.ListLogonData(request, metadata=metadata, timeout=30)
                if len(response.logon_data) < min(50, stored):
                    raise RuntimeError(f"a page of {len(response.logon_data)} entries")

            await self.measure(op, scenario="list", side=side,
                               processes=ours.pids("depot", "authz", "connections", "gateway"),
                               touched=("depot", "authz", "connections"), note=f"{stored} entries in the system")

    def progress(self, what: str):
        last = [time.monotonic()]

        def report_progress(done: int, total: int) -> None:
            if time.monotonic() - last[0] > 15 or done == total:
                last[0] = time.monotonic()
                log(f"  {what}: {done:,}/{total:,}")
        return report_progress

    async def scale_scenarios(self, ours: suite.OurSuite, fx: suite.Fixture) -> None:
        figs = self.scale_figures
        depot_db, authz_db = ours.db_path("depot"), ours.db_path("authz")
        small, big = self.size(1_000), self.size(1_000_000, 1_000)
        if self.wanted("list"):
            have = suite.count_entries(depot_db, fx.list_system)
            figs["list: entries, small state"] = small
            suite.bulk_entries(depot_db, fx.list_system, small - have)
            await self.list_page(ours, fx, "small", small)
            self.rss[f"{small:,} entries in the listed system"] = ours.rss()
            log(f"inserting {big - small:,} entries into {fx.list_system} ...")
            seconds = suite.bulk_entries(depot_db, fx.list_system, big - small, progress=self.progress("entries"))
            figs["list: entries, big state"] = big
            figs["setup: bulk insert of the big state's entries (s)"] = round(seconds, 1)
            figs["depot database size after it (MiB)"] = round(suite.sqlite_size_mib(depot_db), 0)
            await self.list_page(ours, fx, "big", big)
            self.rss[f"{big:,} entries in the listed system"] = ours.rss()
        if self.wanted("check-scale"):
            few = suite.count_principals(authz_db)
            figs["check: principals, few state"] = few
            await self.check_ours(ours, fx, "check-scale", "few", note=f"{few} principals")
            many = self.size(100_000, 100)
            log(f"inserting {many:,} principals (with a grant and a token each) into authz ...")
            seconds = suite.bulk_principals(authz_db, fx.customer, many, progress=self.progress("principals"))
            figs["setup: bulk insert of the principals (s)"] = round(seconds, 1)
            total = suite.count_principals(authz_db)
            figs["check: principals, many state"] = total
            await self.check_ours(ours, fx, "check-scale", "many", note=f"{total} principals")
            self.rss[f"{total:,} principals in authz"] = ours.rss()
        if self.wanted("sweep"):
            expired = self.size(100_000, 100)
            log(f"stopping depot; inserting {expired:,} expired entries into {fx.sweep_system} ...")
            ours.supervisor.stop("depot")
            past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
            seconds = suite.bulk_entries(depot_db, fx.sweep_system, expired, expire_time=past,
                                         progress=self.progress("expired entries"))
            figs["setup: bulk insert of the expired entries (s)"] = round(seconds, 1)
            before = suite.count_entries(depot_db, fx.sweep_system, expired_before=past)
            started = time.perf_counter()
            process = ours.popen_restart("depot")
            serving_at = None
            limit = float(os.environ.get("BENCH_SWEEP_MAX_S", "60" if self.quick else "180"))
            remaining = before
            while time.perf_counter() - started < limit:
                await asyncio.sleep(0.5)
                if process.poll() is not None:
                    raise RuntimeError(f"depot exited with code {process.returncode} during the sweep")
                if serving_at is None:
                    try:
                        ours.wait_serving("depot", timeout=0.2)
                        serving_at = time.perf_counter() - started
                    except (TimeoutError, RuntimeError):
                        pass
                remaining = suite.count_entries(depot_db, fx.sweep_system, expired_before=past)
                if remaining == 0:
                    break
            elapsed = time.perf_counter() - started
            cpu = stats.cpu_seconds(process.pid)
            figs["sweep: expired entries"] = before
            figs["sweep: left when measuring stopped"] = remaining
            figs["sweep: seconds from depot start (s)"] = round(elapsed, 1)
            figs["sweep: depot CPU, incl. its start-up (s)"] = round(cpu, 1)
            figs["sweep: depot SERVING after (s)"] = round(serving_at, 1) if serving_at else "not during the sweep"
            if remaining:
                rate = (before - remaining) / elapsed
                figs["sweep: entries deleted per second"] = round(rate, 1)
                figs["sweep: projected seconds for all (s)"] = round(before / rate, 1) if rate else math.inf
                log(f"sweep stopped after {elapsed:.0f} s with {remaining:,} left ({rate:.0f}/s); removing the rest "
                    "directly so the next scenario runs on a quiet depot")
                ours.supervisor.stop("depot")
                suite.delete_expired(depot_db, fx.sweep_system, past)
                ours.restart("depot")
            else:
                figs["sweep: projected seconds for all (s)"] = round(elapsed, 1)
                if serving_at is None:
                    ours.wait_serving("depot")
            self.rss["after the sweep"] = ours.rss()
            log(f"sweep of {before:,} expired entries: {elapsed:.1f} s ({remaining:,} left)")
        if self.wanted("verify"):
            events = self.size(1_000_000, 1_000)
            log(f"appending {events:,} chained log events for customers/{fx.log_customer} ...")
            seconds = suite.bulk_log_events(depot_db, fx.log_customer, events, progress=self.progress("events"))
            figs["setup: bulk insert of the chained events (s)"] = round(seconds, 1)
            async with grpc.aio.insecure_channel(ours.address("depot")) as channel:
                stub = depot_pb2_grpc.LogonDepotServiceStub(channel)
                pids = ours.pids("depot", "authz")
                cpu0 = stats.total_cpu_seconds(pids.values())
                started = time.perf_counter()
                response = await stub.VerifyLog(depot_pb2.VerifyLogRequest(parent=f"customers/{fx.log_customer}"),
                                                metadata=suite.md(fx.log_token), timeout=1800)
                elapsed = time.perf_counter() - started
                cpu1 = stats.total_cpu_seconds(pids.values())
            figs["verify: events"] = events
            figs["verify: valid"] = response.valid
            figs["verify: events checked"] = response.events_checked
            figs["verify: seconds (s)"] = round(elapsed, 1)
            figs["verify: depot+authz CPU (s)"] = round(sum(cpu1[p] - cpu0[p] for p in cpu0), 1)
            self.rss[f"after VerifyLog over {events:,} events"] = ours.rss()
            log(f"VerifyLog over {events:,} events: {elapsed:.1f} s, valid={response.valid}")

    # --- profiles ----------------------------------------------------------------------------------------
    async def profile(self, ours: suite.OurSuite, fx: suite.Fixture) -> None:
        """py-spy at the highest concurrency: on authz during Check, on depot and authz during Reveal, on depot and
        connections during Create."""
        from bench import profile as prof
        c = max(self.clients)
        duration = max(4.0, self.duration)
        request = self.check_request(fx)
        async with grpc.aio.insecure_channel(ours.address("authz")) as channel:
            stub = authz_pb2_grpc.AuthzServiceStub(channel)

            async def check(_w, _i):
                await stub.Check(request, metadata=suite.md(fx.depot_service_token), timeout=10)

            self.profiles.update(await prof.during(
                check, c, duration, {"authz during Check": ours.pid("authz")}, self.workdir / "profiles"))
        async with grpc.aio.insecure_channel(ours.address("depot")) as channel:
            stub = depot_pb2_grpc.LogonDepotServiceStub(channel)

            async def reveal(w, i):
                await stub.RevealLogonData(depot_pb2.RevealLogonDataRequest(
                    name=fx.entries[(w * 7 + i) % len(fx.entries)], reason="benchmark"),
                    metadata=suite.md(fx.token), timeout=10)

            self.profiles.update(await prof.during(
                reveal, c, duration, {"depot during Reveal": ours.pid("depot"), "authz during Reveal": ours.pid("authz")},
                self.workdir / "profiles"))

            async def create(w, i):
                await stub.CreateLogonData(suite.entry_request(fx.system, 900_000_000 + w * 1_000_000 + i),
                                           metadata=suite.md(fx.token), timeout=10)

            self.profiles.update(await prof.during(
                create, c, duration, {"depot during Create": ours.pid("depot"),
                                      "connections during Create": ours.pid("connections")},
                self.workdir / "profiles"))
        for name, p in self.profiles.items():
            p["what"] = f"{c} clients, {duration:.0f} s, py-spy at 100 Hz (a separate run: sampling pauses the process)"

    # --- all -------------------------------------------------------------------------------------------
    async def run(self) -> dict:
        t0 = time.perf_counter()
        log(f"work dir {self.workdir}; clients {self.clients}; {self.duration}s runs after {self.warmup}s warm-up; "
            f"scale {self.scale}")
        if self.wanted("floor"):
            await self.floor()
        ours = suite.OurSuite(self.workdir / "suite")
        self.cleanup.append(ours.stop)
        log("starting authz, connections, depot, gateway ...")
        ours.start()
        fx = await ours.setup(N_SECRETS)
        self.rss["after setup (100 entries)"] = ours.rss()
        log(f"setup: customer {fx.customer}, {len(fx.entries)} entries in {fx.system}")
        if self.wanted("check"):
            await self.check_ours(ours, fx)
            await self.check_cerbos(fx)
        if self.wanted("loginflood"):
            await loginflood.check_during_login_flood(self, ours, fx)
        if self.wanted("reveal") or self.wanted("create"):
            await self.depot_ours(ours, fx)
            await self.depot_openbao()
        if self.wanted("gateway"):
            await self.gateway(ours, fx)
        if self.wanted("tracing"):  # issue 19: a reveal's CPU with tracing off and on
            await tracing.run_group(self, ours, fx)
        if self.wanted("relay"):  # issue 16: rsctl tunnel + relay + rsctl connector vs socat and direct TCP
            await relay.run_group(self, ours)
        if self.args.profile:
            try:
                await self.profile(ours, fx)
            except (RuntimeError, OSError) as exc:  # a profiler that cannot attach must not lose the figures
                self.notes.append(f"profiles not taken: {exc}")
                log(f"profiles not taken: {exc}")
        self.rss["after the throughput scenarios"] = ours.rss()
        await self.scale_scenarios(ours, fx)
        ours.stop()
        return self.data(time.perf_counter() - t0)

    def data(self, total_s: float) -> dict:
        results = [r.to_dict() for r in self.results]
        floor = {r["clients"]: r for r in results if r["scenario"] == "floor" and r["side"] == "kit"}
        comparisons = report.comparison_rows(results, COMPARISONS, self.clients, floor)
        for comp in comparisons:  # the scale comparisons carry their sizes in the label
            if comp["comparison"].startswith("list"):
                comp["ours_label"] = f"{self.scale_figures.get('list: entries, big state', '?'):,} entries"
                comp["ref_label"] = f"{self.scale_figures.get('list: entries, small state', '?'):,}"
            if comp["comparison"].startswith("Check: many"):
                comp["ours_label"] = f"{self.scale_figures.get('check: principals, many state', '?'):,} principals"
                comp["ref_label"] = f"{self.scale_figures.get('check: principals, few state', '?'):,}"
        return {
            "meta": {"mode": "quick" if self.quick else "full", "started": self.started.strftime("%Y-%m-%d %H:%M UTC"),
                     "git": git_revision(),
                     "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
                     "scale": self.scale, "duration_s": self.duration, "warmup_s": self.warmup,
                     "clients": self.clients, "total_s": total_s},
            "targets": targets(comparisons, self.scale_figures, self.clients, self.scale)
            + relay.targets(self.scale_figures) + tracing.targets(self.scale_figures, self.clients),
            "comparisons": comparisons,
            "results": results,
            "scale": {"figures": self.scale_figures, "rss_mib": self.rss},
            "profiles": self.profiles,
            "notes": self.notes,
        }

    def close(self) -> None:
        for stop in reversed(self.cleanup):
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - clean up the rest
                log(f"cleanup: {exc}")
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            log(f"kept {self.workdir}")


def git_revision() -> str:
    """The commit measured, with '+changes' when the work tree differs from it (services move fast)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=HERE.parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "services", "gateway"], capture_output=True,
                               text=True, timeout=10, cwd=HERE.parent).stdout.strip()
        return head + ("+changes" if dirty else "") if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _row(comparisons: list[dict], prefix: str, clients: int) -> dict | None:
    return next((r for r in comparisons if r["comparison"].startswith(prefix) and r["clients"] == clients), None)


def targets(comparisons: list[dict], figs: dict, clients: list[int], scale: float) -> list[dict]:
    """Issue 7's targets, each with the value measured in this run and its verdict."""
    out = []
    hi = max(clients)

    def add(name: str, value, op: str, limit: float, unit: str = "") -> None:
        t = stats.Target(name, op, limit)
        out.append({"name": name, "value": value if value is not None else math.nan, "op": op, "limit": limit,
                    "verdict": t.verdict(value if value is not None else math.nan), "unit": unit})

    for c in clients:
        r = _row(comparisons, "authz Check", c)
        add(f"authz Check CPU / Cerbos, {c} client(s)", r and r["cpu_ratio"], "<=", 1.0)
    for c in clients:
        r = _row(comparisons, "depot RevealLogonData", c)
        add(f"depot reveal CPU (depot+authz) / OpenBao audited KV read, {c} client(s)", r and r["cpu_ratio"], "<=", 2.5)
    r = _row(comparisons, "gateway pass-through", hi)
    add(f"gateway reveal throughput / empty-RPC chain, {hi} clients", r and r["rps_ratio"], ">=", 0.8)
    for prefix, what in (("authz Check", "authz Check"), ("depot RevealLogonData", "depot reveal"),
                         ("depot CreateLogonData", "depot create"), ("gateway pass-through", "gateway reveal"),
                         ("list a page", "list page (big)"), ("Check: many", "Check (many principals)")):
        r = _row(comparisons, prefix, hi)
        add(f"{what}: p99/p50 at {hi} clients", r and r["ours_p99_over_p50"], "<=", 3.0)
    errors = sum((r["ours_errors"] or 0) for r in comparisons if not math.isnan(r["ours_errors"] or 0))
    add("errors in our scenarios (all runs)", float(errors), "<=", 0)
    r1 = _row(comparisons, "list a page", min(clients))
    rh = _row(comparisons, "list a page", hi)
    worst = max((x for x in (r1 and r1["p50_ratio"], r1 and r1["cpu_ratio"], rh and rh["cpu_ratio"])
                 if x is not None and not math.isnan(x)), default=None)
    add(f"list page {figs.get('list: entries, big state', '?')}/{figs.get('list: entries, small state', '?')} entries "
        "(worst of p50 at 1 client and CPU/req)", worst, "<=", 1.5)
    r1 = _row(comparisons, "Check: many", min(clients))
    rh = _row(comparisons, "Check: many", hi)
    worst = max((x for x in (r1 and r1["p50_ratio"], r1 and r1["cpu_ratio"], rh and rh["cpu_ratio"])
                 if x is not None and not math.isnan(x)), default=None)
    add(f"Check {figs.get('check: principals, many state', '?')}/{figs.get('check: principals, few state', '?')} "
        "principals (worst of p50 at 1 client and CPU/req)", worst, "<=", 1.2)
    sweep = figs.get("sweep: projected seconds for all (s)")  # measured, or projected at the measured rate
    add(f"sweep {figs.get('sweep: expired entries', '?')} expired entries (s)", sweep, "<=", 60, "s")
    verify = figs.get("verify: seconds (s)")
    if figs.get("verify: valid") is False:
        verify = math.inf
    add(f"VerifyLog over {figs.get('verify: events', '?')} events (s)", verify, "<=", 60, "s")
    if scale != 1.0:
        out.append({"name": f"(scale {scale}: the scale targets are measured on reduced sizes)", "value": math.nan,
                    "op": "", "limit": math.nan, "verdict": "N/A", "unit": ""})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs, 1 and 4 clients, scale 0.01")
    parser.add_argument("--profile", action="store_true", help="py-spy profiles of Check and Reveal (extra runs)")
    parser.add_argument("--only", default="", help="comma list of: floor,check,loginflood,reveal,create,gateway,"
                                                   "list,check-scale,sweep,verify,relay,tracing")
    parser.add_argument("--out", default=str(RESULTS), help="where latest.{md,json,png} go")
    args = parser.parse_args()
    bench = Bench(args)
    try:
        data = asyncio.run(bench.run())
    finally:
        bench.close()
    md = report.write_all(Path(args.out), data)
    print()
    print(md)
    print(f"written: {Path(args.out) / 'latest.md'}, latest.json, latest.png")


if __name__ == "__main__":
    main()
