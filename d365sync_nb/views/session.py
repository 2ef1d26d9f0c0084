"""A session as shown: its headline, sentences, figures and phases, computed once from a
snapshot. Every display of a session (the terminal's report and progress, the widget panel,
the tools' messages) lays out a :class:`SessionView`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from d365sync_nb.models import PhaseProgress, PhaseStatus, SyncSession, SyncStatus
from d365sync_nb.views.format import clock, count, duration

# The counts a session summary shows, in order: (key of SyncSession.counts, label).
SUMMARY_COUNTS: tuple[tuple[str, str], ...] = (
    ("data_entities", "data entities"),
    ("public_entities", "public entities"),
    ("actions", "actions"),
    ("enumerations", "enumerations"),
    ("labels", "labels"),
)
STATUS_MARK = {
    PhaseStatus.PENDING: " ",
    PhaseStatus.RUNNING: ">",
    PhaseStatus.COMPLETED: "✓",
    PhaseStatus.FAILED: "✗",
    PhaseStatus.CANCELLED: "■",
    PhaseStatus.SKIPPED: "-",
    PhaseStatus.REUSED: "↺",
}
_QUIET = (PhaseStatus.PENDING, PhaseStatus.SKIPPED, PhaseStatus.REUSED)  # no figures to show
NOT_RUN = "not run"  # a phase still pending when its session ended: it never will run


def summary_counts(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """``(label, value)`` of each :data:`SUMMARY_COUNTS` entry present in ``counts``."""
    return [(label, counts[key]) for key, label in SUMMARY_COUNTS if key in counts]


def counts_text(counts: Mapping[str, int]) -> str:
    """``100 data entities, 80 public entities, ...`` (the summary counts present)."""
    return ", ".join(f"{count(value)} {label}" for label, value in summary_counts(counts))


@dataclass(frozen=True)
class PhaseView:
    """One phase as shown: mark, status and its word (``label``: ``not run`` for a phase
    left pending by an ended session), items (``899/899``), seconds, rate, note, error."""

    name: str
    status: PhaseStatus
    label: str
    percent: float
    items: str
    seconds: str
    elapsed: float | None
    rate: str
    note: str | None
    error: str | None

    @classmethod
    def of(cls, p: PhaseProgress, *, session_ended: bool = False) -> PhaseView:
        if p.items_total is None:
            items = count(p.items_processed) if p.items_processed else ""
        else:
            items = f"{count(p.items_processed)}/{count(p.items_total)}"
        rate = ""
        if p.status == PhaseStatus.RUNNING and p.items_per_second:
            rate = f"{p.items_per_second:,.0f}/s"
        return cls(
            name=p.phase.value,
            status=p.status,
            label=NOT_RUN if session_ended and p.status == PhaseStatus.PENDING else p.status.value,
            percent=p.percent,
            items=items,
            seconds=duration(p.seconds) if p.seconds is not None else "",
            elapsed=p.seconds,
            rate=rate,
            note=p.note,
            error=p.error,
        )

    @property
    def mark(self) -> str:
        return STATUS_MARK[self.status]

    @property
    def ended(self) -> bool:
        return self.status not in (PhaseStatus.PENDING, PhaseStatus.RUNNING)

    @property
    def summary(self) -> str:
        """``completed · 899/899 · 1.2 s · note`` (what a phase row says beside its bar)."""
        parts = [self.label]
        if self.status not in _QUIET:
            if self.items:
                parts.append(self.items)
            if self.rate:
                parts.append(self.rate)
            elif self.seconds:
                parts.append(self.seconds)
        if self.note:
            parts.append(self.note)
        return " · ".join(parts)


@dataclass(frozen=True)
class SessionView:
    """A session snapshot as shown (see the module docstring)."""

    session: SyncSession

    @property
    def phases(self) -> list[PhaseView]:
        ended = self.session.status.is_final
        return [PhaseView.of(p, session_ended=ended) for p in self.session.phases.values()]

    @property
    def headline(self) -> str:
        s = self.session
        return (
            f"Session {s.session_id}  {s.strategy.value}  version {s.global_version_id}  "
            f"{s.status.value}  {clock(s.duration_seconds)}"
        )

    @property
    def counts(self) -> str:
        return counts_text(self.session.counts)

    @property
    def http_parts(self) -> list[str]:
        """What went wrong on the wire so far, only the nonzero figures: ``12 retries``,
        ``30 × 429``, ``waits 4.2 s`` (the waits before retries, Retry-After or backoff,
        summed over the requests that waited: it can exceed the session's time)."""
        http = self.session.http
        parts = []
        if http.retries:
            parts.append(f"{count(http.retries)} retr{'y' if http.retries == 1 else 'ies'}")
        if http.throttled:
            parts.append(f"{count(http.throttled)} × 429")
        if http.retry_wait_seconds >= 0.05:
            parts.append(f"waits {duration(http.retry_wait_seconds)}")
        return parts

    @property
    def http_line(self) -> str | None:
        """The report's line on retries and throttling, or None when there were none."""
        parts = self.http_parts
        if not parts:
            return None
        return f"Requests: {count(self.session.http.requests)}, " + ", ".join(parts)

    @property
    def http_summary(self) -> str:
        """``412 requests`` then the nonzero figures: ``412 requests, 12 retries, 30 × 429``."""
        requests = self.session.http.requests
        head = f"{count(requests)} request{'' if requests == 1 else 's'}"
        return ", ".join([head, *self.http_parts])

    @property
    def where(self) -> str:
        """`` in phase labels`` (where it stopped), or nothing."""
        phase = self.session.current_phase
        return f" in phase {phase.value}" if phase else ""

    @property
    def sentence(self) -> str:
        """One sentence on where the session stands (assistants and one-line displays)."""
        s = self.session
        if s.is_running:
            phase = s.current_phase.value if s.current_phase else "starting"
            eta = s.estimated_remaining_seconds
            left = f", about {eta:.{0 if eta >= 10 else 1}f} s left" if eta is not None else ""
            return f"Running: {s.progress_percent:.0f}% done, phase '{phase}'{left}."
        took = f"{s.duration_seconds:.1f} s"
        if s.status == SyncStatus.COMPLETED:
            return f"Completed in {took}."
        if s.status == SyncStatus.CANCELLED:
            return f"Cancelled after {took}."
        return f"Failed after {took}: {s.error or 'no error recorded'}"

    @property
    def outcome(self) -> str | None:
        """The closing sentence of an ended session (None while it runs)."""
        s = self.session
        if not s.status.is_final:
            return None
        took = duration(s.duration_seconds)
        if s.status == SyncStatus.COMPLETED:
            requests = f" ({count(s.http.requests)} requests)" if s.http.requests else ""
            return f"Completed in {took}: {self.counts}{requests}"
        if s.status == SyncStatus.CANCELLED:
            return f"Cancelled{self.where} after {took}; the cache keeps its previous build"
        return f"Failed{self.where} after {took}: {s.error or 'unknown error'}"

    @property
    def progress_message(self) -> str:
        """``labels 12,345/27,118, ETA 40 s`` while running (a progress notification's message);
        the outcome once ended."""
        s = self.session
        if s.status.is_final:
            return self.outcome or self.sentence
        phase = s.phases[s.current_phase] if s.current_phase else None
        where = "starting"
        if phase is not None:
            items = PhaseView.of(phase).items
            where = f"{phase.phase.value} {items}" if items else phase.phase.value
        eta = s.estimated_remaining_seconds
        left = "" if eta is None else f", ETA {duration(eta) if eta >= 60 else f'{eta:.0f} s'}"
        return f"{where}{left}"

    @property
    def progress(self) -> str:
        """``42.0% · ETA 12s`` while running, ``100.0% · 3.2 s`` once ended."""
        s = self.session
        if s.status.is_final:
            return f"{s.progress_percent:.1f}% · {duration(s.duration_seconds)}"
        return f"{s.progress_percent:.1f}% · ETA {clock(s.estimated_remaining_seconds)}"
