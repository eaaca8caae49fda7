"""bench/results/latest.{json,md,png} and the table printed by `make bench`."""
from __future__ import annotations

import json
import math
from pathlib import Path

from bench.stats import fmt_num, fmt_us, ratio


def _pick(results: list[dict], scenario: str, side: str, clients: int) -> dict | None:
    for r in results:
        if r["scenario"] == scenario and r["side"] == side and r["clients"] == clients:
            return r
    return None


def comparison_rows(results: list[dict], comparisons: list[dict], clients: list[int], floor: dict[int, dict]) -> list[dict]:
    rows = []
    for comp in comparisons:
        for c in clients:
            ours = _pick(results, comp["scenario"], comp["ours"], c)
            ref = _pick(results, comp["ref_scenario"], comp["ref"], c)
            if ours is None and ref is None:
                continue
            get = lambda r, k: r[k] if r is not None else math.nan  # noqa: E731
            fl = floor.get(c)
            rows.append({
                "comparison": comp["label"], "clients": c, "ours_label": comp["ours_label"], "ref_label": comp["ref_label"],
                "ours_rps": get(ours, "throughput_rps"), "ref_rps": get(ref, "throughput_rps"),
                "rps_ratio": ratio(get(ours, "throughput_rps"), get(ref, "throughput_rps")),
                "ours_p50": get(ours, "p50_s"), "ref_p50": get(ref, "p50_s"),
                "p50_ratio": ratio(get(ours, "p50_s"), get(ref, "p50_s")),
                "ours_p99": get(ours, "p99_s"), "ref_p99": get(ref, "p99_s"),
                "p99_ratio": ratio(get(ours, "p99_s"), get(ref, "p99_s")),
                "ours_p99_over_p50": ratio(get(ours, "p99_s"), get(ours, "p50_s")),
                "ours_cpu": get(ours, "cpu_us_per_request"), "ref_cpu": get(ref, "cpu_us_per_request"),
                "cpu_ratio": ratio(get(ours, "cpu_us_per_request"), get(ref, "cpu_us_per_request")),
                "cpu_over_floor": ratio(get(ours, "cpu_us_per_request"), fl["cpu_us_per_request"] if fl else math.nan),
                "ours_errors": get(ours, "errors"), "ref_errors": get(ref, "errors"),
                "ours_touched": "+".join(ours["touched"]) if ours else "", "ref_touched": "+".join(ref["touched"]) if ref else "",
            })
    return rows


def bounds(results: list[dict]) -> list[dict]:
    """For the CPU targets: what the hops the design requires cost alone, measured in this run, against the
    target's budget. Check: one hop (an empty RPC on the kit) against Cerbos's whole check. Reveal: the depot's
    hop with its call plus authz's hop (the chain's probes for them) against 2.5 x OpenBao's audited read.
    A share over 100 % means no amount of work on our side can meet the target with these hops."""
    out = []
    clients = sorted({r["clients"] for r in results})
    for c in clients:
        floor, cerbos, check = (_pick(results, "floor", "kit", c), _pick(results, "check", "cerbos", c),
                                _pick(results, "check", "ours", c))
        if floor and cerbos:
            out.append(_bound("authz Check <= 1.0 x Cerbos", c, cerbos["cpu_us_per_request"],
                              "an empty RPC on the kit", floor["cpu_us_per_request"], check))
        chain, openbao, reveal = (_pick(results, "gateway-reveal", "chain", c), _pick(results, "reveal", "openbao", c),
                                  _pick(results, "reveal", "ours", c))
        hops = chain and [chain["cpu_us_by_process"].get(p) for p in ("p-depot", "p-authz")]
        if openbao and hops and all(h is not None for h in hops):
            out.append(_bound("depot reveal <= 2.5 x OpenBao", c, 2.5 * openbao["cpu_us_per_request"],
                              "the depot's hop with its call + authz's hop (chain probes)", sum(hops), reveal))
    return out


def _bound(target: str, clients: int, budget: float, hops: str, cost: float, ours: dict | None) -> dict:
    return {"target": target, "clients": clients, "budget_us": budget, "required_hops": hops, "hops_us": cost,
            "share": ratio(cost, budget), "ours_us": ours["cpu_us_per_request"] if ours else math.nan}


