"""The watch: version checks, syncs only when due, notifications, check records, schedules,
against the emulator moving to its next release (real HTTP, real SQLite, real webhooks)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from d365sync_nb.automation import (
    Notice,
    NotifyTarget,
    Schedule,
    Watcher,
    WatchTarget,
    check_version,
    exit_code,
    parse_duration,
)
from d365sync_nb.automation.notify import ADAPTIVE_CARD, deliver, teams_payload
from d365sync_nb.automation.schedule import parse_schedule_text
from d365sync_nb.automation.version_check import retry_delay
from d365sync_nb.errors import ConfigurationError
from d365sync_nb.models import SyncStatus, SyncStrategy
from d365sync_nb.store.checks import CheckAction
from d365sync_nb.store.lock import CacheLock, hold_shared
from tests.webhooks import SIGNATURE, Receiver

FAST = {"notify_delays": (0.0, 0.0)}


def target(manager, *notify: str, every: float = 0.01, strategy: str = "incremental"):
    return WatchTarget(
        manager,
        Schedule(every=every),
        SyncStrategy.parse(strategy),
        [NotifyTarget.parse(t) for t in notify],
    )


# -- schedules -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("1h", 3600), ("1d", 86400)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["15", "5x", "0s", "-1m", "1 week", "400d", ""])
def test_a_bad_duration_is_one_line(text):
    with pytest.raises(ConfigurationError) as info:
        parse_duration(text)
    assert "\n" not in str(info.value) and str(info.value).startswith("Bad duration")


def test_cron_next_fire_times_and_bad_expressions():
    at = datetime(2026, 12, 7, 1, 30, tzinfo=UTC)
    nightly = Schedule.parse(cron="0 2 * * *")
    assert nightly.next_after(at) == datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    assert nightly.first(at) == datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    quarter = parse_schedule_text("*/15 * * * *")
    assert quarter.next_after(at) == datetime(2026, 12, 7, 1, 45, tzinfo=UTC)  # strictly after
    every = parse_schedule_text("15m")
    assert every.first(at) == at and every.next_after(at) == at + timedelta(minutes=15)
    for bad in ("0 25 * * *", "* * *", "every day", "0 2 * * * *"):
        with pytest.raises(ConfigurationError) as info:
            Schedule.parse(cron=bad)
        assert "\n" not in str(info.value) and "cron" in str(info.value)
    with pytest.raises(ConfigurationError, match="one schedule"):
        Schedule.parse(every="1m", cron="0 2 * * *")


def test_retry_back_off_doubles_up_to_a_cap():
    assert [retry_delay(n, 60) for n in (0, 1, 2, 3)] == [0, 60, 120, 240]
    assert retry_delay(30, 60) == 6 * 3600


# -- the version check -----------------------------------------------------------------------
async def test_check_version_says_when_a_sync_is_due(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    emulator.reset_stats()
    first = await check_version(manager)
    assert first.due and first.cached_version_id is None and first.global_version_id == 1
    assert emulator.stats()["total_requests"] == 3  # the 3 version requests, nothing else
    session = await manager.wait((await manager.start(strategy="full")).session_id)
    assert session.status == SyncStatus.COMPLETED
    same = await check_version(manager)
    assert not same.due and not same.version_changed and "up to date" in same.reason
    assert same.cached_application_version == emulator.dataset.application_version
    emulator.next_release()
    moved = await check_version(manager)
    assert moved.due and moved.version_changed and moved.global_version_id == 2
    assert moved.cached_version_id == 1 and "the cache has version 1" in moved.reason


async def test_a_strategy_missing_data_makes_a_sync_due(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    await manager.wait((await manager.start(strategy="full_without_labels")).session_id)
    assert not (await check_version(manager, "full_without_labels")).due
    lacking = await check_version(manager, "full")
    assert lacking.due and "lacks" in lacking.reason


# -- the watch loop against the emulator switching releases ---------------------------------
async def test_one_sync_per_version_change_none_while_it_stays(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    events: list[dict] = []
    watched = target(manager)

    def on_event(event: dict) -> None:
        events.append(event)
        checks = [e for e in events if e["event"] == "check"]
        if event["event"] == "check" and len(checks) == 3:
            emulator.next_release()  # the environment is upgraded between two checks
        if event["event"] == "check" and len(checks) == 6:
            watcher.stop()

    watcher = Watcher([watched], on_event=on_event, **FAST)
    await asyncio.wait_for(watcher.run(), 60)
    actions = [c.action for c in reversed(manager.store.checks.load(limit=10))]
    assert actions == [CheckAction.SYNCED, CheckAction.UP_TO_DATE, CheckAction.UP_TO_DATE] * 2
    sessions = manager.get_session_history()
    assert len(sessions) == 2 and {s.global_version_id for s in sessions} == {1, 2}
    assert all(
        s.initiated_by == "watch" and s.strategy == SyncStrategy.INCREMENTAL for s in sessions
    )
    assert [e["event"] for e in events[:3]] == ["sync_started", "sync_finished", "check"]
    synced = manager.store.checks.load(action="synced")
    assert [c.global_version_id for c in synced] == [2, 1]
    assert synced[0].previous_version_id == 1 and synced[0].session_id == sessions[0].session_id
    line = watched.status_line(watching=False)
    assert line.startswith("not watching; last check ") and line.endswith(
        ": up to date (10.0.42.2150)"
    )
    watched.next_check = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    assert watched.status_line().startswith("watching: next check 14:00 UTC; last check ")


async def test_two_watchers_on_one_cache_sync_once(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    a, b = Watcher([target(manager)], **FAST), Watcher([target(manager)], **FAST)
    first, second = await asyncio.gather(a.check(a.targets[0]), b.check(b.targets[0]))
    assert {first.action, second.action} == {CheckAction.SYNCED, CheckAction.SKIPPED_RUNNING}
    assert len(manager.get_session_history()) == 1
    assert manager.store.checks.count() == 2


def test_the_environment_lock_is_exclusive_and_released(tmp_path):
    one, two = CacheLock(tmp_path / "x.sqlite3"), CacheLock(tmp_path / "x.sqlite3")
    assert one.acquire() and not two.acquire()
    one.release()
    assert two.acquire()
    two.release()


def test_a_processs_manual_syncs_share_one_hold_that_a_watch_finds_taken(tmp_path):
    cache = tmp_path / "x.sqlite3"
    one, two = hold_shared(cache), hold_shared(tmp_path / "." / "x.sqlite3")
    assert one is not None and two is not None  # two versions' sessions side by side
    watch = CacheLock(cache)
    assert not watch.acquire()
    one.release()
    one.release()  # once only: the second hold is still there
    assert not watch.acquire()
    two.release()
    assert watch.acquire()  # the last holder let it go
    assert hold_shared(cache) is None  # and now the watch has it
    watch.release()


async def test_a_failure_is_notified_exactly_once_with_its_verdict(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    emulator.configure(corrupt="non_json")  # the version requests work, the sync fails
    with Receiver() as hooks:
        watched = target(manager, f"webhook:{hooks.url('hook')}")
        watcher = Watcher([watched], retry_base=0.001, **FAST)
        for _ in range(3):  # fails, then retried (back-off of a millisecond) and fails again
            record = await watcher.check(watched)
            assert record.action == CheckAction.FAILED and record.session_id
        emulator.configure(corrupt=None)
        recovered = await watcher.check(watched)
        assert recovered.action == CheckAction.SYNCED
        bodies = hooks.bodies("hook")
    assert [b["event"] for b in bodies] == ["sync_failed", "sync_completed"]
    failed = bodies[0]
    first = manager.store.checks.load(limit=10)[-1]
    session = manager.get_sync_session(first.session_id)
    assert failed["error"] == session.error and "\n" not in failed["error"]
    assert failed["verdict"].startswith("failed in entities")
    assert failed["session"]["status"] == "failed" and failed["changes"] is None
    log_ids = [r["activity_id"] for r in manager.get_request_log(session.session_id)]
    assert failed["activity_id"] in log_ids
    counts = [(c.action.value, c.notified) for c in reversed(manager.store.checks.load())]
    assert counts == [("failed", 1), ("failed", 0), ("failed", 0), ("synced", 1)]


async def test_a_failed_sync_backs_off_instead_of_retrying_at_once(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    emulator.configure(corrupt="non_json")
    watcher = Watcher([target(manager)], retry_base=3600, **FAST)
    assert (await watcher.check(watcher.targets[0])).action == CheckAction.FAILED
    emulator.configure(corrupt=None)
    waiting = await watcher.check(watcher.targets[0])
    assert waiting.action == CheckAction.BACKING_OFF and "next try after" in waiting.reason
    assert len(manager.get_session_history()) == 1
    assert exit_code([waiting]) == 1


async def test_an_unreachable_environment_is_a_failed_check(stalled_server, make_manager, tmp_path):
    manager = make_manager("http://127.0.0.1:9")
    record = await Watcher([target(manager)], **FAST).check(target(manager))
    assert record.action == CheckAction.FAILED and record.session_id is None
    assert record.error and "\n" not in record.error
    assert exit_code([record]) == 1


# -- notifications: exact payloads, retries, secrets -----------------------------------------
async def test_payloads_of_all_three_formats_on_a_version_change(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    with Receiver() as hooks:
        watched = target(
            manager,
            f"teams:{hooks.url('teams')}",
            f"slack:{hooks.url('slack')}",
            f"webhook:{hooks.url('hook')}",
        )
        watcher = Watcher([watched], **FAST)
        await watcher.check(watched)  # the first sync: "sync_completed"
        emulator.next_release()
        record = await watcher.check(watched)
        assert record.action == CheckAction.SYNCED and record.notified == 3
        session = manager.get_sync_session(record.session_id)
        diff = manager.explorer.diff(1, 2)
        generic = hooks.bodies("hook")
        teams = hooks.bodies("teams")[-1]
        slack = hooks.bodies("slack")[-1]
    assert [b["event"] for b in generic] == ["sync_completed", "version_changed"]
    assert generic[-1] == {
        "event": "version_changed",
        "environment": emulator.base_url,
        "global_version_id": 2,
        "application_version": "10.0.42.2150",
        "session": {
            "session_id": session.session_id,
            "status": "completed",
            "strategy": "incremental",
            "duration_seconds": round(session.duration_seconds, 3),
            "counts": session.counts,
        },
        "changes": {
            "summary": diff.summary_text,
            "by_kind": diff.summary,
            "from_global_version_id": 1,
            "from_application_version": "10.0.41.2095",
        },
        "verdict": None,
        "error": None,
        "activity_id": None,
    }
    assert diff.summary_text.startswith("+") and "entities" in diff.summary_text
    assert_adaptive_card(teams)
    card = teams["attachments"][0]["content"]
    texts = [block.get("text", "") for block in card["body"]]
    assert any(diff.summary_text in text for text in texts)
    facts = {
        f["title"]: f["value"] for b in card["body"] if b["type"] == "FactSet" for f in b["facts"]
    }
    assert facts["Version"] == "2 (application 10.0.42.2150)"
    assert facts["Session"] == session.session_id
    assert slack["text"].startswith("New version synced: 127.0.0.1")
    assert diff.summary_text in slack["text"]
    assert [b["type"] for b in slack["blocks"]] == ["header", "context", "section"]
    assert slack["blocks"][0]["text"] == {
        "type": "plain_text",
        "text": slack["text"].split("\n")[0],
    }


def assert_adaptive_card(message: dict) -> None:
    """The Teams Workflows shape: a message with one Adaptive Card 1.4 attachment whose body
    holds only elements the card schema knows, each with its required properties."""
    assert message["type"] == "message" and len(message["attachments"]) == 1
    attachment = message["attachments"][0]
    assert attachment["contentType"] == ADAPTIVE_CARD == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert isinstance(card["body"], list) and card["body"]
    for element in card["body"]:
        assert element["type"] in ("TextBlock", "FactSet")
        if element["type"] == "TextBlock":
            assert isinstance(element["text"], str) and element["text"]
            assert set(element) <= {"type", "text", "weight", "size", "wrap", "color",
                                    "isSubtle", "spacing"}  # fmt: skip
        else:
            assert element["facts"] and all(
                set(f) == {"title", "value"} and all(isinstance(v, str) for v in f.values())
                for f in element["facts"]
            )
    json.dumps(message)  # plain JSON all the way down


def test_a_failure_card_carries_error_verdict_and_activity_id():
    notice = Notice(
        event="sync_failed",
        environment="https://contoso.operations.dynamics.com",
        global_version_id=3,
        error="The service answered 500",
        verdict="failed in labels: The service answered 500",
        activity_id="0f5c2a4e-aaaa-4bbb-8ccc-123456789abc",
    )
    card = teams_payload(notice)
    assert_adaptive_card(card)
    text = json.dumps(card)
    for part in (notice.error, notice.verdict, notice.activity_id, "Sync failed: contoso"):
        assert part in text


async def test_a_notification_failure_never_fails_the_sync(emulator, make_manager, capsys, caplog):
    manager = make_manager(emulator.base_url)
    events: list[dict] = []
    caplog.set_level(logging.DEBUG)
    with Receiver() as hooks:
        hooks.statuses = [500, 503, 502]  # every attempt fails
        url = hooks.url("hook")
        watched = target(manager, f"webhook:{url}")
        record = await Watcher([watched], on_event=events.append, **FAST).check(watched)
        attempts = len(hooks.posts)
    assert record.action == CheckAction.SYNCED and exit_code([record]) == 0
    assert record.notified == 0 and record.notify_failed == 1 and attempts == 3
    stored = manager.store.checks.load()[0]
    assert stored.notify_failed == 1
    failed = [e for e in events if e["event"] == "notify_failed"]
    assert len(failed) == 1 and "HTTP 502 after 3 attempt(s)" in failed[0]["error"]
    everything = json.dumps(events) + caplog.text + capsys.readouterr().err
    assert SIGNATURE not in everything and "/hook" not in everything
    assert "webhook:http://127.0.0.1:" in failed[0]["target"]


async def test_a_rejected_webhook_is_not_retried_and_redacted():
    with Receiver() as hooks:
        hooks.statuses = [404]
        destination = NotifyTarget.parse(f"slack:{hooks.url('gone')}")
        with pytest.raises(Exception) as info:
            await deliver(destination, Notice("sync_completed", "https://x"), delays=(0, 0))
        assert len(hooks.posts) == 1
    assert "HTTP 404 after 1 attempt(s)" in str(info.value) and SIGNATURE not in str(info.value)
    assert repr(destination) == f"NotifyTarget('slack:{hooks.base}/…')"


@pytest.mark.parametrize(
    "text", ["teams", "pager:https://x/y", "webhook:ftp://host/x", "slack:https://"]
)
def test_bad_notification_targets_are_one_line_without_the_url(text):
    with pytest.raises(ConfigurationError) as info:
        NotifyTarget.parse(text)
    message = str(info.value)
    assert "\n" not in message and message.startswith("Bad notification target")
    assert "x/y" not in message


async def test_jupyter_notifications_go_to_the_registered_sink():
    from d365sync_nb.automation.notify import NotifyError, set_jupyter_sink

    shown: list[Notice] = []
    notice = Notice("version_changed", "https://x", 2)
    previous = set_jupyter_sink(shown.append)
    try:
        assert await deliver(NotifyTarget.parse("jupyter"), notice) == 1
    finally:
        set_jupyter_sink(previous)
    assert shown == [notice]
    set_jupyter_sink(None)
    try:
        with pytest.raises(NotifyError, match="need a notebook"):
            await deliver(NotifyTarget.parse("jupyter"), notice)
    finally:
        set_jupyter_sink(previous)


# -- when to sync, from history --------------------------------------------------------------
def recorded(manager, hour: int, day: int, *, minutes: float, throttled: int = 0,
             failed: bool = False) -> None:  # fmt: skip
    """A finished session started at ``hour`` UTC, saved in the cache like any other."""
    import uuid

    from d365sync_nb.models import HttpRecord, SyncSession

    start = datetime(2026, 11, day, hour, 10, tzinfo=UTC)
    manager.store.history.save(
        SyncSession(
            session_id=str(uuid.uuid4()),
            environment=manager.settings.base_url,
            strategy=SyncStrategy.FULL,
            status=SyncStatus.FAILED if failed else SyncStatus.COMPLETED,
            started_at=start,
            completed_at=start + timedelta(minutes=minutes),
            http=HttpRecord(requests=1000, by_status={"200": 1000 - throttled, "429": throttled}),
            error="The service answered 503" if failed else None,
        )
    )


def test_when_to_sync_from_history(make_manager):
    from d365sync_nb import diagnostics

    manager = make_manager("http://127.0.0.1:9")
    for day in (1, 2, 3):
        for hour in (1, 2, 3):  # the night: fast, no 429
            recorded(manager, hour, day, minutes=4)
        recorded(manager, 9, day, minutes=10, throttled=30)  # the morning: throttled
        recorded(manager, 10, day, minutes=12, throttled=40, failed=day == 1)
    advice = diagnostics.sync_windows(manager.get_session_history(limit=1000))
    assert advice.enough and advice.sessions == 15
    by_hour = {h["hour"]: h for h in advice.hours}
    assert by_hour[9] == {
        "hour": 9, "sessions": 3, "median_seconds": 600.0, "throttle_rate": 0.03,
        "failure_rate": 0.0,
    }  # fmt: skip
    assert by_hour[10]["failure_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert advice.best["start_hour"] == 1 and advice.best["end_hour"] == 4
    assert advice.worst["start_hour"] == 10
    assert advice.verdict.startswith(
        "Best: 01:00-04:00 UTC: 0.0% 429s, 0% failed, median 4 min; worst: 10:00-11:00 UTC: 4.0% "
        "429s, 33% failed, median 12 min"
    )
    assert "09:00" in str(advice)


def test_when_to_sync_says_when_there_are_too_few_sessions(make_manager):
    from d365sync_nb import diagnostics

    manager = make_manager("http://127.0.0.1:9")
    for day in (1, 2, 3, 4):
        recorded(manager, 2, day, minutes=4)  # many, but all in one hour: nothing to compare
    advice = diagnostics.sync_windows(manager.get_session_history())
    assert not advice.enough and advice.best is None
    assert advice.verdict.startswith("Too few sessions to tell when syncs go best: 4 finished")
    assert [h["hour"] for h in advice.hours] == [2]


async def test_several_environments_with_a_bound_on_parallel_syncs(make_manager, tmp_path):
    from d365sync_nb.emulator import Emulator

    with Emulator(latency_ms=2) as a_url, Emulator(latency_ms=2) as b_url:
        a = make_manager(a_url, cache_dir=tmp_path / "a")
        b = make_manager(b_url, cache_dir=tmp_path / "b")
        watcher = Watcher([target(a), target(b)], max_parallel=1, **FAST)
        records = await watcher.run(once=True)
    assert [r.action for r in records] == [CheckAction.SYNCED, CheckAction.SYNCED]
    first, second = sorted((m.get_session_history()[0] for m in (a, b)), key=lambda s: s.started_at)
    assert first.completed_at is not None and second.started_at >= first.completed_at


def test_a_skipped_check_says_why_once() -> None:
    from d365sync_nb.automation.watch import event_text

    reason = "another watcher or a sync is checking or syncing this environment"
    event = {"event": "check", "environment": "prod", "time": "12:00:00"}
    event["action"] = "skipped_running"
    assert event_text({**event, "reason": reason}) == f"12:00:00 prod: check: skipped ({reason})"
    assert event_text(event) == "12:00:00 prod: check: skipped (a sync was running)"
