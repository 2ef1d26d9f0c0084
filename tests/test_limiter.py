"""The concurrency limiter: the algorithm driven with made-up answers and times, the gate on a
real event loop, and the client against the emulator (its in-flight peak, Retry-After)."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from d365sync_nb.config import resolve_settings
from d365sync_nb.d365.client import D365MetadataClient, _served_seconds
from d365sync_nb.d365.limiter import (
    DEFAULT_CEILING,
    DEFAULT_INITIAL,
    AdaptiveLimit,
    Limiter,
    Outcome,
    Ticket,
)
from d365sync_nb.d365.stats import MAX_LIMIT_CHANGES, HttpStats
from d365sync_nb.errors import ConfigurationError
from d365sync_nb.models import SyncStatus
from tests.support import expected

MS = 0.001


class Driver:
    """Feeds an :class:`AdaptiveLimit` answers as a saturated client would: each request is
    sent with the limit full, in the current epoch, on a clock that advances 1 ms a request."""

    def __init__(self, limit: AdaptiveLimit) -> None:
        self.limit = limit
        self.now = 0.0
        self.path: list[int] = [limit.limit]

    def ticket(self, in_flight: int | None = None) -> Ticket:
        in_flight = self.limit.limit if in_flight is None else in_flight
        return Ticket(in_flight, self.limit.epoch, self.now)

    def answer(
        self,
        outcome: Outcome = Outcome.OK,
        latency: float | None = 10 * MS,
        *,
        ticket: Ticket | None = None,
        times: int = 1,
    ) -> None:
        for _ in range(times):
            self.now += MS
            self.limit.update(ticket or self.ticket(), outcome, latency, self.now)
            self.path.append(self.limit.limit)


# -- growth ---------------------------------------------------------------------------------------
def test_grows_from_the_start_to_the_ceiling_while_answers_stay_healthy():
    d = Driver(AdaptiveLimit())
    assert d.limit.limit == DEFAULT_INITIAL == 8
    d.answer(times=DEFAULT_CEILING)  # slow start: one more per answer
    assert d.limit.limit == DEFAULT_CEILING == 64
    d.answer(times=5000)
    assert max(d.path) == DEFAULT_CEILING and d.path == sorted(d.path)


def test_does_not_grow_while_the_limit_is_not_used():
    d = Driver(AdaptiveLimit())
    d.answer(ticket=Ticket(3, 0, 0.0), times=1000)  # 3 in flight of 8 allowed
    assert d.limit.limit == 8


def test_after_a_back_off_grows_by_one_per_round_of_answers():
    d = Driver(AdaptiveLimit(latency=False))
    d.answer(times=12)  # slow start to 20
    d.answer(Outcome.UNAVAILABLE)  # 503: 0.9x, slow start over
    assert d.limit.limit == 18 and not d.limit.slow_start
    d.answer(times=17)
    assert d.limit.limit == 18
    d.answer()  # the 18th answer of the round
    assert d.limit.limit == 19


# -- 429 and 503 ----------------------------------------------------------------------------------
def test_a_429_lowers_the_limit_below_the_level_it_came_at_once_per_round():
    d = Driver(AdaptiveLimit(latency=False))
    d.answer(times=12)
    assert d.limit.limit == 20
    before = d.ticket(in_flight=13)  # sent with 13 in flight: the service allows at most 12
    same_round = d.ticket(in_flight=14)
    d.answer(Outcome.THROTTLED, ticket=before)
    assert d.limit.limit == 12 and d.limit.throttled_at == 13
    d.answer(Outcome.THROTTLED, ticket=same_round)  # sent before the decrease: already answered
    assert d.limit.limit == 12
    d.answer(Outcome.THROTTLED, ticket=d.ticket(in_flight=12))  # a new round, throttled again
    assert d.limit.limit == 10  # 0.9 x 12


def test_after_a_429_stays_below_its_level_then_probes_it_less_and_less_often():
    d = Driver(AdaptiveLimit(latency=False, probe_rounds=50))
    d.answer(times=12)
    d.answer(Outcome.THROTTLED, ticket=d.ticket(in_flight=13))
    assert d.limit.limit == 12
    d.answer(times=50 * 12 - 1)  # 50 rounds of 12, less one answer
    assert max(d.path[-600:]) == 12
    d.answer()
    assert d.limit.limit == 13  # the probe
    d.answer(Outcome.THROTTLED, ticket=d.ticket(in_flight=13))  # the probe is throttled
    assert d.limit.limit == 11
    d.answer(times=100 * 12 - 1)  # the next probe waits twice as long: 100 rounds
    assert max(d.path[-1199:]) == 12
    d.answer()
    assert d.limit.limit == 13
    d.answer(times=13)  # the probe held a round: the service allows it, growth goes on
    d.answer(times=14 * 3)
    assert d.limit.limit > 13 and d.limit.throttled_at is None


def test_a_503_backs_off_without_marking_a_level():
    d = Driver(AdaptiveLimit(latency=False))
    d.answer(times=12)
    d.answer(Outcome.UNAVAILABLE, ticket=d.ticket(in_flight=5))
    assert d.limit.limit == 18 and d.limit.throttled_at is None


def test_other_failures_do_not_move_the_limit():
    d = Driver(AdaptiveLimit())
    d.answer(Outcome.OTHER, times=100)
    assert d.path == [8] * 101


def test_never_below_one():
    d = Driver(AdaptiveLimit.fixed(2))
    for _ in range(5):
        d.answer(Outcome.THROTTLED)
    assert d.limit.limit == 1


# -- latency ------------------------------------------------------------------------------------
def test_shrinks_when_latency_rises_and_not_below_half_the_start():
    d = Driver(AdaptiveLimit())
    d.answer(latency=10 * MS, times=200)  # slow start to the ceiling, baseline 10 ms
    assert d.limit.limit == 64 and d.limit.baseline == pytest.approx(10 * MS)
    d.answer(latency=19 * MS, times=64 * 5)  # under 2x the baseline: keeps the limit
    assert d.limit.limit == 64
    d.answer(latency=25 * MS, times=64)  # one window over 2x: 0.9x
    assert d.limit.limit == 57 and d.limit.last_latency == pytest.approx(25 * MS)
    d.answer(latency=100 * MS, times=3000)
    assert d.limit.limit == DEFAULT_INITIAL // 2


def test_a_lasting_latency_becomes_the_new_baseline_after_a_minute():
    d = Driver(AdaptiveLimit(baseline_seconds=60))
    d.answer(latency=10 * MS, times=200)
    d.answer(latency=50 * MS, times=3000)
    assert d.limit.limit == 4
    d.now += 61  # a minute later, 50 ms is all the recent windows know
    d.answer(latency=50 * MS, times=3000)
    assert d.limit.baseline == pytest.approx(50 * MS) and d.limit.limit > 30


def test_a_fixed_limit_ignores_latency_and_never_exceeds_its_value():
    d = Driver(AdaptiveLimit.fixed(12))
    d.answer(latency=10 * MS, times=100)
    d.answer(latency=500 * MS, times=1000)
    assert set(d.path) == {12}
    d.answer(Outcome.THROTTLED, ticket=d.ticket(in_flight=12))
    assert d.limit.limit == 10
    d.answer(times=20_000)
    assert d.limit.limit == 12 and max(d.path) == 12


def test_the_services_own_time_is_read_from_server_timing():
    def served(value: str | None) -> float | None:
        headers = {} if value is None else {"server-timing": value}
        return _served_seconds(httpx.Response(200, headers=headers))

    assert served("app;dur=10.43") == pytest.approx(0.01043)
    assert served("cache;desc=hit, db;dur=53, app;dur=47.2") == pytest.approx(0.053)
    assert served("app;desc=no-duration") is None
    assert served(None) is None


async def test_latency_samples_are_the_services_timing_not_the_round_trip():
    """An instant answer that says it took 250 ms: the limiter judges the service by that
    (this process's own delays are not the service's)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"Value": "text"}, headers={"server-timing": "total;dur=250"}
        )

    client = D365MetadataClient(
        "https://contoso.operations.dynamics.com", transport=httpx.MockTransport(handler)
    )
    async with client:
        await client.fetch_labels([f"@SYS{i}" for i in range(200)], lambda label: None)
    assert client.limiter.algorithm.baseline == pytest.approx(0.25)


