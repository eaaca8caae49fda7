"""Regenerate SECURITY.md's results table from the recorded proof figures.

    python -m tests.proof.report                 # the newest full-form (`make proof`) figures
    python -m tests.proof.report --mode short    # the newest short-form figures (what `make test` measured)
    python -m tests.proof.report --print         # print the table instead of writing SECURITY.md

The table sits between the markers `<!-- proof-results -->` and `<!-- /proof-results -->`; everything else in
SECURITY.md is left as it is. `make proof` calls this at the end of its session (tests/proof/conftest.py)."""
from __future__ import annotations

import argparse
import ast
import os
import sys
from pathlib import Path

from tests.proof.record import RESULTS, ROWS, load

ROOT = Path(__file__).resolve().parents[2]
SECURITY = ROOT / "SECURITY.md"
START, END = "<!-- proof-results -->", "<!-- /proof-results -->"
BACKENDS = (("sqlite", "SQLite"), ("postgres", "PostgreSQL"))


def _cell(records: list[dict]) -> str:
    """PASS or FAIL with the figures; a record of a known defect outside this suite's reach (a strict-xfail test,
    `open_issue` in its measures) is shown as OPEN and does not decide the row."""
    if not records:
        return "not run"
    own = [r for r in records if not r.get("measures", {}).get("open_issue")]
    open_ = [r for r in records if r.get("measures", {}).get("open_issue") and not r["passed"]]
    mark = "PASS" if own and all(r["passed"] for r in own) else "**FAIL**"
    ordered = sorted(records, key=lambda r: (r in open_, r.get("test", ""), r["part"]))
    figures = "; ".join(("OPEN: " if r in open_ else "") + r["figure"] for r in ordered)
    seconds = sum(r["seconds"] or 0 for r in records)
    return f"{mark}: {figures} ({seconds:.0f} s)".replace("|", "/")


def current_tests(folder: Path = Path(__file__).parent) -> set[tuple[int, str]]:
    """(row, test function) of every proof test that exists now (a removed test's old figures are not shown)."""
    found = set()
    for path in folder.glob("test_row*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        row = next((node.value.value for node in tree.body if isinstance(node, ast.Assign)
                    and any(getattr(t, "id", "") == "ROW" for t in node.targets)
                    and isinstance(node.value, ast.Constant)), None)
        found |= {(row, node.name) for node in tree.body
                  if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}
    return found


def newest(records: list[dict], mode: str) -> dict[tuple[int, str], list[dict]]:
    """For each (row, backend): the records of each of its tests from that test's newest session in `mode`."""
    existing = current_tests()
    records = [r for r in records if r["row"] == 0 or (r["row"], r.get("test", "")) in existing]
    latest: dict[tuple[int, str, str], str] = {}
    for r in records:
        if r.get("mode") == mode:
            key = (r["row"], r["backend"], r.get("test", ""))
            if key not in latest or r["time"] >= latest[key][0]:
                latest[key] = (r["time"], r.get("session", ""))
    out: dict[tuple[int, str], list[dict]] = {}
    for r in records:
        key = (r["row"], r["backend"], r.get("test", ""))
        if r.get("mode") == mode and latest.get(key, ("", None))[1] == r.get("session", ""):
            out.setdefault((r["row"], r["backend"]), []).append(r)
    return out


def table(records: list[dict], mode: str = "full") -> str:
    chosen = newest(records, mode)
    used = {r.get("session") for (row, _), rs in chosen.items() if row != 0 for r in rs}
    sessions = sorted((r for r in records if r["row"] == 0 and r.get("session") in used and r.get("mode") == mode),
                      key=lambda r: r["time"])
    lines = []
    if sessions:
        last = sessions[-1]
        m = last.get("measures", {})
        runs = "; ".join(f"{s['time'][:16].replace('T', ' ')} UTC: {s['measures'].get('tests', '?')} tests in "
                         f"{(s.get('seconds') or 0) / 60:.1f} min, {s['measures'].get('failed', 0)} failed"
                         for s in sessions)
        lines.append(f"Measured by the {mode} form (`{'make proof' if mode == 'full' else 'make test'}`) on host "
                     f"{last.get('host', '?')} ({m.get('cpus', '?')} CPU cores, {m.get('memory_gib', '?')} GiB), "
                     f"SQLite and PostgreSQL in each session ({runs}). Each cell: the figure measured and, in "
                     "brackets, the seconds the test took.")
        lines.append("")
    lines.append("| # | test | target | " + " | ".join(label for _, label in BACKENDS) + " |")
    lines.append("|---|---|---|" + "---|" * len(BACKENDS))
    for row, (test, target) in ROWS.items():
        cells = []
        for backend, _ in BACKENDS:
            cells.append(_cell(chosen.get((row, backend), [])))
        lines.append(f"| {row} | {test} | {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(security: Path, text: str) -> None:
    content = security.read_text(encoding="utf-8")
    if START not in content or END not in content:
        raise SystemExit(f"{security} has no {START} ... {END} markers")
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    security.write_text(f"{head}{START}\n{text}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.proof.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("full", "short"), default="full")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--security", type=Path, default=SECURITY)
    parser.add_argument("--print", action="store_true", help="print the table, leave SECURITY.md alone")
    args = parser.parse_args(argv)
    text = table(load(args.results), args.mode)
    if args.print:
        print(text)
        return 0
    write(args.security, text)
    print(f"wrote the {args.mode}-form results table into {os.path.relpath(args.security)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