def bounds_markdown(rows: list[dict]) -> str:
    return _md_table(["target", "c", "budget CPU µs", "required hops, measured alone", "their CPU µs",
                      "share of the budget", "ours CPU µs"],
                     [[r["target"], str(r["clients"]), f"{r['budget_us']:.0f}", r["required_hops"],
                       f"{r['hops_us']:.0f}", f"{r['share'] * 100:.0f} %" if not math.isnan(r["share"]) else "-",
                       f"{r['ours_us']:.0f}" if not math.isnan(r["ours_us"]) else "-"] for r in rows])


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def comparison_markdown(rows: list[dict]) -> str:
    header = ["comparison (ours / reference)", "c", "rps ours / ref", "×", "p50 ours / ref", "×", "p99 ours / ref", "×",
              "p99/p50 ours", "CPU µs/req ours / ref", "×", "CPU ×floor", "errors ours / ref"]
    body = []
    for r in rows:
        body.append([
            f"{r['comparison']} ({r['ours_label']} / {r['ref_label']})", str(r["clients"]),
            f"{fmt_num(r['ours_rps'], 0)} / {fmt_num(r['ref_rps'], 0)}", fmt_num(r["rps_ratio"]),
            f"{fmt_us(r['ours_p50'])} / {fmt_us(r['ref_p50'])}", fmt_num(r["p50_ratio"]),
            f"{fmt_us(r['ours_p99'])} / {fmt_us(r['ref_p99'])}", fmt_num(r["p99_ratio"]),
            fmt_num(r["ours_p99_over_p50"]),
            f"{fmt_num(r['ours_cpu'], 0)} / {fmt_num(r['ref_cpu'], 0)}", fmt_num(r["cpu_ratio"]),
            fmt_num(r["cpu_over_floor"]),
            f"{fmt_num(r['ours_errors'], 0)} / {fmt_num(r['ref_errors'], 0)}",
        ])
    return _md_table(header, body)


def targets_markdown(targets: list[dict]) -> str:
    return _md_table(["target", "measured", "limit", "verdict"],
                     [[t["name"], fmt_num(t["value"], 2 if t.get("unit") != "s" else 1) + (" s" if t.get("unit") == "s" else ""),
                       f"{t['op']} {t['limit']:g}", t["verdict"]] for t in targets])


def results_markdown(results: list[dict]) -> str:
    header = ["scenario", "side", "c", "requests", "errors", "rps", "p50", "p90", "p99", "max", "CPU µs/req (touched)",
              "CPU µs/req by process", "client CPU µs/req", "load 1m"]
    body = []
    for r in results:
        body.append([r["scenario"], r["side"], str(r["clients"]), str(r["requests"]), str(r["errors"]),
                     fmt_num(r["throughput_rps"], 0), fmt_us(r["p50_s"]), fmt_us(r["p90_s"]), fmt_us(r["p99_s"]),
                     fmt_us(r["max_s"]), f"{fmt_num(r['cpu_us_per_request'], 0)} ({'+'.join(r['touched'])})",
                     ", ".join(f"{k} {fmt_num(v, 0)}" for k, v in r["cpu_us_by_process"].items()),
                     fmt_num(r["client_cpu_us_per_request"], 0), fmt_num(r.get("loadavg_1m"), 1)])
    return _md_table(header, body)


def scale_markdown(scale: dict) -> str:
    rows = [[k, (fmt_num(v, 1) + (" s" if k.endswith("(s)") else "")) if isinstance(v, float) else
             (f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v))]
            for k, v in scale.get("figures", {}).items()]
    out = _md_table(["scale figure", "value"], rows)
    rss = scale.get("rss_mib", {})
    if rss:
        services = sorted({s for states in rss.values() for s in states})
        out += "\n\nResident memory (MiB) of each process in each state:\n\n" + _md_table(
            ["state", *services], [[state, *(fmt_num(v.get(s), 0) for s in services)] for state, v in rss.items()])
    return out


def profile_markdown(profiles: dict) -> str:
    out = []
    for name, prof in profiles.items():
        if "error" in prof:
            out.append(f"### {name}\n\nprofile failed: {prof['error']}\n")
            continue
        out.append(f"### {name}\n\n{prof.get('what', '')} ({prof['samples']} busy samples)\n")
        if prof.get("threads"):
            out.append("Busy samples by thread: " + ", ".join(f"{t} {p:.1f}%" for t, p in prof["threads"]) + "\n")
        out.append(_md_table(["self %", "function"], [[fmt_num(p, 1), f"`{n}`"] for n, p in prof["self"]]))
        out.append("")
        out.append(_md_table(["inclusive %", "function"], [[fmt_num(p, 1), f"`{n}`"] for n, p in prof["inclusive"]]))
        out.append("")
    return "\n".join(out)


