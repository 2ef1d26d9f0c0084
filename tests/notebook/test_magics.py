"""The %d365sync magics in a real in-process IPython shell: parsing, routing, errors, outputs."""

from __future__ import annotations

import os
import re
import signal
import threading

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from matplotlib.figure import Figure

from d365sync_nb import notebook as nb
from d365sync_nb.errors import ConfigurationError
from d365sync_nb.models import PHASES
from d365sync_nb.notebook.config import D365Sync
from d365sync_nb.notebook.magics import COMMANDS
from d365sync_nb.notebook.state import state
from tests.support import poll

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def run_error(shell: InteractiveShell, line: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run a magic cell that must fail with one UsageError line; return that line."""
    capsys.readouterr()
    result = shell.run_cell(line)
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    err = capsys.readouterr().err.strip()
    assert err.startswith("UsageError: "), err
    assert "\n" not in err and "Traceback" not in err, err
    return err.removeprefix("UsageError: ")


def test_help_lists_every_subcommand(shell: InteractiveShell, capsys) -> None:
    shell.run_line_magic("d365sync", "help")
    out = capsys.readouterr().out
    for name, command in COMMANDS.items():
        assert re.search(rf"^  {name}\s+{re.escape(command.SUMMARY)}$", out, re.M), name
    shell.run_cell("%d365sync?")
    assert "Subcommands:" in capsys.readouterr().out
    shell.run_line_magic("d365sync", "start -h")
    out = capsys.readouterr().out
    assert out.startswith("usage: %d365sync start") and "--wait" in out


def test_errors_are_one_line(shell: InteractiveShell, capsys, tmp_path) -> None:
    assert run_error(shell, "%d365sync progress", capsys).startswith(
        "Not connected: run %d365sync connect first"
    )
    assert "Unknown subcommand 'bogus'" in run_error(shell, "%d365sync bogus", capsys)
    assert "Malformed base URL 'ftp://x'" in run_error(
        shell, "%d365sync connect --base-url ftp://x", capsys
    )
    assert "--latency-ms: must be a finite number >= 0" in run_error(
        shell, "%d365sync connect --demo --latency-ms -1", capsys
    )
    assert "not allowed with argument --demo" in run_error(
        shell, "%d365sync connect --demo --base-url http://127.0.0.1:1", capsys
    )
    with pytest.raises(UsageError, match="cannot parse"):
        shell.run_line_magic("d365sync", "search 'open")

    shell.run_cell(f"%d365sync connect --demo --latency-ms 0 --cache-dir {tmp_path}")
    assert run_error(shell, "%d365sync start --strategy nope", capsys).startswith(
        "Unknown strategy 'nope'; choose one of: full,"
    )
    assert run_error(shell, "%d365sync progress 12345678", capsys) == (
        "No sync session with id '12345678'"
    )
    assert "session ids are UUIDs" in run_error(shell, "%d365sync phases x!", capsys)
    assert run_error(shell, "%d365sync timeline", capsys).startswith("No sync session recorded")
    assert "Unknown status 'x'" in run_error(shell, "%d365sync history --status x", capsys)
    with pytest.raises(UsageError, match="Nothing to search"):
        shell.run_line_magic("d365sync", "search ' '")


def test_debug_shows_the_traceback(connected: InteractiveShell, capsys) -> None:
    result = connected.run_cell("%d365sync start --strategy nope --debug")
    assert type(result.error_in_exec).__name__ == "ConfigurationError"


def test_connect_reports_environment_and_cache_without_secrets(
    shell: InteractiveShell, capsys, tmp_path, monkeypatch
) -> None:
    secret = "s3cr3t-Value-Never-Printed"
    monkeypatch.setenv("D365FO_CLIENT_ID", "client-id")
    monkeypatch.setenv("D365FO_TENANT_ID", "tenant-id")
    monkeypatch.setenv("D365FO_CLIENT_SECRET", secret)
    shell.run_cell(f"%d365sync connect --demo --latency-ms 0 --cache-dir {tmp_path}")
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert re.fullmatch(
        r"Connected to http://127\.0\.0\.1:\d+ \(embedded emulator, small dataset, 0 ms latency\)",
        lines[0],
    )
    assert lines[1] == f"Cache: {tmp_path}/demo-small.sqlite3"
    assert re.fullmatch(r"Environment: 20 modules, .* -> global version 1", lines[2])
    assert lines[3] == "Cache holds: nothing synced yet; 0 sessions recorded"
    assert state.connection is not None
    assert state.connection.settings.client_secret is not None  # it was read ...
    shell.run_cell("%d365sync start --wait")
    shell.run_cell("%d365sync connect --demo --latency-ms 0 --cache-dir " + str(tmp_path))
    shell.run_cell("print(repr(__import__('d365sync_nb.notebook').notebook.get_connection()))")
    out = capsys.readouterr().out
    assert "Cache holds: version 1 (synced " in out and "1 sessions recorded" in out
    assert secret not in out  # ... and never shown


def test_start_wait_prints_each_phase_and_the_outcome(connected: InteractiveShell, capsys) -> None:
    capsys.readouterr()
    connected.run_cell("%d365sync start --wait")
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"Started a 'full' sync of version 1 \(session [0-9a-f-]{36}\)", out[0])
    phases = [line.split()[1] for line in out[1:9]]
    assert phases == [p.value for p in PHASES]
    assert all(line.startswith(" ✓ ") and "completed" in line for line in out[1:9])
    assert " 899/899 " in out[6]
    assert re.fullmatch(r"Session [0-9a-f-]{36}  full  version 1  completed  \d+s", out[9])
    assert out[10].startswith("Counts: data entities 100, public entities 80")
    assert len(out) == 11

    connected.run_cell("%d365sync start")
    assert "already up to date for 'full'" in capsys.readouterr().out
    connected.run_cell("%d365sync progress")
    report = capsys.readouterr().out
    assert "completed" in report and report.count("\n") >= 9


def test_config_traits_drive_the_functions(connected: InteractiveShell, capsys) -> None:
    connected.run_cell("%config D365Sync.default_strategy = 'full-without-labels'")
    assert D365Sync.instance().default_strategy == "full_without_labels"
    connected.run_cell("%config D365Sync.history_limit = 1")
    capsys.readouterr()
    connected.run_cell("%d365sync start --wait")
    assert "Started a 'full_without_labels' sync" in capsys.readouterr().out
    connected.run_cell("%d365sync start --wait --strategy entities_only --force")
    assert len(nb.history()) == 1
    connected.run_cell("%config D365Sync.default_strategy = 'nope'")
    assert D365Sync.instance().default_strategy == "full_without_labels"
    connected.run_cell("%config D365Sync.history_limit = 20")
    assert D365Sync.instance().history_limit == 20


def test_one_config_object_retunes_the_managers_progress_interval(
    connected: InteractiveShell,
) -> None:
    config = D365Sync.instance()
    assert [c for c in connected.configurables if isinstance(c, D365Sync)] == [config]
    manager = state.connection.manager
    assert manager.progress_interval == config.progress_interval == 0.1  # set when connecting
    try:
        connected.run_cell("%config D365Sync.progress_interval = 0.5")
        assert config.progress_interval == 0.5 and manager.progress_interval == 0.5
        connected.run_cell("%config D365Sync.progress_interval = -1")  # refused
        assert config.progress_interval == 0.5 and manager.progress_interval == 0.5
        connected.run_cell("%config D365Sync.history_limit = 0")
        assert config.history_limit == 20
        # the old name still works, with a deprecation, and reads the value in force
        assert config.throttle_interval == 0.5
        with pytest.warns(DeprecationWarning, match="use D365Sync.progress_interval"):
            connected.run_cell("%config D365Sync.throttle_interval = 0.25")
        assert config.progress_interval == 0.25 and manager.progress_interval == 0.25
        with pytest.warns(DeprecationWarning, match="use progress_interval"):
            assert manager.notify_interval == 0.25
    finally:
        connected.run_cell("%config D365Sync.progress_interval = 0.1")
    assert manager.progress_interval == 0.1 and config.throttle_interval == 0.1


def test_counts_are_range_checked(connected: InteractiveShell, capsys) -> None:
    for line, error in (
        ("history --limit 0", "--limit: must be between 1 and 1000, not 0"),
        ("search customer --limit 1001", "--limit: must be between 1 and 1000, not 1001"),
        ("connect --demo --concurrency 0", "--concurrency: must be between 1 and 256"),
    ):
        assert error in run_error(connected, f"%d365sync {line}", capsys)
    with pytest.raises(ConfigurationError, match="between 1 and 1000, not 0"):
        nb.history(limit=0)


def test_dataframes_and_charts(connected: InteractiveShell, capsys) -> None:
    connected.run_cell("%d365sync start --wait --strategy full_without_labels")
    connected.run_cell("%d365sync start --wait --strategy labels_only")
    history = connected.run_line_magic("d365sync", "history")
    assert isinstance(history, pd.DataFrame) and len(history) == 2
    assert list(history.strategy) == ["labels_only", "full_without_labels"]
    assert str(history.started_at.dtype) == "datetime64[us, UTC]"
    assert str(history.completed_at.dt.tz) == "UTC"
    assert history.duration.dtype.kind == "m" and (history.duration > pd.Timedelta(0)).all()
    assert isinstance(history.status.dtype, pd.CategoricalDtype)
    assert isinstance(history.strategy.dtype, pd.CategoricalDtype)
    assert list(history.labels_items) == [899, 0]
    assert list(history.entities_items) == [0, 100]  # labels_only reuses the cached entities
    assert list(history.initiated_by) == ["notebook", "notebook"]
    assert history.error.isna().all()
    only = connected.run_line_magic("d365sync", "history --limit 1 --status completed")
    assert len(only) == 1

    phases = connected.run_line_magic("d365sync", "phases")
    assert list(phases.columns[:8]) == [
        "phase",
        "status",
        "start",
        "end",
        "seconds",
        "items",
        "items_total",
        "items_per_second",
    ]
    assert phases.phase.cat.ordered and list(phases.phase)[5] == "labels"
    assert phases.loc[5, "items"] == 899 and phases.loc[5, "status"] == "completed"
    assert phases.loc[2, "status"] == "reused" and phases.loc[2, "items"] == 0
    assert (phases.end >= phases.start).all()
    prefix = history.session_id[1][:8]
    assert connected.run_line_magic("d365sync", f"phases {prefix}").loc[5, "status"] == "skipped"

    assert connected.run_line_magic("d365sync", "sessions").empty
    hits = connected.run_line_magic("d365sync", "search customer account --limit 3")
    assert list(hits.columns) == ["kind", "name", "label", "parent", "score"]
    assert len(hits) == 3 and hits.name.str.contains("Customer").all()

    figure = connected.run_line_magic("d365sync", "timeline")
    assert isinstance(figure, Figure)
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()][5] == "labels"

    board = connected.run_line_magic("d365sync", "panel")
    text = str(board)
    assert "Running:\n  (none)" in text and text.count("completed") == 2


def test_cancel_without_a_running_session(connected: InteractiveShell, capsys) -> None:
    capsys.readouterr()
    connected.run_cell("%d365sync cancel")
    assert capsys.readouterr().out == "No session is running.\n"


def test_background_session_and_cancel(connected: InteractiveShell, capsys) -> None:
    state.connection.emulator.configure(latency_ms=40)
    connected.run_cell("%d365sync start")
    out = capsys.readouterr().out
    session_id = UUID.search(out).group(0)
    assert "Follow it with %d365sync progress" in out
    active = connected.run_line_magic("d365sync", "sessions")
    assert list(active.session_id) == [session_id] and active.status[0] == "running"
    with pytest.raises(UsageError, match=f"Session {session_id} is still running"):
        connected.run_line_magic("d365sync", "connect --demo")
    connected.run_cell(f"%d365sync cancel {session_id[:6]}")
    assert capsys.readouterr().out.startswith(f"Cancelled session {session_id}")
    assert nb.get_session(session_id).status == "cancelled"
    connected.run_cell(f"%d365sync cancel {session_id}")
    assert "had already ended (cancelled)" in capsys.readouterr().out


def test_ctrl_c_during_wait_cancels_the_session(connected: InteractiveShell, capsys) -> None:
    """Terminal IPython: Ctrl-C (SIGINT to the process) while ``start --wait`` blocks."""
    state.connection.emulator.configure(latency_ms=40)
    manager = state.connection.manager

    def interrupt_in_labels() -> None:
        def in_labels() -> bool:
            active = manager.get_active_sessions()
            return bool(active) and active[0].current_phase == "labels"

        poll(in_labels, what="the labels phase")
        os.kill(os.getpid(), signal.SIGINT)

    handler = signal.getsignal(signal.SIGINT)
    interrupter = threading.Thread(target=interrupt_in_labels, daemon=True)
    interrupter.start()
    capsys.readouterr()
    result = connected.run_cell("%d365sync start --wait")
    interrupter.join(5)
    assert isinstance(result.error_in_exec, UsageError)
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"UsageError: Interrupted: session [0-9a-f-]{36} was cancelled", err)
    session = nb.get_session()
    assert session.status == "cancelled" and session.phases["labels"].status == "cancelled"
    assert not manager.get_active_sessions()
    assert signal.getsignal(signal.SIGINT) is handler  # restored


def test_connect_heals_a_damaged_cache_and_says_so(shell: InteractiveShell, capsys, tmp_path):
    cache = tmp_path / "damaged-cache"
    cache.mkdir()
    (cache / "demo-small.sqlite3").write_bytes(b"not a database at all " * 500)
    shell.run_line_magic("d365sync", f"connect --demo --cache-dir {cache}")
    out = capsys.readouterr().out
    assert f"Note: The cache file {cache / 'demo-small.sqlite3'} was damaged: it was moved to" in (
        out
    )
    assert len(list(cache.glob("demo-small.sqlite3.damaged-*"))) == 1
