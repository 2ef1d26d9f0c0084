"""Compare limit algorithms (``limit_alternatives.py``) on the scenarios of ``bench_sync.py``.

Each sync runs in its own process against the emulator in another one, through
``connect(client_options={"limit_factory": ...})``; the table gives the session's seconds, the
429s and the limiter's path for each algorithm and scenario.

    python benchmarks/compare_limiters.py [--only aimd,gradient2] [--scenarios unthrottled,...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from bench_sync import SCENARIOS, Emulator  # noqa: E402
from limit_alternatives import ALTERNATIVES  # noqa: E402


async def child(base_url: str, name: str) -> None:
    from d365sync_nb.connection import connect

    with tempfile.TemporaryDirectory() as cache:
        options = {"limit_factory": ALTERNATIVES[name]}
        with connect(base_url=base_url, cache_dir=cache, client_options=options) as conn:
            result = await conn.manager.start(strategy="full")
            assert result.session_id is not None
            session = await conn.manager.wait(result.session_id)
    print(json.dumps({"seconds": session.duration_seconds, "http": session.http.model_dump()}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default=",".join(ALTERNATIVES))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--child", nargs=2, metavar=("URL", "ALGORITHM"))
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(*args.child))
        return
    names = args.only.split(",")
    print(f"{'scenario':<12} {'algorithm':<13} {'session':>8} {'429s':>6} {'429 %':>6} "
          f"{'limit min/max/final':>20} {'changes':>8}")  # fmt: skip
    for key in args.scenarios.split(","):
        scenario = SCENARIOS[key]
        with Emulator(scenario) as emulator:
            for name in names:
                httpx.post(f"{emulator.base_url}/_emulator/reset-stats")
                out = subprocess.run(
                    [sys.executable, __file__, "--child", emulator.base_url, name],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                run = json.loads(out.strip().splitlines()[-1])
                http, limits = run["http"], run["http"]["concurrency"]
                throttled = http["by_status"].get("429", 0)
                path = f"{limits['min']}/{limits['max']}/{limits['final']}"
                print(
                    f"{key:<12} {name:<13} {run['seconds']:7.1f}s {throttled:6d} "
                    f"{100 * throttled / http['requests']:5.2f}% {path:>20} "
                    f"{limits.get('change_count', len(limits['changes'])):8d}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
