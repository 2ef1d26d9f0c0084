"""Benchmark: a full sync at the realistic scale against the emulator in its own process.

Prints, for the same emulator in one run: the sync with its request log (the default), the same
sync without it (``D365SYNC_REQUEST_LOG_SESSIONS=0``), each one's wall time and peak RSS, the
cost of the request log, and the network floor (the same requests at the same concurrency, doing
nothing else).

    python benchmarks/bench_sync.py [--latency-ms 10] [--concurrency 16] [--strategy full]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).parent


def run_child(args: list[str], env: dict[str, str] | None = None) -> tuple[float, str, float]:
    """Run a child process; return (seconds, stdout, its own peak RSS in MB)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        child = subprocess.Popen(args, stdout=out, stderr=err, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            sys.exit(f"{args[2:4]} failed ({child.returncode}):\n{err.read()[-2000:]}")
        return seconds, out.read(), usage.ru_maxrss / 1024


def sync_once(base_url: str, args: argparse.Namespace, *, request_log: bool) -> dict[str, Any]:
    """One sync into a fresh cache; its JSON result, wall time, RSS, and the service's count."""
    with tempfile.TemporaryDirectory() as cache:
        httpx.post(f"{base_url}/_emulator/reset-stats")
        sync = [sys.executable, "-m", "d365sync_nb", "sync", "--json", "--base-url", base_url]
        sync += ["--cache-dir", cache, "--strategy", args.strategy]
        env = {} if request_log else {"D365SYNC_REQUEST_LOG_SESSIONS": "0"}
        wall, out, rss_mb = run_child([*sync, "--concurrency", str(args.concurrency)], env)
        result = json.loads(out.strip().splitlines()[-1])
        served = httpx.get(f"{base_url}/_emulator/stats").json()["total_requests"]
        size_mb = sum(p.stat().st_size for p in Path(cache).glob("*")) / 2**20
    return {"result": result, "wall": wall, "rss_mb": rss_mb, "served": served, "mb": size_mb}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--strategy", default="full")
    parser.add_argument("--scale", default="realistic")
    args = parser.parse_args()

    emulator_cmd = [sys.executable, "-m", "d365sync_nb", "emulator", "--scale", args.scale]
    emulator = subprocess.Popen(
        [*emulator_cmd, "--latency-ms", str(args.latency_ms)], stdout=subprocess.PIPE, text=True
    )
    try:
        base_url = emulator.stdout.readline().strip()  # type: ignore[union-attr]
        print(f"emulator ({args.scale}, {args.latency_ms} ms latency) at {base_url}")
        runs = {
            "with request log": sync_once(base_url, args, request_log=True),
            "without": sync_once(base_url, args, request_log=False),
        }
        _, floor_out, _ = run_child(
            [sys.executable, str(HERE / "floor.py"), base_url, str(args.concurrency)]
        )
        floor = json.loads(floor_out)
    finally:
        emulator.terminate()
        emulator.wait()
    logged = runs["with request log"]
    result = logged["result"]
    phases = {k: v["seconds"] for k, v in result["phases"].items()}
    print(f"status            {result['status']}  counts {result['counts']}")
    print(f"phases (s)        {json.dumps(phases)}")
    print(f"http              {json.dumps({k: result['http'][k] for k in ('requests', 'retries', 'by_status', 'latency_ms')})}")  # noqa: E501
    for name, run in runs.items():
        session_s = run["result"]["duration_seconds"]
        print(
            f"sync {name:<17} session {session_s:6.1f} s  process {run['wall']:6.1f} s  "
            f"peak RSS {run['rss_mb']:4.0f} MB  requests {run['result']['http']['requests']} "
            f"(service saw {run['served']})  cache {run['mb']:.0f} MB"
        )
    without = runs["without"]["result"]["duration_seconds"]
    cost = 100 * (result["duration_seconds"] - without) / without
    print(f"request log cost  {cost:+.1f}% of the session time (target <= 5%)")
    print(f"network floor     {floor['seconds']:6.1f} s at concurrency {args.concurrency}")
    print(
        f"ratio             {result['duration_seconds'] / floor['seconds']:.2f}x the floor "
        "(target <= 1.25x)"
    )
    print(f"peak RSS (sync)   {logged['rss_mb']:6.0f} MB (target < 250 MB)")


if __name__ == "__main__":
    main()
