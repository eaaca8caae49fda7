"""The benchmark report's bounds: what the required hops cost alone, against each CPU target's budget."""
from __future__ import annotations

import math

import pytest

from bench import report
from bench.load import LoadResult


def run(scenario: str, side: str, clients: int, cpu: float, **by_process: float) -> dict:
    """One run's result as the load generator records it (only the CPU figures matter here)."""
    return LoadResult(scenario=scenario, side=side, clients=clients, requests=100, errors=0, window_s=1.0,
                      throughput_rps=100.0, p50_s=0.001, p90_s=0.002, p99_s=0.003, max_s=0.004, mean_s=0.001,
                      cpu_us_per_request=cpu, cpu_us_by_process=by_process or {side: cpu},
                      touched=list(by_process or [side])).to_dict()


RESULTS = [
    run("floor", "kit", 32, 420.0), run("check", "cerbos", 32, 395.0), run("check", "ours", 32, 608.0),
    run("reveal", "openbao", 32, 545.0), run("reveal", "ours", 32, 2387.0),
    run("gateway-reveal", "chain", 32, 2138.0, **{"p-gateway": 792.0, "p-depot": 799.0, "p-authz": 547.0}),
    run("floor", "kit", 1, 679.0), run("check", "cerbos", 1, 803.0),  # no reveal figures at 1 client
]


def test_bounds_put_the_required_hops_against_each_budget():
    rows = {(r["target"], r["clients"]): r for r in report.bounds(RESULTS)}
    assert set(rows) == {("authz Check <= 1.0 x Cerbos", 1), ("authz Check <= 1.0 x Cerbos", 32),
                         ("depot reveal <= 2.5 x OpenBao", 32)}
    check = rows[("authz Check <= 1.0 x Cerbos", 32)]
    assert (check["budget_us"], check["hops_us"], check["ours_us"]) == (395.0, 420.0, 608.0)
    assert check["share"] == pytest.approx(420 / 395)
    reveal = rows[("depot reveal <= 2.5 x OpenBao", 32)]
    assert reveal["budget_us"] == pytest.approx(1362.5) and reveal["hops_us"] == 799.0 + 547.0
    assert reveal["share"] == pytest.approx(1346 / 1362.5) and reveal["ours_us"] == 2387.0
    assert math.isnan(rows[("authz Check <= 1.0 x Cerbos", 1)]["ours_us"])  # no run of ours at 1 client here


def test_the_bounds_section_is_rendered_after_the_targets():
    data = {"meta": {"mode": "full", "started": "now", "machine": "m", "scale": 1.0, "duration_s": 8,
                     "warmup_s": 2}, "targets": [], "comparisons": [], "results": RESULTS}
    md = report.render_markdown(data)
    assert md.index("## Targets") < md.index("## Bounds") < md.index("## Comparisons")
    assert "| depot reveal <= 2.5 x OpenBao | 32 | 1362 |" in md and "| 99 % | 2387 |" in md
    assert "| authz Check <= 1.0 x Cerbos | 32 | 395 | an empty RPC on the kit | 420 | 106 % | 608 |" in md


def test_no_bounds_section_without_the_figures_it_needs():
    data = {"meta": {"mode": "quick", "started": "now", "machine": "m", "scale": 0.01, "duration_s": 2,
                     "warmup_s": 1}, "targets": [], "comparisons": [], "results": [run("floor", "kit", 1, 500.0)]}
    assert report.bounds(data["results"]) == [] and "## Bounds" not in report.render_markdown(data)
