"""The diagnostics surface of the notebook against real emulator runs (in-process shell):
``requests``, ``diagnose``, ``compare``, the history filters, the request charts, and retries
and 429s in the panel and the text report (only when there were any)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from matplotlib.figure import Figure

from d365sync_nb import notebook as nb
from d365sync_nb import render
from d365sync_nb.errors import ConfigurationError, RequestLogUnavailable
from d365sync_nb.models import PHASES, SyncSession, SyncStatus
from d365sync_nb.notebook.diagnosis import NO_LOG, DiagnosisView
from d365sync_nb.notebook.panel import SessionPanel
from d365sync_nb.notebook.state import state
from d365sync_nb.views import SessionView, charts, duration
from d365sync_nb.views import frames as tables
from tests.support import poll, reset_notebook


@dataclass
class Runs:
    shell: InteractiveShell
    healthy: SyncSession  # full, no fault
    throttled: SyncSession  # full, at most 3 in flight before 429 Retry-After 0.05
    faulty: SyncSession  # full, 5 % of requests 503 or dropped
    partial: SyncSession  # full_without_labels, no fault

    def magic(self, line: str):
        return self.shell.run_line_magic("d365sync", line)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """Four sessions on one emulator, shared by the tests of this module (they only read)."""
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "d365sync_nb")
    shell.run_line_magic("config", "D365Sync.display = 'auto'")
    reset_notebook()
    cache = tmp_path_factory.mktemp("diagnostics-cache")
    nb.connect(demo=True, latency_ms=5, cache_dir=cache, display=False)
    emulator = nb.get_connection().emulator
    healthy = nb.start("full", wait=True, display=False)
    emulator.configure(max_concurrency=3, retry_after=0.05)
    throttled = nb.start("full", force=True, wait=True, display=False)
    emulator.configure(max_concurrency=None, fault_rate=0.05)
    faulty = nb.start("full", force=True, wait=True, display=False)
    emulator.configure(fault_rate=0.0)
    partial = nb.start("full_without_labels", force=True, wait=True, display=False)
    for session in (healthy, throttled, faulty, partial):
        assert session.status == SyncStatus.COMPLETED, session.error
    assert healthy.http.retries == 0 and throttled.http.throttled > 0
    assert faulty.http.transport_errors > 0 and faulty.http.by_status.get("503", 0) > 0
    yield Runs(shell, healthy, throttled, faulty, partial)
    reset_notebook()


def one_line_error(runs: Runs, line: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``%d365sync line``: it must fail with one UsageError line; return that line."""
    capsys.readouterr()
    result = runs.shell.run_cell(f"%d365sync {line}")
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    err = capsys.readouterr().err.strip()
    assert err.startswith("UsageError: ") and "\n" not in err and "Traceback" not in err, err
    return err.removeprefix("UsageError: ")


def gids(figure: Figure) -> dict[str, list]:
    """Every artist of a figure that has a gid, by gid."""
    found: dict[str, list] = {}
    for artist in figure.findobj(lambda a: a.get_gid() is not None):
        found.setdefault(artist.get_gid(), []).append(artist)
    return found


# -- requests -----------------------------------------------------------------------------------
def test_requests_is_the_whole_log_with_typed_columns(runs: Runs) -> None:
    s = runs.throttled
    frame = runs.magic(f"requests {s.session_id[:8]}")
    assert isinstance(frame, pd.DataFrame) and len(frame) == s.http.requests
    assert tuple(frame.columns) == tables.REQUEST_COLUMNS
    assert str(frame.started_at.dtype) == "datetime64[us, UTC]"
    assert (frame.started_at >= pd.Timestamp(s.started_at) - timedelta(seconds=1)).all()
    assert frame.seq.is_monotonic_increasing and frame.seq.is_unique
    assert frame.phase.cat.ordered and list(frame.phase.cat.categories) == [p.value for p in PHASES]
    for column in ("endpoint", "error", "retry_cause"):
        assert isinstance(frame[column].dtype, pd.CategoricalDtype), column
    assert str(frame.status.dtype) == "Int64" and frame.latency_ms.dtype == "float64"
    assert int((frame.status == 429).sum()) == s.http.throttled
    assert int((frame.attempt > 1).sum()) == s.http.retries
    assert int(frame.bytes.sum()) == s.http.bytes_received
    assert set(frame.endpoint) >= {"Labels", "DataEntities", "GetInstalledModules"}
    assert frame.attrs["session_id"] == s.session_id
    assert frame.attrs["concurrency"]["start"] > frame.attrs["concurrency"]["min"]
    latest = nb.requests()  # no id: the latest session
    assert latest.attrs["session_id"] == runs.partial.session_id


