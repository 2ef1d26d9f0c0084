"""Why a sync was slow or failed: a verdict a person can act on, and two sessions compared.

UI-free: the surfaces (magics, CLI, tools) render what :func:`diagnose` and :func:`compare`
return. Both read a session's ``http`` record; :func:`diagnose` also reads its request log (when
it is still kept) to name the requests support will ask about (their ``ms-dyn-aid``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from d365sync_nb.errors import RequestLogUnavailable
from d365sync_nb.models import PHASES, PhaseStatus, SyncPhase, SyncSession, SyncStatus

if TYPE_CHECKING:
    from d365sync_nb.sync.manager import SyncSessionManager

SLOW_P95_MS = 1000.0  # a p95 above this is worth a finding
SUPPORT_IDS = 10  # failed requests (not retried) whose activity ids a diagnosis lists
RETRIED_SHOWN = 5  # retried attempts a diagnosis shows as examples


@dataclass
class Diagnosis:
    """A verdict (one line), what to do (findings), and the figures behind them."""

    session_id: str
    status: str
    verdict: str
    findings: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    failed_requests: list[dict[str, Any]] = field(default_factory=list)
    retried_requests: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        lines = [f"Session {self.session_id} ({self.status}): {self.verdict}"]
        lines += [f"- {finding}" for finding in self.findings]
        for title, rows in (
            ("Failed requests (give support the ms-dyn-aid):", self.failed_requests),
            ("Retried requests (the last few):", self.retried_requests),
        ):
            if rows:
                lines.append(title)
                lines += [
                    f"  {r['started_at']}  {r['endpoint']}  {r['status'] or r['error']}  "
                    f"ms-dyn-aid {r['activity_id'] or '-'}  request {r['request_id']}"
                    for r in rows
                ]
        return "\n".join(lines)


def phase_shares(session: SyncSession) -> dict[str, float]:
    """Each phase's share of the session's time, in percent (phases that ran)."""
    seconds = {p.phase.value: p.seconds or 0.0 for p in session.phases.values() if p.seconds}
    total = sum(seconds.values())
    return {phase: round(100 * s / total, 1) for phase, s in seconds.items()} if total else {}


def diagnose(session: SyncSession, log: list[dict[str, Any]] | None = None) -> Diagnosis:
    """The verdict on one session, e.g. "throttled: 30 x 429 (Retry-After honoured, 31 s of
    waits across requests; concurrency lowered to 8), 5 dropped connections retried, p95
    latency 20 ms; labels took 84% of the time"."""
    http = session.http
    parts: list[str] = []
    findings: list[str] = []
    errors = Counter(row["error"] for row in log or () if row["error"])
    if session.status == SyncStatus.FAILED:
        where = _failed_phase(session)
        parts.append(f"failed{f' in {where}' if where else ''}: {session.error}")
        findings.append(_failure_advice(session.error or ""))
    elif session.status == SyncStatus.CANCELLED:
        parts.append("cancelled")
    elif session.is_running:
        parts.append(f"still running ({session.progress_percent:.0f}%)")
    labels_failed = session.counts.get("labels_failed", 0)
    if labels_failed:
        parts.append(f"{labels_failed:,} labels failed (kept as missing)")
        note = session.phases[SyncPhase.LABELS].note or ""
        findings.append(
            f"The service refused some labels after retries: {note}. The next sync asks for "
            "them again; give support the activity ids below if it persists"
        )
    concurrency = http.concurrency or {}
    adaptive = concurrency.get("mode") == "adaptive"
    if http.throttled:
        parts.append(
            f"throttled: {http.throttled} x 429 (Retry-After honoured, "
            f"{http.retry_wait_seconds:.0f} s of waits across requests"
            f"{_concurrency_text(concurrency)})"
        )
        findings.append(
            "The service throttled this client (429): the adaptive concurrency found its level "
            f"({concurrency.get('final')} in flight at the end); sync off-peak or give the Entra "
            "app a higher throttling priority to go faster"
            if adaptive
            else "The service throttled this client (429): sync with a lower --concurrency (or "
            "without one: adaptive) or off-peak; a higher throttling priority for the Entra app "
            "helps too"
        )
    for code in sorted(http.by_status, key=int):
        if code in ("502", "503", "504"):
            parts.append(f"{http.by_status[code]} x {code} retried")
    dropped = errors.get("dropped", 0)
    if log is None and http.transport_errors:  # the kinds are in the pruned log only
        parts.append(f"{http.transport_errors} attempts without a usable answer")
    if dropped:
        parts.append(f"{dropped} dropped connection{'s' if dropped != 1 else ''} retried")
        findings.append(
            "Connections were dropped: retries covered them; if it recurs, check the network "
            "or proxy between this machine and the environment"
        )
    for kind, text in (
        ("timeout", "stalled reads"),
        ("connect", "connections refused or reset"),
        ("garbled", "garbled bodies"),
        ("malformed", "answers that were not HTTP"),
        ("deadline", "requests past their deadline"),
        ("too_large", "answers too large"),
    ):
        if errors.get(kind):
            parts.append(f"{errors[kind]} {text}")
    latency = http.latency_ms or {}
    if latency:
        parts.append(f"p95 latency {latency['p95']:.0f} ms")
        if latency["p95"] > SLOW_P95_MS:
            findings.append(
                f"Answers are slow (p95 {latency['p95']:.0f} ms): the environment is busy; "
                "more concurrency will not help while it is"
            )
    shares = phase_shares(session)
    if shares:
        phase, share = max(shares.items(), key=lambda kv: kv[1])
        parts.append(f"{phase} took {share:.0f}% of the time")
    if session.status == SyncStatus.COMPLETED and not (http.throttled or http.transport_errors):
        parts.insert(0, "healthy: no throttling, no dropped connections")
    failed = [row for row in log or () if _failed(row) and not row["retry_cause"]]
    retried = [row for row in log or () if row["retry_cause"]]
    return Diagnosis(
        session_id=session.session_id,
        status=session.status.value,
        verdict=", ".join(parts[:-1]) + ("; " if len(parts) > 1 else "") + parts[-1]
        if parts
        else "no requests recorded",
        findings=[f for f in findings if f],
        facts={
            "duration_seconds": session.duration_seconds,
            "requests": http.requests,
            "retries": http.retries,
            "throttled": http.throttled,
            "retry_wait_seconds": http.retry_wait_seconds,
            "transport_errors": http.transport_errors,
            "errors_by_kind": dict(errors),
            "latency_ms": latency or None,
            "concurrency": {k: v for k, v in concurrency.items() if k != "changes"} or None,
            "phase_share_percent": shares,
            "request_log_kept": log is not None,
        },
        failed_requests=[_support_row(row) for row in failed[-SUPPORT_IDS:]],
        retried_requests=[_support_row(row) for row in retried[-RETRIED_SHOWN:]],
    )


