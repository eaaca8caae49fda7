"""The size switch: RS_PROOF=full selects the table's figures, unset the short form that `make test` runs."""
from __future__ import annotations

import os

FULL = os.environ.get("RS_PROOF", "").strip().lower() == "full"
MODE = "full" if FULL else "short"


def size(short: int, full: int) -> int:
    """`full` under `make proof`, `short` otherwise (CI)."""
    return full if FULL else short