def test_requests_filters_by_status_and_phase(runs: Runs) -> None:
    t, f = runs.throttled, runs.faulty
    only_429 = runs.magic(f"requests {t.session_id} --status 429")
    assert len(only_429) == t.http.throttled and (only_429.status == 429).all()
    assert set(only_429.retry_cause) == {"429"}
    server = nb.requests(f.session_id, status="5xx")
    assert len(server) == f.http.by_status["503"] and server.status.between(500, 599).all()
    lost = nb.requests(f.session_id, status="error")
    assert len(lost) == f.http.transport_errors and lost.status.isna().all()
    assert set(lost.error.dropna()) <= set(tables.REQUEST_ERRORS) and lost.error.notna().all()
    retried = runs.magic(f"requests {f.session_id} --status retried --phase labels")
    assert len(retried) == f.http.by_phase["labels"].retries
    assert (retried.phase == "labels").all() and retried.retry_cause.notna().all()
    version = nb.requests(t.session_id, phase="version_check")
    assert set(version.endpoint) == {
        "GetInstalledModules",
        "GetApplicationVersion",
        "GetPlatformBuildVersion",
    }
    assert nb.requests(runs.healthy.session_id, status="429").empty


def test_requests_bad_input_is_one_line(runs: Runs, capsys) -> None:
    sid = runs.throttled.session_id[:8]
    assert one_line_error(runs, f"requests {sid} --phase bogus", capsys).startswith(
        "Unknown phase 'bogus'; one of: "
    )
    assert one_line_error(runs, f"requests {sid} --status teapot", capsys).startswith(
        "Unknown status filter 'teapot': give a code from 100 to 599 (429), a class (5xx)"
    )
    assert "a code from 100 to 599" in one_line_error(runs, f"requests {sid} --status 4290", capsys)
    assert "a code from 100 to 599" in one_line_error(runs, f"requests {sid} --status 7xx", capsys)
    assert one_line_error(runs, "requests 0000dead", capsys) == (
        "No sync session with id '0000dead'"
    )
    with pytest.raises(ConfigurationError, match="Unknown phase"):
        nb.requests(sid, phase="label")


# -- diagnose ----------------------------------------------------------------------------------
def test_diagnose_a_throttled_run_names_the_429s_and_draws_them(runs: Runs) -> None:
    s = runs.throttled
    view = runs.magic(f"diagnose {s.session_id[:8]}")
    assert isinstance(view, DiagnosisView) and view.session.session_id == s.session_id
    assert view.verdict.startswith(f"throttled: {s.http.throttled} x 429 (Retry-After honoured, ")
    assert " s of waits across requests; concurrency lowered to " in view.verdict
    assert view.diagnosis.findings and "429" in view.diagnosis.findings[0]
    assert view.diagnosis.failed_requests == []  # every 429 was retried
    assert view.diagnosis.retried_requests and all(
        r["status"] == 429 for r in view.diagnosis.retried_requests
    )
    text = str(view)
    assert text.startswith(f"Session {s.session_id} (completed): {view.verdict}\n")
    assert f"{s.http.throttled:,} × 429" in text.splitlines()[1]  # the facts line
    assert "ms-dyn-aid" in text
    assert set(view.figures) == {"requests_over_time", "latency"}
    over_time = gids(view.figures["requests_over_time"])
    (markers,) = over_time["429-markers"]
    assert len(markers.get_offsets()) == s.http.throttled
    assert "error-markers" not in over_time  # no 5xx, nothing dropped
    (limit,) = over_time["limit"]
    assert limit.get_data().values.min() < s.http.concurrency["start"]
    assert over_time["in-flight"][0].get_data().values.max() > 0
    latency = gids(view.figures["latency"])
    assert len(latency["429-markers"][0].get_offsets()) == s.http.throttled
    html = view._repr_html_()
    assert 'class="d365sync-verdict"' in html and html.count("<img ") == 2
    assert "d365sync-retried-requests" in html and "d365sync-failed-requests" not in html


