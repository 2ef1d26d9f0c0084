"""Benchmark: a full sync at the realistic scale against the emulator in its own process.

Prints wall time, requests, peak RSS of the sync process, and the network floor (the same
requests at the same concurrency, doing nothing else) measured in the same run.

    python benchmarks/bench_sync.py [--latency-ms 10] [--concurrency 16] [--strategy full]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).parent


def child_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def run_child(args: list[str]) -> tuple[float, str, float]:
    """Run a child process; return (seconds, stdout, peak RSS of children so far in MB)."""
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{args[2:4]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, done.stdout, child_peak_rss_mb()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--strategy", default="full")
    parser.add_argument("--scale", default="realistic")
    args = parser.parse_args()

    emulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "d365sync_nb",
            "emulator",
            "--scale",
            args.scale,
            "--latency-ms",
            str(args.latency_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = emulator.stdout.readline().strip()  # type: ignore[union-attr]
        print(f"emulator ({args.scale}, {args.latency_ms} ms latency) at {base_url}")
        with tempfile.TemporaryDirectory() as cache:
            httpx.post(f"{base_url}/_emulator/reset-stats")
            sync = [sys.executable, "-m", "d365sync_nb", "sync", "--json", "--base-url", base_url]
            sync += ["--cache-dir", cache, "--strategy", args.strategy]
            sync_s, out, rss_mb = run_child([*sync, "--concurrency", str(args.concurrency)])
            result = json.loads(out.strip().splitlines()[-1])
            requests = httpx.get(f"{base_url}/_emulator/stats").json()["total_requests"]
            size_mb = sum(p.stat().st_size for p in Path(cache).glob("*")) / 2**20
        _, floor_out, _ = run_child(
            [sys.executable, str(HERE / "floor.py"), base_url, str(args.concurrency)]
        )
        floor = json.loads(floor_out)
    finally:
        emulator.terminate()
        emulator.wait()
    phases = {k: v["seconds"] for k, v in result["phases"].items()}
    print(f"status            {result['status']}  counts {result['counts']}")
    print(
        f"sync wall         {sync_s:6.1f} s (process, incl. start-up); session "
        f"{result['duration_seconds']:.1f} s"
    )
    print(f"phases (s)        {json.dumps(phases)}")
    print(f"requests          {requests} (floor: {floor['requests']})")
    print(f"network floor     {floor['seconds']:6.1f} s at concurrency {args.concurrency}")
    print(
        f"ratio             {result['duration_seconds'] / floor['seconds']:.2f}x the floor "
        "(target <= 1.25x)"
    )
    print(f"peak RSS (sync)   {rss_mb:6.0f} MB (target < 250 MB)")
    print(f"cache file        {size_mb:6.0f} MB")


if __name__ == "__main__":
    main()