def session_with_log(
    manager: SyncSessionManager, session_id: str
) -> tuple[SyncSession, list[dict[str, Any]] | None]:
    """A session of ``manager`` and its request log (None once pruned)."""
    session = manager.get_sync_session(session_id)
    try:
        return session, manager.get_request_log(session.session_id)
    except RequestLogUnavailable:  # pruned: the aggregates still tell most of it
        return session, None


def diagnose_session(manager: SyncSessionManager, session_id: str) -> Diagnosis:
    """:func:`diagnose` a session of ``manager`` with its request log, if it is still kept."""
    return diagnose(*session_with_log(manager, session_id))


# The figures compared per phase, in the order every surface shows them.
COMPARED = ("status", "seconds", "items", "requests", "retries", "throttled")


def compare(a: SyncSession, b: SyncSession) -> list[dict[str, Any]]:
    """One row per phase: seconds, items, requests, retries and 429s of each session, and the
    ratio b/a of seconds and requests (None where a is zero)."""
    rows = []
    for phase in PHASES:
        pa, pb = a.phases[phase], b.phases[phase]
        ha, hb = a.http.phase(phase.value), b.http.phase(phase.value)
        row: dict[str, Any] = {"phase": phase.value}
        for key, left, right in (
            ("status", pa.status.value, pb.status.value),
            ("seconds", pa.seconds, pb.seconds),
            ("items", pa.items_processed, pb.items_processed),
            ("requests", ha.requests, hb.requests),
            ("retries", ha.retries, hb.retries),
            ("throttled", ha.throttled, hb.throttled),
        ):
            row[f"a_{key}"], row[f"b_{key}"] = left, right
        row["seconds_ratio"] = ratio(pb.seconds, pa.seconds)
        row["requests_ratio"] = ratio(row["b_requests"], row["a_requests"])
        rows.append(row)
    return rows


