"""Benchmark: full syncs with default settings against the emulator in its own process.

One run prints each scenario against its network floor (the same requests at a fixed
concurrency, doing nothing else; ``floor.py``), with the targets of issue 13:

- unthrottled: realistic scale, 10 ms; the sync with its request log (the default) and once
  without it (``D365SYNC_REQUEST_LOG_SESSIONS=0``): within 1.15x of the floor at 32 in flight
  (issue 22; 1.25x in issue 13), the best of three syncs against the best of three floors, run
  in turn (the machine's load drifts between runs by more than the margin);
- throttled: the same service answering 429 (Retry-After 1 s) above 12 in flight: exact counts,
  429s at most 2% of requests, within 1.5x of the floor at 12;
- slow: small scale, 100 ms: the adaptive limit grows past 32 (shown against the floor at 32);
- footprint: peak RSS of the unthrottled sync (under 150 MB) and its cache file.

Issue 22 adds, to the unthrottled scenario:

- CPU: user + system CPU seconds of the sync process (its own resource usage, less sensitive
  to the machine's load than wall time) against the same sync from a baseline commit (default
  ``334e692``, exported with ``git archive`` and run with ``PYTHONPATH``), interleaved with the
  new one (floor, new, old, three times): the median of the three pairs' new / old at most 60%
  (a pair runs back to back, so the machine's drift between pairs cancels);
- one core busy: a floor and a sync while another process spins on one core (a Python busy
  loop), to show the margin holds on a loaded machine.

    python benchmarks/bench_sync.py [--scenarios unthrottled,throttled,slow] [--concurrency N]
        [--baseline REF | --baseline none]

``--concurrency N`` syncs with exactly N in flight instead of the adaptive default.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).parent
COUNTED = ("data_entities", "public_entities", "actions", "enumerations", "labels")
RSS_TARGET_MB = 150
CPU_TARGET = 0.60  # the new sync's CPU seconds / the baseline's
BASELINE = "334e692"  # main before issue 22


@dataclass(frozen=True)
class Scenario:
    title: str
    scale: str
    latency_ms: float
    floor_at: int  # the floor's concurrency
    ratio_target: float | None  # session / floor
    emulator_args: tuple[str, ...] = field(default=())
    repeats: int = 1  # floor and sync each run this many times, the best of each compared


SCENARIOS = {
    "unthrottled": Scenario(
        "unthrottled service, realistic, 10 ms", "realistic", 10, 32, 1.15, repeats=3
    ),
    "throttled": Scenario(
        "429 above 12 in flight (--max-concurrency 12, Retry-After 1 s), realistic, 10 ms",
        "realistic",
        10,
        12,
        1.5,
        ("--max-concurrency", "12"),
    ),
    "slow": Scenario("unthrottled service, small, 100 ms", "small", 100, 32, None),
}


class Emulator:
    """``d365sync emulator`` in its own process (a context manager)."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.base_url = ""

    def __enter__(self) -> Emulator:
        s = self.scenario
        args = ["--scale", s.scale, "--latency-ms", str(s.latency_ms), *s.emulator_args]
        self._process = subprocess.Popen(
            [sys.executable, "-m", "d365sync_nb", "emulator", *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.base_url = self._process.stdout.readline().strip()  # type: ignore[union-attr]
        return self

    def __exit__(self, *exc: object) -> None:
        self._process.terminate()
        self._process.wait()

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.base_url}/_emulator/stats").json()


LAST_CPU: list[float] = [0.0]  # user + system CPU seconds of the last child run


def run_child(
    args: list[str], env: dict[str, str] | None = None, cwd: str | None = None
) -> tuple[float, str, float]:
    """Run a child process; return (seconds, stdout, its own peak RSS in MB). Its user + system
    CPU seconds go to ``LAST_CPU[0]``."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        child = subprocess.Popen(
            args, stdout=out, stderr=err, env={**os.environ, **(env or {})}, cwd=cwd
        )
        _, status, usage = os.wait4(child.pid, 0)
        LAST_CPU[0] = usage.ru_utime + usage.ru_stime
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            sys.exit(f"{args[2:4]} failed ({child.returncode}):\n{err.read()[-2000:]}")
        return seconds, out.read(), usage.ru_maxrss / 1024


def sync_once(
    emulator: Emulator,
    concurrency: int | None,
    *,
    request_log: bool = True,
    code: Path | None = None,
) -> dict[str, Any]:
    """One CLI sync into a fresh cache: its JSON result, wall time, CPU, RSS, the service's
    count. ``code``: a directory holding another commit's ``d365sync_nb`` to run instead."""
    with tempfile.TemporaryDirectory() as cache:
        httpx.post(f"{emulator.base_url}/_emulator/reset-stats")
        sync = [sys.executable, "-m", "d365sync_nb", "sync", "--json"]
        sync += ["--base-url", emulator.base_url, "--cache-dir", cache]
        if concurrency is not None:
            sync += ["--concurrency", str(concurrency)]
        env = {} if request_log else {"D365SYNC_REQUEST_LOG_SESSIONS": "0"}
        if code is not None:  # `-m` puts the working directory first on the path: run there
            env["PYTHONPATH"] = str(code)
        wall, out, rss_mb = run_child(sync, env, cwd=str(code) if code else None)
        cpu = LAST_CPU[0]
        result = json.loads(out.strip().splitlines()[-1])
        size_mb = sum(p.stat().st_size for p in Path(cache).glob("*")) / 2**20
    stats = emulator.stats()
    return {
        "result": result, "wall": wall, "cpu": cpu, "rss_mb": rss_mb, "mb": size_mb,
        "service": stats,
    }  # fmt: skip


def export_commit(ref: str) -> Path:
    """``ref``'s tree under the temporary directory (``git archive``; reused if there)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref],
        cwd=HERE.parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    where = Path(tempfile.gettempdir()) / f"d365sync-bench-{commit}"
    if not (where / "d365sync_nb").is_dir():
        where.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", commit], cwd=HERE.parent, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


class BusyCore:
    """Another process spinning on one core while the block runs (a context manager)."""

    def __enter__(self) -> BusyCore:
        self._process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc: object) -> None:
        self._process.kill()
        self._process.wait()


def floor(emulator: Emulator, concurrency: int) -> float:
    """Seconds of the same requests at ``concurrency``, bodies read and dropped."""
    scale = emulator.scenario.scale
    _, out, _ = run_child(
        [sys.executable, str(HERE / "floor.py"), emulator.base_url, str(concurrency), scale]
    )
    return float(json.loads(out)["seconds"])


def expected_counts(scale: str) -> dict[str, int]:
    """The dataset's counts, computed in a child: a forked child's peak RSS starts at its
    parent's, so the parent stays small."""
    code = (
        "import json; from d365sync_nb.emulator import build_dataset; "
        f"print(json.dumps(build_dataset({scale!r}).expected_counts()))"
    )
    return json.loads(run_child([sys.executable, "-c", code])[1])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def describe(name: str, run: dict[str, Any]) -> str:
    result, http = run["result"], run["result"]["http"]
    limits = http.get("concurrency") or {}
    path = (
        f"limit {limits['start']}->{limits['final']} (min {limits['min']}, max {limits['max']}, "
        f"{limits.get('change_count', len(limits.get('changes', [])))} changes)"
        if limits
        else ""
    )
    return (
        f"  sync {name:<18} session {result['duration_seconds']:6.1f} s  "
        f"process {run['wall']:5.1f} s  CPU {run['cpu']:5.1f} s  RSS {run['rss_mb']:4.0f} MB  "
        f"requests {http['requests']:,} (service saw {run['service']['total_requests']:,})  {path}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--concurrency", type=int, default=None, help="default: adaptive")
    parser.add_argument("--baseline", default=BASELINE, help="commit to compare CPU with")
    args = parser.parse_args()
    baseline = None if args.baseline == "none" else export_commit(args.baseline)
    setting = f"--concurrency {args.concurrency}" if args.concurrency else "default settings"
    print(f"d365sync bench: full syncs with {setting}, the emulator in its own process")
    failures: list[str] = []
    footprint: dict[str, Any] | None = None
    for key in args.scenarios.split(","):
        s = SCENARIOS[key]
        expected = expected_counts(s.scale)
        with Emulator(s) as emulator:
            print(f"\n[{key}] {s.title}   (emulator at {emulator.base_url})")
            floors: list[float] = []
            logged: list[dict[str, Any]] = []
            without: dict[str, Any] | None = None
            old: list[dict[str, Any]] = []
            for repeat in range(s.repeats):  # floor and sync in turn: the machine's load drifts
                floors.append(floor(emulator, s.floor_at))
                logged.append(sync_once(emulator, args.concurrency))
                print(describe(f"run {repeat + 1}", logged[-1]))
                if key == "unthrottled" and baseline is not None:
                    old.append(sync_once(emulator, args.concurrency, code=baseline))
                    print(describe(f"{args.baseline} run {repeat + 1}", old[-1]))
                if key == "unthrottled" and without is None:
                    without = sync_once(emulator, args.concurrency, request_log=False)
                    print(describe("without request log", without))
            busy: tuple[float, dict[str, Any]] | None = None
            if key == "unthrottled":
                with BusyCore():
                    busy = floor(emulator, s.floor_at), sync_once(emulator, args.concurrency)
                print(describe("one core busy", busy[1]))
        run = min(logged, key=lambda r: r["result"]["duration_seconds"])
        result, http = run["result"], run["result"]["http"]
        phases = {k: round(v["seconds"] or 0, 1) for k, v in result["phases"].items()}
        print(f"  phases (s)  {json.dumps(phases)}")
        print(f"  latency ms  {json.dumps(http['latency_ms'])}  by status {http['by_status']}")
        counts_ok = all(
            r["result"]["status"] == "completed"
            and all(r["result"]["counts"].get(k) == expected[k] for k in COUNTED)
            for r in logged
        )
        exact = all(
            r["result"]["http"]["requests"] == r["service"]["total_requests"] for r in logged
        )
        counts = ", ".join(f"{k} {result['counts'].get(k)}" for k in COUNTED)
        print(
            f"  counts      {'exact' if counts_ok else 'WRONG'} ({counts}); "
            f"http record {'matches' if exact else 'DIFFERS FROM'} the service's count"
        )
        seconds = min(floors)
        ratio = result["duration_seconds"] / seconds
        checks = [("counts exact", counts_ok and exact)]
        target = f" (target <= {s.ratio_target}x)" if s.ratio_target else ""
        ratio_ok = s.ratio_target is None or ratio <= s.ratio_target
        shown = verdict(ratio_ok) if target else ""
        best = f"best of {s.repeats} " if s.repeats > 1 else ""
        print(f"  floor       {' / '.join(f'{f:.1f}' for f in floors)} s at {s.floor_at} in "
              f"flight; sync {best}{ratio:.2f}x the {best}floor{target}  {shown}")  # fmt: skip
        if s.ratio_target:
            checks.append((f"<= {s.ratio_target}x floor", ratio_ok))
        if key == "throttled":
            share = 100 * http["by_status"].get("429", 0) / http["requests"]
            ok = share <= 2.0
            print(f"  429s        {http['by_status'].get('429', 0)} = {share:.2f}% of requests "
                  f"(target <= 2%)  {verdict(ok)}")  # fmt: skip
            checks.append(("429s <= 2%", ok))
        if key == "slow":
            top = (http.get("concurrency") or {}).get("max", 0)
            ok = top > 32
            print(f"  limit       reached {top} in flight (target > 32)  {verdict(ok)}")
            checks.append(("limit > 32", ok))
        if busy is not None:
            busy_floor, busy_run = busy
            busy_sync = busy_run["result"]["duration_seconds"]
            print(f"  one core busy: floor {busy_floor:.1f} s, sync {busy_sync:.1f} s: "
                  f"{busy_sync / busy_floor:.2f}x (shown)")  # fmt: skip
        if old:
            pairs = [n["cpu"] / o["cpu"] for n, o in zip(logged, old, strict=True)]
            share = statistics.median(pairs)
            ok = share <= CPU_TARGET
            shown = f"(target <= {CPU_TARGET:.0%})  {verdict(ok)}"
            new_cpu = " / ".join(f"{r['cpu']:.1f}" for r in logged)
            old_cpu = " / ".join(f"{r['cpu']:.1f}" for r in old)
            per_pair = " / ".join(f"{p:.0%}" for p in pairs)
            print(f"  CPU         new {new_cpu} s, {args.baseline} {old_cpu} s (user + system, in "
                  f"pairs); new / old per pair {per_pair}: median {share:.0%} {shown}")  # fmt: skip
            checks.append((f"CPU <= {CPU_TARGET:.0%} of {args.baseline}", ok))
        if without is not None:
            footprint = max(logged, key=lambda r: r["rss_mb"])
            plain = without["result"]["duration_seconds"]
            cost = 100 * (result["duration_seconds"] - plain) / plain
            print(f"  request log {cost:+.1f}% of the session time (target <= 5%)")
        failures += [f"{key}: {name}" for name, ok in checks if not ok]
    if footprint is not None:
        ok = footprint["rss_mb"] < RSS_TARGET_MB
        print(
            f"\n[footprint] peak RSS of the unthrottled sync {footprint['rss_mb']:.0f} MB "
            f"(target < {RSS_TARGET_MB} MB)  {verdict(ok)}; cache file {footprint['mb']:.0f} MB"
        )
        if not ok:
            failures.append("footprint")
    print(f"\n{'all targets hold' if not failures else 'FAILED: ' + '; '.join(failures)}")


if __name__ == "__main__":
    main()