def write_all(out_dir: Path, data: dict) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(data, indent=1, default=_json_default, allow_nan=True) + "\n")
    return _write_rendered(out_dir, data)


def rerender(out_dir: Path) -> str:
    """latest.md and latest.png again from latest.json (after a change to the report, no new measurement)."""
    return _write_rendered(out_dir, json.loads((out_dir / "latest.json").read_text()))


def _write_rendered(out_dir: Path, data: dict) -> str:
    md = render_markdown(data)
    (out_dir / "latest.md").write_text(md)
    try:
        chart(out_dir / "latest.png", data)
    except Exception as exc:  # noqa: BLE001 - a missing chart must not lose the measured figures
        md += f"\n(chart not written: {exc})\n"
    return md


def _json_default(value):
    return str(value)


def render_markdown(data: dict) -> str:
    meta = data["meta"]
    parts = [
        f"# Benchmark results ({meta['mode']})\n",
        f"{meta['started']} · commit {meta.get('git', '?')} · {meta['machine']} · scale {meta['scale']} · {meta['duration_s']} s measured after "
        f"{meta['warmup_s']} s warm-up per run · total {meta.get('total_s', 0):.0f} s\n",
        "Ratios are ours / reference, measured in this run by the same closed-loop generator. CPU is server "
        "CPU time per request from /proc/<pid>/stat, summed over the processes the request touches.\n",
        "## Targets\n", targets_markdown(data["targets"]), "",
    ]
    rows = bounds(data["results"])
    if rows:
        parts += ["## Bounds\n",
                  "What the hops the design requires cost alone in this run, against each CPU target's budget "
                  "(over 100 %: unreachable with these hops, whatever our own work costs).\n",
                  bounds_markdown(rows), ""]
    parts += [
        "## Comparisons\n", comparison_markdown(data["comparisons"]), "",
        "## Scale\n", scale_markdown(data.get("scale", {})), "",
        "## Every run\n", results_markdown(data["results"]), "",
    ]
    if data.get("profiles"):
        parts += ["## Profiles (py-spy)\n", profile_markdown(data["profiles"])]
    if data.get("notes"):
        parts += ["## Notes\n", *[f"- {n}" for n in data["notes"]], ""]
    return "\n".join(parts) + "\n"


def chart(path: Path, data: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hi = max(x["clients"] for x in data["comparisons"])
    rows = [r for r in data["comparisons"] if r["clients"] == hi]
    labels = [r["comparison"].replace(" vs ", "\nvs ") for r in rows]
    clean = lambda v, k=1.0: 0 if v is None or math.isnan(v) else v * k  # noqa: E731
    fig, axes = plt.subplots(1, 3, figsize=(19, 6.5))
    x = list(range(len(rows)))
    width = 0.38
    for ax, key, title, k in ((axes[0], "cpu", "server CPU µs / request (log)", 1.0),
                              (axes[1], "rps", "throughput, requests/s (log)", 1.0)):
        ax.bar([i - width / 2 for i in x], [clean(r[f"ours_{key}"], k) for r in rows], width, label="ours")
        ax.bar([i + width / 2 for i in x], [clean(r[f"ref_{key}"], k) for r in rows], width, label="reference")
        ax.set_yscale("log")
        ax.set_title(f"{title}, {hi} clients")
        ax.legend()
    ax = axes[2]
    ax.bar([i - width / 2 for i in x], [clean(r["cpu_ratio"]) for r in rows], width, label="CPU/request ours ÷ ref")
    ax.bar([i + width / 2 for i in x], [clean(r["rps_ratio"]) for r in rows], width, label="throughput ours ÷ ref")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_title(f"ratios, {hi} clients (1 = parity)")
    ax.legend()
    for ax in axes:
        ax.set_xticks(x)
        ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
    fig.suptitle(f"Remote Support Suite vs peers / floor ({data['meta']['started']}, {data['meta']['mode']})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":  # python -m bench.report [results dir]: re-render the last run's report
    import sys
    print(rerender(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results")))