def ratio(b: float | None, a: float | None) -> float | None:
    """b / a to two places; None where a is zero or b unknown."""
    if not a or b is None:
        return None
    return round(b / a, 2)


def _concurrency_text(concurrency: dict[str, Any]) -> str:
    """``; concurrency lowered to 6`` (and where an adaptive limit settled), or nothing."""
    low, start = concurrency.get("min"), concurrency.get("start")
    adaptive = concurrency.get("mode") == "adaptive"
    if low is not None and start is not None and low < start:
        end = f", {concurrency.get('final')} at the end" if adaptive else ""
        return f"; concurrency lowered to {low}{end}"
    if adaptive:
        top, final = concurrency.get("max"), concurrency.get("final")
        return f"; adaptive concurrency up to {top}, {final} at the end"
    return ""


def _failed_phase(session: SyncSession) -> str | None:
    for progress in session.phases.values():
        if progress.status == PhaseStatus.FAILED:
            return progress.phase.value
    return None


def _failure_advice(error: str) -> str:
    text = error.lower()
    # status codes as whole words: request and activity ids (hex) often contain "401" or "429"
    if re.search(r"\b40[13]\b", text) or "token" in text:
        return (
            "Authentication failed: check D365FO_CLIENT_ID/D365FO_TENANT_ID/D365FO_CLIENT_SECRET "
            "(or `az login`) and that the app is registered in the environment"
        )
    if re.search(r"\b429\b", text):
        return (
            "Still throttled after many waits: the service is overloaded; sync later (or with a "
            "lower --concurrency)"
        )
    if "expected json" in text or "html" in text:
        return "The answers are not the D365 metadata service: check the base URL"
    if "request's deadline" in text:
        return (
            "An answer did not complete within the request's deadline (a service dripping its "
            "body, or never ending it): retry later, or raise request_deadline in the profile"
        )
    if "still paging" in text or "full chunks" in text:
        return (
            "The service kept answering more pages than the collection can hold: its "
            "@odata.nextLink never ends; report it to support with the activity ids below"
        )
    if "larger than" in text and "decoded" in text:
        return (
            "An answer was larger than any real one (max_answer_mb): not retried; check the "
            "base URL, or raise max_answer_mb in the profile if the service really sends that"
        )
    if "labels failed" in text or "label requests failed" in text:
        return (
            "The service refused too many labels to call the sync complete: see the failed "
            "requests below; retry later, or give support their activity ids"
        )
    if " item " in text and (" must be " in text or " is missing" in text):
        return (
            "The service sent an answer of the wrong shape (named above): give support the "
            "activity ids below"
        )
    if "no answer" in text or "stopped answering" in text:
        return "The service stopped answering: check that the environment is up, then retry"
    return "Run the sync again; if it fails the same way, give support the activity ids below"


def _failed(row: dict[str, Any]) -> bool:
    """An attempt that did not get its answer (a label the service does not know is data)."""
    if row["error"]:
        return True
    status = row["status"] or 0
    return status >= 400 and not (status == 404 and row["endpoint"] == "Labels")


