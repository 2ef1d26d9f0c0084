"""Benchmark: a realistic sync's labels sent alone, through aiohttp or ``d365/wire.py``.

Each transport runs in its own process against the emulator in another (realistic, 10 ms),
sending every label the sync would fetch at a fixed concurrency with the client's headers;
printed per run: seconds and the process's CPU (user + system), in turn (A/B/A/B: the
machine's load drifts). The client's own request path (retries, stats, limiter) is left out:
this is the transport's cost alone.

    python benchmarks/label_transports.py [--rounds N] [--concurrency N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

TRANSPORTS = ("aiohttp", "wire")


async def send(base_url: str, transport: str, concurrency: int) -> dict[str, float]:
    """Every label of the realistic dataset through ``transport``; seconds and CPU."""
    import yarl

    from d365sync_nb.d365.client import HEADERS, default_session, label_path
    from d365sync_nb.d365.wire import SingleItems
    from d365sync_nb.emulator import build_dataset

    ids = sorted(build_dataset("realistic").label_ids_referenced())
    urls = [f"{base_url}/{label_path(i, 'en-us')}" for i in ids]
    queue = iter(urls)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    if transport == "aiohttp":
        session = default_session(concurrency)

        async def worker() -> None:
            for url in queue:
                async with session.get(yarl.URL(url, encoded=True), allow_redirects=False) as r:
                    await r.read()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await session.close()
    else:
        single = SingleItems(base_url, HEADERS, 2**20)

        async def worker() -> None:
            for url in queue:
                await single.get(url, {})

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        single.close()
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"labels": len(urls), "seconds": time.perf_counter() - start, "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--child", nargs=2, metavar=("BASE_URL", "TRANSPORT"))
    args = parser.parse_args()
    if args.child:
        base_url, transport = args.child
        print(json.dumps(asyncio.run(send(base_url, transport, args.concurrency))))
        return
    from bench_sync import SCENARIOS, Emulator

    print(f"labels alone at {args.concurrency} in flight, realistic, 10 ms (CPU: the process's)")
    with Emulator(SCENARIOS["unthrottled"]) as emulator:
        for round_ in range(args.rounds):
            for transport in TRANSPORTS:
                child = [sys.executable, __file__, "--concurrency", str(args.concurrency)]
                out = subprocess.run(
                    [*child, "--child", emulator.base_url, transport],
                    capture_output=True, text=True, check=True,
                ).stdout  # fmt: skip
                run = json.loads(out)
                print(f"  round {round_ + 1} {transport:<8} {run['labels']:,} labels "
                      f"{run['seconds']:5.1f} s  CPU {run['cpu']:4.2f} s "
                      f"({1e6 * run['cpu'] / run['labels']:.0f} us a label)")  # fmt: skip


if __name__ == "__main__":
    main()
