"""The sync tools: start, wait for, follow, cancel, list and review sync sessions.

Each tool is an ``async def`` returning a JSON-ready dict, whose shape its
:class:`ToolSpec` ``result`` model declares (:mod:`d365sync_nb.tool_results`). Failure is a
value, never an exception: ``{"success": False, "error": ..., "tool": ..., "arguments":
...}``, and every answer is redacted with the secrets of the connections involved. The tools
are a thin surface over :class:`~d365sync_nb.sync.manager.SyncSessionManager`; the MCP server
(:mod:`d365sync_nb.mcp_server`) serves the same functions with the metadata in :data:`TOOLS`.

Which environment a call talks to: ``profile`` names a connection profile; without one, the
default connection (:func:`d365sync_nb.connection.set_default_connection`, bound by the MCP
server or a notebook), else the ``D365FO_*`` variables
(:class:`~d365sync_nb.connection.Registry`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field

from d365sync_nb import diagnostics
from d365sync_nb import tool_results as results
from d365sync_nb.connection import registry
from d365sync_nb.errors import (
    ConfigurationError,
    D365SyncError,
    SessionConflictError,
    SessionNotFoundError,
)
from d365sync_nb.models import (
    STRATEGY_DESCRIPTIONS,
    SyncSession,
    SyncStatus,
    SyncStrategy,
    iso,
)
from d365sync_nb.operations import history as history_operation
from d365sync_nb.operations.spec import Arg
from d365sync_nb.redaction import redact
from d365sync_nb.views import SessionView

log = logging.getLogger(__name__)

MAX_HISTORY = 100
MAX_WAIT_SECONDS = 300
DEFAULT_WAIT_SECONDS = 60
PROGRESS_INTERVAL = 0.25  # least seconds between two progress notifications of one wait
ADVICE_SESSIONS = 500  # recent sessions the history's "when_to_sync" advice reads
DEFAULT_STRATEGY = SyncStrategy.FULL_WITHOUT_LABELS.value
INITIATED_BY = "assistant"

# -- argument metadata (shared by Python signatures and the MCP JSON schemas) ---------------
Profile = Annotated[
    str | None,
    Field(
        description="Named connection profile from the profiles file; omit to use the default "
        "connection (the one this server or notebook is bound to, else D365FO_* variables)"
    ),
]
SessionId = Annotated[
    str,
    Field(description="Session id (a UUID) returned by d365fo_start_sync or listed by the tools"),
]
Strategy = Annotated[
    str,
    Field(
        description="What to sync: "
        + "; ".join(f"'{s.value}': {d}" for s, d in STRATEGY_DESCRIPTIONS.items()),
        json_schema_extra={"enum": [s.value for s in SyncStrategy]},
    ),
]
GlobalVersionId = Annotated[
    int | None,
    Field(
        description="Cached global version id to sync; omit to detect the version the "
        "environment runs now (the usual choice)"
    ),
]
WaitSeconds = Annotated[
    float,
    Field(description=f"Most seconds to wait, 0 to {MAX_WAIT_SECONDS} (clamped); the sync goes "
          "on after the wait ends either way", json_schema_extra={"minimum": 0,
                                                                "maximum": MAX_WAIT_SECONDS}),
]  # fmt: skip
StartWait = Annotated[
    float | None,
    Field(description="Wait up to this many seconds (0 to "
          f"{MAX_WAIT_SECONDS}) for the new session to end, as d365fo_wait_sync does (with "
          "progress notifications); omit to return at once"),
]  # fmt: skip
Result = dict[str, Any]
# A progress notification: progress (monotonic), total, message
Reporter = Callable[[float, float | None, str | None], Awaitable[None]]
_FIND_SESSIONS = (
    "d365fo_list_sync_sessions lists the running sessions, d365fo_get_sync_history the "
    "recorded ones"
)
_RUNNING_ALREADY = (
    "d365fo_list_sync_sessions shows the running session; wait for it with "
    "d365fo_wait_sync or stop it with d365fo_cancel_sync"
)
_RUNNING_ELSEWHERE = (
    "It runs outside this server (a watch or another process), so d365fo_list_sync_sessions "
    "does not show it and d365fo_cancel_sync cannot stop it; d365fo_get_sync_history shows it "
    "once it has ended: start again then"
)


# -- the tools ---------------------------------------------------------------------------
ToolFn = Callable[..., Awaitable[Result]]
HIDDEN = ("report",)  # keyword parameters a surface passes, not arguments of the tool


def as_tool(fn: ToolFn) -> ToolFn:
    """Turn errors into a failure value and redact secrets from every answer."""
    signature = inspect.signature(fn)
    name = fn.__name__

    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Result:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            return rejected(name, {**kwargs}, str(exc))
        bound.apply_defaults()
        arguments = {k: v for k, v in bound.arguments.items() if k not in HIDDEN}
        try:
            answer = await fn(**bound.arguments)  # by name: __signature__ may reorder them
        except SessionNotFoundError as exc:
            answer = _failure(name, arguments, f"{exc}. {_FIND_SESSIONS}")
        except SessionConflictError as exc:
            hint = _RUNNING_ELSEWHERE if exc.elsewhere else _RUNNING_ALREADY
            answer = _failure(name, arguments, f"{exc}. {hint}")
        except D365SyncError as exc:
            answer = _failure(name, arguments, str(exc))
        except Exception as exc:
            log.exception("tool %s failed unexpectedly", name)
            answer = _failure(
                name,
                arguments,
                f"Internal error ({type(exc).__name__}: {exc}); this is a bug, the server log "
                "has the details",
            )
        try:
            secrets = registry.secrets(arguments.get("profile"))
        except D365SyncError as exc:  # fail closed: an answer we cannot redact is withheld
            return _failure(name, {}, f"Answer withheld: cannot collect secrets to redact ({exc})")
        return redact(answer, secrets)

    return call


@as_tool
async def d365fo_start_sync(
    strategy: Strategy = DEFAULT_STRATEGY,
    global_version_id: GlobalVersionId = None,
    profile: Profile = None,
    wait_seconds: StartWait = None,
    *,
    report: Reporter | None = None,
) -> Result:
    """Start a background sync session; ``session_id`` is None when already up to date.
    With ``wait_seconds``, wait for it as :func:`d365fo_wait_sync` does (``waited``)."""
    conn = registry.connection(profile)
    result = await conn.manager.start(
        global_version_id, SyncStrategy.parse(strategy), initiated_by=INITIATED_BY
    )
    answer: Result = {
        "success": True,
        "environment": conn.settings.base_url,
        "session_id": result.session_id,
        "global_version_id": result.global_version_id,
        "strategy": result.strategy.value,
        "up_to_date": result.up_to_date,
    }
    sid = result.session_id
    if sid is None:
        answer["synced_at"] = result.synced_at
        answer["message"] = f"{result.up_to_date_sentence}; no session was started."
        answer["instructions"] = (
            "Nothing to follow: the cached metadata is current (d365fo_get_sync_history shows "
            "when it was synced). To fetch what this strategy leaves out, start another "
            "strategy, e.g. 'full' adds the labels."
        )
        return answer
    answer["message"] = f"{result.message} (session {sid})."
    answer["instructions"] = (
        f"The sync runs in the background. Call d365fo_wait_sync with session_id='{sid}' to "
        "wait for it (it reports progress and returns the outcome, or 'still running' after "
        "its timeout), or read the resource d365sync://sessions/"
        f"{sid}; d365fo_cancel_sync with the same session_id stops it."
    )
    if wait_seconds is not None:
        waited = await _wait(conn.manager, sid, _seconds(wait_seconds, "wait_seconds"), report)
        answer["waited"] = waited
        answer["message"] = f"{answer['message']} {waited['message']}"
    return answer


@as_tool
async def d365fo_wait_sync(
    session_id: SessionId,
    timeout_seconds: WaitSeconds = DEFAULT_WAIT_SECONDS,
    profile: Profile = None,
    *,
    report: Reporter | None = None,
) -> Result:
    """Wait until a session ends or the timeout passes; report progress meanwhile."""
    manager = registry.connection(profile).manager
    answer = await _wait(
        manager, _session_id(session_id), _seconds(timeout_seconds, "timeout_seconds"), report
    )
    return answer


async def _wait(
    manager: Any, session_id: str, timeout: tuple[float, float], report: Reporter | None
) -> Result:
    """Wait for a session (at most ``timeout`` seconds), sending ``report(progress, 100,
    message)`` from the manager's snapshots: at most every PROGRESS_INTERVAL seconds, only when
    the percentage has grown. Leaving early (a timeout, a client gone) leaves the sync running."""
    requested, seconds = timeout
    session = manager.get_sync_session(session_id)
    latest: list[SyncSession] = [session]
    changed = asyncio.Event()

    def on_snapshot(snapshot: SyncSession) -> None:
        latest[0] = snapshot
        changed.set()

    began = time.monotonic()
    sent = -1.0
    last_sent = 0.0

    async def send(snapshot: SyncSession, *, force: bool = False) -> None:
        nonlocal sent, last_sent
        percent = round(snapshot.progress_percent, 1)
        now = time.monotonic()
        if report is None or percent <= sent or (not force and now - last_sent < PROGRESS_INTERVAL):
            return
        sent, last_sent = percent, now
        await report(percent, 100.0, SessionView(snapshot).progress_message)

    finished = not any(s.session_id == session.session_id for s in manager.get_active_sessions())
    if not finished:
        manager.add_progress_callback(session.session_id, on_snapshot)
        ended = asyncio.ensure_future(manager.wait(session.session_id))
        try:
            await send(session, force=True)
            deadline = began + seconds
            while not ended.done():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                changed.clear()
                woke = asyncio.ensure_future(changed.wait())
                await asyncio.wait([ended, woke], timeout=left,
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                woke.cancel()
                await send(latest[0])
            finished = ended.done()
            if finished:
                session = ended.result()
                await send(session, force=True)
            else:
                session = latest[0]
        finally:
            if not ended.done():
                ended.cancel()  # stops waiting only: the session's task goes on
            manager.remove_progress_callback(session.session_id, on_snapshot)
    view = SessionView(session)
    answer: Result = {
        "success": True,
        "session_id": session.session_id,
        "finished": finished,
        "still_running": not finished,
        "waited_seconds": round(time.monotonic() - began, 3),
        "summary": session.summary(),
        "http": session.http.model_dump(mode="json"),
    }
    if finished:
        answer["verdict"] = diagnostics.diagnose_session(manager, session.session_id).verdict
        answer["message"] = view.outcome or view.sentence
    else:
        answer["message"] = (
            f"Still running after {seconds:g} s: {view.progress_message}. Call d365fo_wait_sync "
            "again to keep waiting."
        )
    if seconds != requested:
        answer["notice"] = (
            f"timeout {requested:g} is outside 0..{MAX_WAIT_SECONDS}; waited at most {seconds:g}"
        )
    return answer


@as_tool
async def d365fo_get_sync_progress(session_id: SessionId, profile: Profile = None) -> Result:
    """Full detail and a short summary of a running or finished session."""
    manager = registry.connection(profile).manager
    session = manager.get_sync_session(_session_id(session_id))
    if session.status.is_final and any(s is session for s in manager.get_active_sessions()):
        # it has just ended and is saving its outcome (its failed phase, its last requests)
        session = await manager.wait(session.session_id)
    answer: Result = {
        "success": True,
        "message": SessionView(session).sentence,
        "summary": session.summary(),
        "session": session.to_dict(),
    }
    if session.status.is_final:  # a finished session: why it was slow or failed, in a sentence
        answer["diagnosis"] = diagnostics.diagnose_session(manager, session.session_id).verdict
    return answer


@as_tool
async def d365fo_cancel_sync(session_id: SessionId, profile: Profile = None) -> Result:
    """Cancel a running session and wait until it has stopped."""
    manager = registry.connection(profile).manager
    sid = _session_id(session_id)
    stopped = await manager.cancel_sync_session(sid)
    session = manager.get_sync_session(sid)
    outcome = {"session_id": session.session_id, "status": session.status.value}
    if stopped and session.status == SyncStatus.CANCELLED:
        return {
            "success": True,
            **outcome,
            "message": f"Cancelled session {session.session_id}; its unfinished data was "
            "discarded and the cache keeps the last complete sync.",
        }
    when = "before the cancel took effect" if stopped else "already"
    error = (
        f"Session {session.session_id} had {when} finished ({session.status}); there was "
        "nothing to cancel. d365fo_get_sync_progress shows its outcome."
    )
    arguments = {"session_id": session_id, "profile": profile}
    return {**_failure("d365fo_cancel_sync", arguments, error), **outcome}


@as_tool
async def d365fo_list_sync_sessions(profile: Profile = None) -> Result:
    """Sessions running now, with status, percent, phase and ETA."""
    conn = registry.connection(profile)
    active = conn.manager.get_active_sessions()
    if active:
        text = f"{len(active)} sync session(s) running: " + "; ".join(
            f"{s.session_id}: {SessionView(s).sentence}" for s in active
        )
    else:
        text = "No sync session is running."
    return {
        "success": True,
        "environment": conn.settings.base_url,
        "active_sessions": [s.summary() for s in active],
        "total_count": len(active),
        "running_count": sum(1 for s in active if s.status == SyncStatus.RUNNING),
        "summary": {
            "has_running_sessions": bool(active),
            "latest_session_id": active[-1].session_id if active else None,
            "message": text,
        },
    }


def _history_parameters(fn: ToolFn) -> ToolFn:
    """The history tool's arguments are the history operation's (with the tool's bound on
    ``limit`` and its name ``global_version_id``), plus ``profile``."""
    fn.__signature__ = history_operation.OPERATION.tool_signature(  # type: ignore[attr-defined]
        rename={"version": "global_version_id"},
        replace={"limit": Arg("limit", f"How many recent sessions to return, 1 to {MAX_HISTORY} "
                              "(out-of-range values are clamped)", kind=int, default=20,
                              minimum=1, maximum=MAX_HISTORY, keyword_only=False)},
        extra=[inspect.Parameter("profile", inspect.Parameter.KEYWORD_ONLY, default=None,
                                 annotation=Profile)],
    )  # fmt: skip
    return fn


@as_tool
@_history_parameters
async def d365fo_get_sync_history(
    limit: int = 20,
    status: str | None = None,
    strategy: str | None = None,
    since: str | None = None,
    until: str | None = None,
    global_version_id: int | None = None,
    profile: str | None = None,
) -> Result:
    """Recent sessions, newest first, with success/failure counts and average duration;
    optionally only those of a status, strategy, global version or time range."""
    requested = integer_argument(limit, "limit")
    used = min(MAX_HISTORY, max(1, requested))
    filters = {
        name: value
        for name, value in (
            ("status", status),
            ("strategy", strategy),
            ("since", since),
            ("until", until),
            ("global_version_id", global_version_id),
        )
        if value is not None
    }
    conn = registry.connection(profile)
    history = conn.manager.get_session_history(
        limit=used,
        status=status,
        strategy=strategy,
        since=since,
        until=until,
        version=global_version_id,
    )
    answer: Result = {
        "success": True,
        "environment": conn.settings.base_url,
        "limit": used,
        "history": [_history_row(s) for s in history],
        "total_count": len(history),
        "recorded_count": conn.manager.store.history.count(),
        "summary": _history_summary(history),
        "when_to_sync": diagnostics.sync_windows(
            conn.manager.get_session_history(limit=ADVICE_SESSIONS)
        ).verdict,
    }
    if filters:  # as given; total_count and summary cover the matching sessions only
        answer["filters"] = filters
    if used != requested:
        answer["notice"] = f"limit {requested} is outside 1..{MAX_HISTORY}; used {used} instead"
    return answer


# -- tool metadata (one place for Python and MCP) --------------------------------------------
@dataclass(frozen=True)
class ToolSpec:
    """One tool: its function, title, description, whether it only reads, and the model of
    its answer (success and failure alike)."""

    name: str
    title: str
    description: str
    fn: ToolFn
    read_only: bool
    result: type[BaseModel]
    destructive: bool = False

    @property
    def reports_progress(self) -> bool:
        """The tool takes ``report`` (a :data:`Reporter`) for progress notifications."""
        return "report" in inspect.signature(self.fn).parameters


_STRATEGIES = "; ".join(f"'{s.value}': {d}" for s, d in STRATEGY_DESCRIPTIONS.items())

TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "d365fo_start_sync",
        "Start a metadata sync",
        "Start syncing Dynamics 365 F&O metadata (data entities, entity schemas, enumerations, "
        "labels) into the local cache. Returns at once with a session_id while the sync runs in "
        "the background (or, with wait_seconds, after waiting up to that long for it, with "
        "progress notifications): then wait for it with d365fo_wait_sync, stop it with "
        "d365fo_cancel_sync. session_id is null when the cache is already up to date for the "
        f"environment's current version and strategy. Strategies: {_STRATEGIES}.",
        d365fo_start_sync,
        read_only=False,
        result=results.StartAnswer,
    ),
    ToolSpec(
        "d365fo_wait_sync",
        "Wait for a sync",
        "Wait until a sync session ends or timeout_seconds pass (default "
        f"{DEFAULT_WAIT_SECONDS}, at most {MAX_WAIT_SECONDS}), sending progress notifications "
        "(percent, and a message such as 'labels 12,345/27,118, ETA 40 s') when the client "
        "asks for them. Returns the outcome (summary, http record, verdict) or, after the "
        "timeout, still_running with the current progress: call it again to keep waiting. The "
        "sync goes on if the wait ends or the client goes away; d365fo_cancel_sync stops it. "
        "Prefer this to calling d365fo_get_sync_progress repeatedly.",
        d365fo_wait_sync,
        read_only=True,
        result=results.WaitAnswer,
    ),
    ToolSpec(
        "d365fo_get_sync_progress",
        "Get sync progress",
        "Progress of one sync session, running or finished, at once: summary (status, percent, "
        "current phase, estimated seconds remaining, is_running) and full detail (each of "
        "the 8 phases with items done/total and current item, counts, timestamps, error; "
        "session.http: requests, retries, answers by status code, dropped connections, "
        "throttling wait, latency percentiles, per phase). A finished session also has "
        "'diagnosis': one sentence on why it was slow or failed (throttling, retried "
        "errors, latency, the phase that took longest). To wait for a session, use "
        "d365fo_wait_sync instead of calling this repeatedly.",
        d365fo_get_sync_progress,
        read_only=True,
        result=results.ProgressAnswer,
    ),
    ToolSpec(
        "d365fo_cancel_sync",
        "Cancel a sync",
        "Cancel a running sync session and wait until it has stopped. Its partial data is "
        "discarded; the cache keeps the last complete sync. Fails with a clear error when the "
        "session has already finished.",
        d365fo_cancel_sync,
        read_only=False,
        result=results.CancelAnswer,
        destructive=True,
    ),
    ToolSpec(
        "d365fo_list_sync_sessions",
        "List running syncs",
        "The sync sessions running now, each with status, percent, current phase and "
        "estimated seconds remaining.",
        d365fo_list_sync_sessions,
        read_only=True,
        result=results.ListAnswer,
    ),
    ToolSpec(
        "d365fo_get_sync_history",
        "Get sync history",
        f"Recorded sync sessions, newest first (limit 1..{MAX_HISTORY}, default 20), with a "
        "summary: successful, failed and cancelled counts, average duration in seconds, and "
        "when the last successful sync ended. Optional filters: status, strategy, "
        "global_version_id, and a start-time range (since inclusive, until exclusive; dates or "
        "ISO times, UTC unless an offset is given); the summary then covers the matching "
        "sessions and 'filters' echoes the filters used. 'when_to_sync' says which hours of "
        "the day (UTC) syncs of this environment go best (fewest 429s and failures, shortest), "
        "or that there are too few sessions to tell.",
        d365fo_get_sync_history,
        read_only=True,
        result=results.HistoryAnswer,
    ),
)


# -- helpers -------------------------------------------------------------------------------
def _history_row(session: SyncSession) -> dict[str, Any]:
    return {
        **session.summary(),
        "completed_at": iso(session.completed_at),
        "counts": session.counts,
        "requests": session.http.requests,
        "http": session.http.model_dump(mode="json"),
        "error": session.error,
        "message": session.message,
    }


def _history_summary(history: list[SyncSession]) -> dict[str, Any]:
    by_status = {s: [x for x in history if x.status == s] for s in SyncStatus}
    finished = [x for x in history if x.status.is_final]
    completed = by_status[SyncStatus.COMPLETED]
    last_ok = max((x.completed_at for x in completed if x.completed_at), default=None)
    return {
        "successful_syncs": len(completed),
        "failed_syncs": len(by_status[SyncStatus.FAILED]),
        "cancelled_syncs": len(by_status[SyncStatus.CANCELLED]),
        "running_syncs": len(by_status[SyncStatus.RUNNING]),
        "average_duration_seconds": (
            round(sum(x.duration_seconds for x in finished) / len(finished), 3)
            if finished
            else None
        ),
        "last_successful_sync_at": iso(last_ok),
    }


def _session_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"session_id must be a non-empty string, not {value!r}")
    return value.strip()


def _seconds(value: Any, name: str) -> tuple[float, float]:
    """A number of seconds as given, and clamped to 0..MAX_WAIT_SECONDS."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ConfigurationError(f"{name} must be a number of seconds, not {value!r}")
    return float(value), min(float(MAX_WAIT_SECONDS), max(0.0, float(value)))


