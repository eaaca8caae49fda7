"""Looking for planted values where they must never be: log files, process output, error details and every
byte of the databases (SQLite files with their WAL; PostgreSQL rows as text, the database's data files and the
write-ahead log written during the test, and the server's log)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from tests.harness import _admin_conninfo, postgres_url
from tests.proof.world import sql, sqlite_files

# tests.proof.world.planted(): "PLANT-<label>-<16 hex digits>"
PLANTED = re.compile(rb"PLANT-[A-Za-z0-9_]+-[0-9a-f]{16}")


def planted_in(data: bytes | str) -> set[str]:
    """Every planted value in `data`."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    return {m.decode() for m in PLANTED.findall(raw)}


def tokens_in(data: bytes | str, tokens: set[str]) -> set[str]:
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    return {t for t in tokens if t.encode() in raw}


class Source:
    """One place looked at: a name and its bytes."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name, self.data = name, data


def files(paths, label: str, since: float = 0.0) -> list[Source]:
    out = []
    for path in paths:
        path = Path(path)
        try:
            if path.stat().st_mtime + 1 < since:
                continue
            out.append(Source(f"{label}:{path.name}", path.read_bytes()))
        except OSError:
            continue
    return out


def database(url: str, label: str, since: float = 0.0) -> list[Source]:
    """Everything a database holds: SQLite files; PostgreSQL rows as text plus its data files."""
    if make_url(url).get_backend_name() == "sqlite":
        return files(sqlite_files(url), f"{label} database file")
    tables = [t for (t,) in sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    rows = "\n".join(str(r) for t in tables for r in sql(url, f'SELECT t::text FROM "{t}" t')).encode()
    out = [Source(f"{label} database rows", rows)]
    name = make_url(url).database
    try:
        with psycopg.connect(_admin_conninfo(postgres_url()), autocommit=True) as conn:
            conn.execute("CHECKPOINT")
            data_dir = conn.execute("SHOW data_directory").fetchone()[0]
            oid = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()[0]
        base = Path(data_dir) / "base" / str(oid)
        out += files(sorted(base.iterdir()), f"{label} database file")
    except (OSError, psycopg.Error):
        pass  # the server's files are not readable from here: the rows above are what it holds
    return out


def postgres_server(since: float) -> list[Source]:
    """PostgreSQL's write-ahead log written since `since` and the server's own log (when readable)."""
    if not postgres_url():
        return []
    try:
        with psycopg.connect(_admin_conninfo(postgres_url()), autocommit=True) as conn:
            conn.execute("CHECKPOINT")
            data_dir = Path(conn.execute("SHOW data_directory").fetchone()[0])
    except psycopg.Error:
        return []
    out = files(sorted((data_dir / "pg_wal").glob("0*")), "PostgreSQL WAL", since)
    out += files(sorted(Path("/var/log/postgresql").glob("*.log")), "PostgreSQL server log", since)
    return out


def offenders(sources: list[Source], secrets: set[str], tokens: set[str] = frozenset()) -> dict[str, list[str]]:
    """source name -> the planted secrets and tokens found in it."""
    found: dict[str, list[str]] = {}
    for source in sources:
        hits = (planted_in(source.data) & secrets) | tokens_in(source.data, tokens)
        if hits:
            found[source.name] = sorted(hits)[:5]
    return found


def size_of(sources: list[Source]) -> int:
    return sum(len(s.data) for s in sources)


def environment_files(var: Path) -> list[Path]:
    return [Path(root) / f for root, _, names in os.walk(var) for f in names]