def test_diagnose_healthy_and_faulty_runs(runs: Runs) -> None:
    healthy = nb.diagnose(runs.healthy.session_id)
    assert healthy.verdict.startswith("healthy: no throttling, no dropped connections")
    assert not healthy.diagnosis.failed_requests
    marks = gids(healthy.figures["requests_over_time"])
    assert "429-markers" not in marks and "error-markers" not in marks and "429-rate" not in marks
    (limit,) = marks["limit"]  # the adaptive limit's mean per bin, within its recorded range
    path = runs.healthy.http.concurrency
    means = np.asarray(limit.get_data().values, dtype=float)
    assert path["mode"] == "adaptive" and len(means)
    assert path["min"] - 1e-9 <= means.min() and means.max() <= path["max"] + 1e-9
    assert "Failed requests" not in healthy.html() and "d365sync-findings" not in healthy.html()

    f = runs.faulty
    faulty = nb.diagnose(f.session_id)
    assert f"{f.http.by_status['503']} x 503 retried" in faulty.verdict
    assert "dropped connection" in faulty.verdict
    (errors,) = gids(faulty.figures["requests_over_time"])["error-markers"]
    assert len(errors.get_offsets()) == f.http.by_status["503"] + f.http.transport_errors
    assert any(r["error"] == "dropped" for r in faulty.diagnosis.retried_requests)


def test_diagnose_prints_its_text_without_a_kernel(runs: Runs, capsys) -> None:
    """A terminal (no kernel): the report as text, no figure reprs."""
    capsys.readouterr()
    result = runs.shell.run_cell(f"%d365sync diagnose {runs.throttled.session_id}")
    assert result.success
    out = capsys.readouterr().out
    assert f"Session {runs.throttled.session_id} (completed): throttled: " in out
    assert "Requests: " in out and "<Figure" not in out


def test_diagnose_without_the_request_log(runs: Runs, monkeypatch, capsys) -> None:
    manager = state.connection.manager

    def pruned(*args, **kwargs):
        raise RequestLogUnavailable("The request log of session x was pruned")

    monkeypatch.setattr(manager, "get_request_log", pruned)
    view = nb.diagnose(runs.throttled.session_id)
    assert view.requests is None and view.figures == {}
    assert view.verdict.startswith("throttled: ")  # the http record still tells it
    assert str(view).endswith(NO_LOG) and "<img" not in view._repr_html_()
    assert "was pruned" in one_line_error(runs, "requests", capsys)


# -- compare -----------------------------------------------------------------------------------
def test_compare_two_sessions_phase_by_phase(runs: Runs) -> None:
    a, b = runs.healthy, runs.throttled
    frame = runs.magic(f"compare {a.session_id[:8]} {b.session_id[:8]}")
    assert list(frame.phase) == [p.value for p in PHASES]
    assert frame.attrs == {"a": a.session_id, "b": b.session_id}
    labels = frame.set_index("phase").loc["labels"]
    assert labels.a_throttled == 0 and labels.b_throttled == b.http.by_phase["labels"].throttled
    assert labels.b_requests == b.http.by_phase["labels"].requests
    assert labels.requests_ratio == round(labels.b_requests / labels.a_requests, 2)
    assert frame.a_items.dtype == "int64" and frame.seconds_ratio.dtype == "float64"
    assert isinstance(frame.a_status.dtype, pd.CategoricalDtype)
    assert frame.set_index("phase").loc["indexing", "requests_ratio"] is np.nan or np.isnan(
        frame.set_index("phase").loc["indexing", "requests_ratio"]
    )  # no request in either: no ratio
    same = nb.compare(b.session_id, b.session_id)
    assert (same.a_requests == same.b_requests).all()


def test_compare_bad_input_is_one_line(runs: Runs, capsys) -> None:
    assert "the following arguments are required: B" in one_line_error(
        runs, f"compare {runs.healthy.session_id}", capsys
    )
    assert "No sync session with id 'ffffffff'" in one_line_error(
        runs, f"compare {runs.healthy.session_id} ffffffff", capsys
    )
    with pytest.raises(ConfigurationError, match="b: a value is required"):
        nb.compare(runs.healthy.session_id, " ")


