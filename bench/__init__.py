"""Benchmarks of the Remote Support Suite against its peers (Cerbos, OpenBao) and its own floor.

Run with `make bench` (never part of `make test`); see bench/README.md."""