# -- the gate -------------------------------------------------------------------------------------
async def test_the_gate_never_lets_more_than_the_limit_through():
    limiter = Limiter(AdaptiveLimit.fixed(3))
    inside = peak = 0

    async def request() -> None:
        nonlocal inside, peak
        ticket = await limiter.acquire()
        inside += 1
        peak = max(peak, inside)
        await asyncio.sleep(0)  # let the others try to get in
        inside -= 1
        limiter.release(ticket, Outcome.OK)

    await asyncio.gather(*(request() for _ in range(100)))
    assert peak == 3 and limiter.in_flight == 0


async def test_a_higher_limit_lets_waiters_in_and_a_cancelled_waiter_leaks_no_slot():
    limiter = Limiter(AdaptiveLimit(initial=2, ceiling=4, latency=False))
    first = [await limiter.acquire(), await limiter.acquire()]
    waiters = [asyncio.ensure_future(limiter.acquire()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters) and limiter.in_flight == 2
    waiters[0].cancel()
    limiter.release(first[0], Outcome.OK)  # slow start: the limit becomes 3, two slots free
    for _ in range(3):
        await asyncio.sleep(0)  # a loop turn each, no time
    assert limiter.limit == 3 and waiters[0].cancelled()
    assert waiters[1].done() and waiters[2].done() and limiter.in_flight == 3
    for ticket in [first[1], waiters[1].result(), waiters[2].result()]:
        limiter.release(ticket, Outcome.OTHER)
    assert limiter.in_flight == 0


async def test_a_waiter_cancelled_once_it_was_given_a_slot_gives_the_slot_back():
    limiter = Limiter(AdaptiveLimit.fixed(1))
    held = await limiter.acquire()
    waiter = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    limiter.release(held, Outcome.OTHER)  # the slot goes to the waiter...
    assert limiter.in_flight == 1
    waiter.cancel()  # ...cancelled before it could run
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.in_flight == 0
    ticket = await limiter.acquire()
    assert ticket.in_flight == 1


async def test_limit_changes_are_logged_at_most_once_a_second(caplog):
    now = [0.0]
    changes: list[int] = []
    limiter = Limiter(AdaptiveLimit(), on_change=changes.append, clock=lambda: now[0])
    caplog.set_level(logging.DEBUG, logger="d365sync_nb.d365.limiter")
    for _ in range(56):  # slow start 8 -> 64 within 0.56 s
        ticket = await limiter.acquire()
        now[0] += 0.01
        limiter.release(Ticket(limiter.limit, ticket.epoch, ticket.started), Outcome.OK)
    assert changes == list(range(9, 65))
    now[0] = 2.0
    ticket = await limiter.acquire()
    limiter.release(Ticket(64, ticket.epoch, 0.0), Outcome.THROTTLED)
    lines = [r.getMessage() for r in caplog.records if r.name == "d365sync_nb.d365.limiter"]
    assert lines == [
        "concurrency 9: slow start; 0 in flight",
        "concurrency 57: 429 at 64 in flight; 0 in flight "
        "(55 changes since the last line, between 10 and 64)",
    ]
    assert limiter.summary() == (
        "concurrency adaptive 8..64: 57 now after 57 changes (lowest 8, highest 64)"
    )


# -- the concurrency path in the http record ----------------------------------------------------
def test_the_recorded_path_stays_bounded_and_its_extremes_exact():
    stats = HttpStats(started=0.0)
    for i in range(20_000):  # a change every 10 ms for 200 s, one dip to 2
        stats.limit_changed(2 if i == 7_777 else 30 + i % 20, now=i * 0.01)
    concurrency = stats.record(start_limit=8, ceiling=64, adaptive=True)["concurrency"]
    assert concurrency["min"] == 2 and concurrency["max"] == 49
    assert concurrency["change_count"] == 20_000 and concurrency["final"] == 49
    assert concurrency["mode"] == "adaptive" and concurrency["ceiling"] == 64
    times = [t for t, _ in concurrency["changes"]]
    assert len(times) <= MAX_LIMIT_CHANGES and times == sorted(times)
    assert times[0] == 0.0 and times[-1] > 190  # the whole session, not its first seconds


# -- settings ------------------------------------------------------------------------------------
def test_concurrency_is_adaptive_unless_a_number_is_given(tmp_path, monkeypatch):
    url = "https://contoso.operations.dynamics.com"
    assert resolve_settings(base_url=url).concurrency is None
    assert resolve_settings(base_url=url, concurrency=5).concurrency == 5
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        f'[profiles.auto]\nbase_url = "{url}"\nconcurrency = "auto"\n'
        f'[profiles.ten]\nbase_url = "{url}"\nconcurrency = 10\n'
        f'[profiles.bad]\nbase_url = "{url}"\nconcurrency = "lots"\n'
    )
    monkeypatch.setenv("D365SYNC_PROFILES", str(profiles))
    assert resolve_settings(profile="auto").concurrency is None
    assert resolve_settings(profile="ten").concurrency == 10
    assert resolve_settings(profile="ten", concurrency=3).concurrency == 3
    with pytest.raises(ConfigurationError, match="integer >= 1 or 'auto', not 'lots'"):
        resolve_settings(profile="bad")
    client = D365MetadataClient.from_settings(resolve_settings(profile="auto"), token_provider=None)
    assert client.limiter.algorithm.adaptive and client.limiter.ceiling == DEFAULT_CEILING
    client = D365MetadataClient.from_settings(resolve_settings(profile="ten"), token_provider=None)
    assert not client.limiter.algorithm.adaptive and client.limiter.ceiling == 10