def _support_row(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("started_at", "phase", "endpoint", "status", "error", "activity_id", "request_id")
    return {key: row.get(key) for key in keys}


# -- when to sync, from history ------------------------------------------------------------------
MIN_SESSIONS = 8  # fewer finished sessions than this say nothing about the hours of a day
MIN_PER_HOUR = 2  # an hour is compared only with this many sessions started in it


@dataclass
class SyncWindows:
    """Per hour of day (UTC): sessions, median duration, 429 and failure rates; the best and
    the worst window, or why there is not enough history to tell."""

    sessions: int
    hours: list[dict[str, Any]]
    enough: bool
    verdict: str
    best: dict[str, Any] | None = None
    worst: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        lines = [self.verdict]
        if self.hours:
            lines.append("hour (UTC)  sessions  median  429s    failed")
            lines += [
                f"{h['hour']:02d}:00       {h['sessions']:>8}  {_minutes(h['median_seconds']):>6}"
                f"  {h['throttle_rate'] * 100:>5.1f}%  {h['failure_rate'] * 100:>5.0f}%"
                for h in self.hours
            ]
        return "\n".join(lines)


def sync_windows(sessions: list[SyncSession]) -> SyncWindows:
    """When syncs of an environment go best, from its finished sessions (cancelled ones say
    nothing about the service and are left out)."""
    finished = [s for s in sessions if s.status in (SyncStatus.COMPLETED, SyncStatus.FAILED)]
    by_hour: dict[int, list[SyncSession]] = {}
    for session in finished:
        by_hour.setdefault(session.started_at.hour, []).append(session)
    hours = [_hour_row(hour, group) for hour, group in sorted(by_hour.items())]
    compared = [h for h in hours if h["sessions"] >= MIN_PER_HOUR]
    if len(finished) < MIN_SESSIONS or len(compared) < 2:
        return SyncWindows(
            sessions=len(finished),
            hours=hours,
            enough=False,
            verdict=(
                f"Too few sessions to tell when syncs go best: {len(finished)} finished, in "
                f"{len(compared)} hour(s) of the day with {MIN_PER_HOUR}+ each (needed: "
                f"{MIN_SESSIONS} sessions over 2 or more such hours)"
            ),
        )
    best = _window(compared, min(compared, key=_score))
    worst = _window(compared, max(compared, key=_score))
    return SyncWindows(
        sessions=len(finished),
        hours=hours,
        enough=True,
        best=best,
        worst=worst,
        verdict=f"Best: {_window_text(best)}; worst: {_window_text(worst)} (over "
        f"{len(finished)} sessions, all strategies)",
    )


def _hour_row(hour: int, group: list[SyncSession]) -> dict[str, Any]:
    durations = sorted(s.duration_seconds for s in group if s.status == SyncStatus.COMPLETED)
    requests = sum(s.http.requests for s in group)
    return {
        "hour": hour,
        "sessions": len(group),
        "median_seconds": _median(durations),
        "throttle_rate": round(sum(s.http.throttled for s in group) / requests, 4)
        if requests
        else 0.0,
        "failure_rate": round(sum(s.status == SyncStatus.FAILED for s in group) / len(group), 4),
    }


def _score(row: dict[str, Any]) -> tuple[float, float, float]:
    median = row["median_seconds"]
    return (row["failure_rate"], row["throttle_rate"], median if median is not None else 1e12)


def _window(rows: list[dict[str, Any]], anchor: dict[str, Any]) -> dict[str, Any]:
    """The anchor hour widened over neighbouring compared hours that score about the same."""
    by_hour = {r["hour"]: r for r in rows}

    def alike(row: dict[str, Any] | None) -> bool:
        return (
            row is not None
            and abs(row["failure_rate"] - anchor["failure_rate"]) <= 0.05
            and abs(row["throttle_rate"] - anchor["throttle_rate"]) <= 0.005
        )

    start = end = anchor["hour"]
    while start - 1 >= 0 and alike(by_hour.get(start - 1)):
        start -= 1
    while end + 1 <= 23 and alike(by_hour.get(end + 1)):
        end += 1
    group = [by_hour[h] for h in range(start, end + 1)]
    sessions = sum(r["sessions"] for r in group)
    medians = [r["median_seconds"] for r in group if r["median_seconds"] is not None]
    return {
        "start_hour": start,
        "end_hour": end + 1,
        "sessions": sessions,
        "median_seconds": _median(sorted(medians)),
        "throttle_rate": _weighted(group, "throttle_rate", sessions),
        "failure_rate": _weighted(group, "failure_rate", sessions),
    }


def _weighted(rows: list[dict[str, Any]], key: str, sessions: int) -> float:
    return round(sum(r[key] * r["sessions"] for r in rows) / sessions, 4)


def _window_text(w: dict[str, Any]) -> str:
    return (
        f"{w['start_hour']:02d}:00-{w['end_hour'] % 24:02d}:00 UTC: "
        f"{w['throttle_rate'] * 100:.1f}% 429s, {w['failure_rate'] * 100:.0f}% failed, "
        f"median {_minutes(w['median_seconds'])}"
    )


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
