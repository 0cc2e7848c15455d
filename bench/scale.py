"""Scale: the health sweep among many connections, claim() and the periodic counts on a
big backlog (full: 100,000 connections, 1,000,000 rows; quick: a tenth of each)."""

from __future__ import annotations

from bench import backlog, health

QUICK = (10_000, 100_000)
FULL = (100_000, 1_000_000)


def run(label: str, quick: bool) -> None:
    connections, rows = QUICK if quick else FULL
    health.run(label, connections)
    backlog.run(label, rows)