def integer_argument(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ConfigurationError(f"{name} must be an integer, not {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be an integer, not {value!r}") from None


def _failure(tool: str, arguments: dict[str, Any], error: str) -> Result:
    return {"success": False, "error": error, "tool": tool, "arguments": arguments}


def rejected(tool: str, arguments: dict[str, Any], problem: str) -> Result:
    """The failure value for arguments refused before the tool ran (wrong names or types),
    redacted like every answer: ``Bad arguments: <problem>``."""
    answer = _failure(tool, arguments, f"Bad arguments: {problem}")
    try:
        return redact(answer, registry.secrets(None))
    except D365SyncError as exc:
        return _failure(tool, {}, f"Answer withheld: cannot collect secrets to redact ({exc})")


def parameters(spec: ToolSpec) -> list[str]:
    """The argument names a tool takes (not the surface's own keywords, :data:`HIDDEN`)."""
    return [p for p in inspect.signature(spec.fn).parameters if p not in HIDDEN]


__all__ = [
    "TOOLS",
    "ToolSpec",
    "d365fo_cancel_sync",
    "d365fo_get_sync_history",
    "d365fo_get_sync_progress",
    "d365fo_list_sync_sessions",
    "d365fo_start_sync",
    "d365fo_wait_sync",
    "parameters",
    "rejected",
]