# -- history -----------------------------------------------------------------------------------
def test_history_has_the_http_columns(runs: Runs) -> None:
    frame = nb.history()
    assert list(frame.session_id) == [
        s.session_id for s in (runs.partial, runs.faulty, runs.throttled, runs.healthy)
    ]
    by_id = frame.set_index("session_id")
    for s in (runs.healthy, runs.throttled, runs.faulty):
        row = by_id.loc[s.session_id]
        assert row.retries == s.http.retries and row.throttled == s.http.throttled
        assert row.transport_errors == s.http.transport_errors
        assert row.retry_wait_seconds == pytest.approx(s.http.retry_wait_seconds)
    assert frame.retries.dtype == "int64" and frame.retry_wait_seconds.dtype == "float64"
    assert by_id.loc[runs.healthy.session_id].retries == 0


def test_history_filters(runs: Runs) -> None:
    h, t, f, p = runs.healthy, runs.throttled, runs.faulty, runs.partial

    def ids(frame: pd.DataFrame) -> list[str]:
        return list(frame.session_id)

    assert ids(nb.history(strategy="full")) == [f.session_id, t.session_id, h.session_id]
    assert ids(runs.magic("history --strategy full-without-labels")) == [p.session_id]
    assert ids(nb.history(since=t.started_at)) == [p.session_id, f.session_id, t.session_id]
    assert ids(nb.history(until=t.started_at)) == [h.session_id]  # until is exclusive
    window = f"--since {t.started_at.isoformat()} --until {f.started_at.isoformat()}"
    assert ids(runs.magic(f"history {window}")) == [t.session_id]
    assert len(runs.magic("history --since 2000-01-01 --version 1 --status completed")) == 4
    assert nb.history(version=2).empty and nb.history(until="2000-01-01").empty
    assert list(nb.history(until="2000-01-01").columns) == list(nb.history().columns)
    assert ids(nb.history(limit=1, strategy="full")) == [f.session_id]


def test_history_bad_input_is_one_line(runs: Runs, capsys) -> None:
    assert one_line_error(runs, "history --since yesterday", capsys).startswith(
        "since must be a date or time like 2026-11-30"
    )
    assert one_line_error(runs, "history --until 2026-13-45", capsys).startswith(
        "until must be a date or time"
    )
    assert one_line_error(runs, "history --strategy everything", capsys).startswith(
        "Unknown strategy 'everything'"
    )
    assert "--version: expected a whole number" in one_line_error(
        runs, "history --version latest", capsys
    )
    assert "Unknown status 'done'" in one_line_error(runs, "history --status done", capsys)
    with pytest.raises(ConfigurationError, match="Unknown status 'done'"):
        nb.history(status="done")


# -- charts ------------------------------------------------------------------------------------
def test_history_charts_draw_retries_and_429s_only_when_there_were_any(runs: Runs) -> None:
    history = nb.history()
    for chart in (charts.history_durations, charts.history_throughput):
        figure = chart(history)
        assert len(figure.axes) == 2, chart
        bars = gids(figure)["history-http"]
        heights = {round(b.get_height()) for b in bars}
        assert runs.throttled.http.throttled in heights and runs.faulty.http.retries in heights
        labels = figure.axes[1].get_legend_handles_labels()[1]
        assert labels == ["retries", "429 answers", "no answer (dropped, timed out)"]
        clean = chart(nb.history(until=runs.throttled.started_at))  # the healthy run only
        assert len(clean.axes) == 1 and "history-http" not in gids(clean)


def test_latency_chart_has_a_box_per_endpoint_class(runs: Runs) -> None:
    frame = nb.requests(runs.throttled.session_id)
    figure = charts.latency_by_endpoint(frame)
    (ax,) = figure.axes
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    labels_count = int((frame.endpoint == "Labels").sum())
    assert ticks[0] == f"Labels ({labels_count:,})" and len(ticks) == frame.endpoint.nunique()
    assert "p95" in ax.get_title()
    assert "429-markers" not in gids(
        charts.latency_by_endpoint(nb.requests(runs.healthy.session_id))
    )
    empty = charts.latency_by_endpoint(frame.iloc[0:0])
    assert empty.axes[0].texts[0].get_text() == "no requests recorded"
    assert charts.requests_over_time(frame.iloc[0:0]).axes[0].texts  # no crash on an empty log


def test_requests_over_time_counts_every_attempt(runs: Runs) -> None:
    frame = nb.requests(runs.faulty.session_id)
    figure = charts.requests_over_time(frame, bin_seconds=0.1)  # from the frame's attrs alone
    (rate,) = gids(figure)["request-rate"]
    assert rate.get_data().values.sum() * 0.1 == pytest.approx(len(frame))
    assert figure.axes[1].get_xlabel() == "seconds since the session started"