# -- against the emulator ----------------------------------------------------------------------
async def test_an_explicit_concurrency_is_never_exceeded(emulator, make_manager):
    emulator.configure(latency_ms=10)
    emulator.reset_stats()
    manager = make_manager(emulator.base_url, concurrency=5)
    session = await manager.wait((await manager.start(strategy="full")).session_id)
    assert session.status == SyncStatus.COMPLETED, session.error
    assert emulator.stats()["max_in_flight"] == 5
    limits = session.http.concurrency
    assert limits is not None and limits["mode"] == "fixed"
    assert (limits["start"], limits["min"], limits["max"], limits["changes"]) == (5, 5, 5, [])


async def test_the_adaptive_default_grows_past_its_start_and_stays_under_the_ceiling(
    emulator, make_manager
):
    emulator.configure(latency_ms=20)
    emulator.reset_stats()
    manager = make_manager(emulator.base_url, concurrency=None)
    session = await manager.wait((await manager.start(strategy="full")).session_id)
    assert session.status == SyncStatus.COMPLETED, session.error
    assert session.counts["labels"] == expected(emulator)["labels"]
    peak = emulator.stats()["max_in_flight"]
    limits = session.http.concurrency
    assert limits is not None and limits["mode"] == "adaptive" and limits["start"] == 8
    assert DEFAULT_INITIAL < limits["max"] <= DEFAULT_CEILING
    assert DEFAULT_INITIAL < peak <= limits["max"]
    assert session.http.retries == 0


async def test_retry_after_is_honoured_by_the_throttled_request_only(emulator):
    """The service allows 4 in flight and asks throttled requests to wait 0.5 s: each 429 waits
    that long, while the other workers go on fetching labels during the wait."""
    emulator.configure(max_concurrency=4, retry_after=0.5, latency_ms=5)
    ids = sorted(emulator.dataset.label_ids_referenced())[:400]
    got: list[str] = []
    async with D365MetadataClient(emulator.base_url) as client:
        await client.fetch_labels(ids, lambda label: got.append(label.id))
    assert sorted(got) == ids
    rows = client.stats.rows
    throttled = [r for r in rows if r.status == 429]
    assert throttled and all(r.retry_cause == "429" for r in throttled)
    assert client.stats.retry_wait_seconds >= 0.5 * len(throttled) * 0.99
    first = min(r.started_at for r in throttled)
    during = [r for r in rows if first < r.started_at < first + 0.45 and r.status == 200]
    assert len(during) > 20  # healthy workers were not stalled by the wait
    assert len(throttled) <= 0.05 * len(rows)
