"""Benchmark: how light a kernel stays while a realistic sync runs in its background.

A real ipykernel (driven by jupyter_client) starts ``%d365sync start`` against the emulator in
its own process (realistic, 10 ms), then runs a trivial cell (``1``) over and over until the
session ends; each cell's round trip (execute request to its shell reply) is timed. Printed:
the idle round trip, and p50 / p95 / max during the sync (target: p95 under 50 ms), for this
commit and, run the same way, a baseline commit (``--baseline REF``; ``none`` to skip).

    python benchmarks/bench_kernel.py [--baseline REF]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client import KernelManager

sys.path.insert(0, str(Path(__file__).parent))

from bench_sync import BASELINE, SCENARIOS, Emulator, export_commit, verdict

P95_TARGET_MS = 50.0


def round_trip(kc, code: str = "1") -> float:  # type: ignore[no-untyped-def]
    """Seconds from an execute request to its shell reply."""
    start = time.perf_counter()
    msg_id = kc.execute(code, silent=False, store_history=False)
    while kc.get_shell_msg(timeout=60)["parent_header"].get("msg_id") != msg_id:
        pass
    return time.perf_counter() - start


def value(kc, expression: str) -> str:  # type: ignore[no-untyped-def]
    """``expression``'s value in the kernel (its ``text/plain``)."""
    reply = kc.execute_interactive(expression, output_hook=lambda msg: None, timeout=60,
                                   user_expressions={"v": expression})  # fmt: skip
    return reply["content"]["user_expressions"]["v"]["data"]["text/plain"].strip("'\"")


def measure(base_url: str, code: Path | None) -> dict[str, float]:
    """Round trips idle and during one background sync, in a fresh kernel."""
    km = KernelManager(kernel_name="python3")
    env = {"PYTHONPATH": str(code)} if code else {}
    with tempfile.TemporaryDirectory() as cwd, tempfile.TemporaryDirectory() as cache:
        km.start_kernel(cwd=str(code) if code else cwd, env={**__import__("os").environ, **env})
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            setup = (
                "%load_ext d365sync_nb\nimport d365sync_nb.notebook as nb\n"
                f"%d365sync connect --base-url {base_url} --cache-dir {cache}"
            )
            kc.execute_interactive(setup, output_hook=lambda msg: None, timeout=60)
            idle = [round_trip(kc) for _ in range(30)]
            kc.execute_interactive("%d365sync start --force", output_hook=lambda m: None)
            during: list[float] = []
            status = "nb.get_session().status.value"
            while value(kc, status) == "running":
                during += [round_trip(kc) for _ in range(10)]
            final = value(kc, status)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    ms = sorted(1000 * d for d in during)
    return {
        "idle": 1000 * statistics.median(idle),
        "p50": ms[len(ms) // 2],
        "p95": ms[int(len(ms) * 0.95)],
        "max": ms[-1],
        "cells": len(ms),
        "status": final,  # type: ignore[dict-item]
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", default=BASELINE, help="commit to compare with")
    args = parser.parse_args()
    runs = [("new", None)]
    if args.baseline != "none":
        runs.append((args.baseline, export_commit(args.baseline)))
    print("d365sync bench: a trivial cell's round trip during a background sync in a kernel")
    failures = []
    with Emulator(SCENARIOS["unthrottled"]) as emulator:
        for name, code in runs:
            m = measure(emulator.base_url, code)
            ok = m["p95"] < P95_TARGET_MS
            shown = f"(target p95 < {P95_TARGET_MS:g} ms)  {verdict(ok)}" if code is None else ""
            print(
                f"  {name:<8} idle {m['idle']:5.1f} ms; during the sync ({m['cells']} cells, "
                f"session {m['status']}): p50 {m['p50']:5.1f} ms, p95 {m['p95']:5.1f} ms, "
                f"max {m['max']:6.1f} ms  {shown}"
            )
            if code is None and not ok:
                failures.append("kernel p95")
    print(f"\n{'all targets hold' if not failures else 'FAILED: ' + '; '.join(failures)}")


if __name__ == "__main__":
    main()
