"""Benchmark: the metadata explorer on a realistic cache (release 1, then the upgrade to release 2).

Syncs the emulator's realistic dataset (release 1 full, then release 2 incremental, as after an
upgrade) into a fresh cache, then times each explorer call (median of 5) against its target:
``entities`` and ``fields`` under 200 ms, a diff of the two versions under 2 s.

    python benchmarks/bench_explorer.py [--scale realistic]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from d365sync_nb import connect
from d365sync_nb.connection import Connection
from d365sync_nb.emulator import Emulator

TARGETS_MS = {"entities": 200.0, "fields": 200.0, "diff": 2000.0}


async def sync(conn: Connection, strategy: str) -> float:
    started = time.perf_counter()
    result = await conn.manager.start(strategy=strategy)
    session = await conn.manager.wait(result.session_id or "")
    if session.status.value != "completed":
        sys.exit(f"{strategy} sync failed: {session.error}")
    return time.perf_counter() - started


def timed(fn: Callable[[], Any], runs: int = 5) -> tuple[float, Any]:
    """Median milliseconds of ``runs`` calls, and the last result."""
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", default="realistic", choices=("small", "realistic"))
    args = parser.parse_args()
    emulator = Emulator(scale=args.scale)
    with (
        emulator as url,
        tempfile.TemporaryDirectory() as cache,
        connect(base_url=url, cache_dir=cache) as conn,
    ):
        full = asyncio.run(sync(conn, "full"))
        emulator.configure(version=2)
        upgrade = asyncio.run(sync(conn, "incremental"))
        print(f"explorer benchmark ({args.scale}): release 1 full sync {full:.1f} s, "
              f"release 2 incremental {upgrade:.1f} s")  # fmt: skip
        explorer = conn.manager.explorer
        entity = max(explorer.entities().records(), key=lambda r: r["fields"] or 0)
        calls: dict[str, Callable[[], Any]] = {
            "entities": lambda: explorer.entities(),
            "entities PATTERN": lambda: explorer.entities("cust"),
            "fields": lambda: explorer.fields(entity["collection"]),
            "relations": lambda: explorer.relations(entity["public_entity"]),
            "enums": lambda: explorer.enums(),
            "labels --missing": lambda: explorer.labels(missing=True),
            "diff": lambda: explorer.diff(),
        }
        failed = False
        for name, call in calls.items():
            ms, result = timed(call)
            size = len(result.changes) if name == "diff" else len(result)
            target = TARGETS_MS.get(name)
            verdict = ""
            if target is not None:
                ok = ms < target
                failed |= not ok
                verdict = f"  target < {target:,.0f} ms: {'PASS' if ok else 'FAIL'}"
            print(f"  {name:<18} {ms:8.1f} ms  {size:>7,} rows{verdict}")
        print(f"  diff summary: {explorer.diff().summary_text}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
