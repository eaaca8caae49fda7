"""The reliability and security proof suite (issue 6): one test module per row of the table in SECURITY.md.

`make test` runs it in its short form (scaled-down counts, for CI); `make proof` (RS_PROOF=full) runs the
table's figures and regenerates SECURITY.md's results table from what it measured (see record.py, report.py)."""