def test_in_flight_and_per_bin_summaries() -> None:
    times, flying = charts.in_flight(np.array([0.0, 0.5, 1.0]), np.array([1.0, 1.5, 2.0]))
    assert list(times) == [0.0, 0.5, 1.0, 1.0, 1.5, 2.0]
    assert list(flying) == [1, 2, 1, 2, 1, 0]  # an end before a start at the same instant
    mean, peak = charts.per_bin(times, flying, np.array([0.0, 1.0, 2.0]))
    assert list(peak) == [2, 2] and list(mean) == pytest.approx([1.5, 1.5])
    mean, peak = charts.per_bin(np.array([0.5]), np.array([4]), np.array([0.0, 1.0]))
    assert list(mean) == [2.0] and list(peak) == [4.0]  # 0 before the first change


# -- live progress: retries and 429s only when nonzero ------------------------------------------
def test_text_report_and_status_line_show_retries_only_when_nonzero(runs: Runs) -> None:
    t, h = runs.throttled, runs.healthy
    report = render.session_report(t).splitlines()
    http = next(line for line in report if line.startswith("Requests: "))
    assert http == (
        f"Requests: {t.http.requests:,}, {t.http.retries:,} retries, {t.http.throttled:,} × 429, "
        f"waits {duration(t.http.retry_wait_seconds)}"
    )
    assert (
        report.index(http) == report.index(next(x for x in report if x.startswith("Counts:"))) + 1
    )
    assert not any(line.startswith("Requests: ") for line in render.session_report(h).splitlines())
    assert "× 429" in render.status_line(t) and "retr" not in render.status_line(h)
    faulty = SessionView(runs.faulty).http_line
    assert "× 429" not in faulty and re.search(r", waits [\d.]+ s$", faulty), faulty

    out = io.StringIO()
    render.ProgressPrinter(out).update(t)
    lines = out.getvalue().splitlines()
    assert not any("429" in line or "retr" in line for line in lines[:8])  # phase lines as before
    assert lines[8].startswith(f"Session {t.session_id}") and lines[-1] == http


def test_panel_shows_retries_and_429s_only_when_nonzero(runs: Runs) -> None:
    manager, bridge = state.require()
    throttled = SessionPanel(manager, bridge, runs.throttled)
    text = throttled.overall_text.value
    assert text.startswith("100.0% · ")
    assert '<span class="d365sync-http"' in text
    assert (
        f"· {runs.throttled.http.retries:,} retries · {runs.throttled.http.throttled:,} × 429"
        in text
    )
    healthy = SessionPanel(manager, bridge, runs.healthy)
    assert "d365sync-http" not in healthy.overall_text.value
    assert "retr" not in healthy.overall_text.value and "429" not in healthy.overall_text.value
    assert "d365sync-overall-text" in healthy.overall_text._dom_classes


def test_live_panel_shows_429s_as_they_happen(runs: Runs) -> None:
    """While a throttled session runs, its panel's overall text counts the 429s so far.
    (Last in this module: it adds a session to the history the tests above read.)"""
    emulator = state.connection.emulator
    emulator.configure(max_concurrency=3, retry_after=0.05)
    try:
        session = nb.start("labels_only", force=True, display=False)
        manager, bridge = state.require()
        panel = SessionPanel(manager, bridge, session)
        seen: list[str] = []

        def throttled_while_running() -> bool:
            text = panel.overall_text.value
            if "ETA" in text and "× 429" in text:  # ETA: still running
                seen.append(text)
                seen.append(render.status_line(manager.get_sync_session(session.session_id)))
            return bool(seen) or not manager.get_sync_session(session.session_id).is_running

        poll(throttled_while_running, what="a 429 in the running panel")
        assert seen, "the session ended before its panel showed a 429"
        assert "× 429" in seen[1]
        poll(lambda: not nb.get_session(session.session_id).is_running, what="the end")
        final = nb.get_session(session.session_id)
        poll(lambda: panel.overall_bar.bar_style == "success", what="the final paint")
        assert f"{final.http.throttled:,} × 429" in panel.overall_text.value
    finally:
        emulator.configure(max_concurrency=None)
