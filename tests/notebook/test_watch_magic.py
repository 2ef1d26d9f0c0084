"""``%d365sync watch`` in a real Jupyter kernel: it runs on the kernel's loop without blocking
cells, syncs the emulator's next release, notifies, stops; a kernel restart ends it and the next
connect says so. And the magic's one-line errors in an in-process shell."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from jupyter_client import KernelManager

from d365sync_nb.errors import ConfigurationError
from tests.notebook.kernel import Kernel, drain_shell_replies, started_kernel

ACTIONS = "nb.checks()['action'].tolist()"


@pytest.fixture(scope="module")  # the restart test comes last: it ends this kernel's state
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    yield from started_kernel(tmp_path_factory, KernelManager(kernel_name="python3"))


def test_a_watch_runs_on_the_kernel_loop_and_syncs_the_next_release(kernel: Kernel) -> None:
    kernel.run("nb.get_connection().emulator.configure(latency_ms=0)")
    t0 = time.monotonic()
    reply = kernel.run("%d365sync watch --every 1s")
    assert reply.status == "ok" and time.monotonic() - t0 < 5, reply.outputs
    assert reply.stream("stdout").startswith("Watching http://127.0.0.1:")
    kernel.poll(ACTIONS, lambda v: "'synced'" in v and "'up_to_date'" in v)
    assert kernel.run("x = 1 + 1").status == "ok"  # cells run while it watches
    # a cell that blocks for the next checks (twice: the watch's sleeps run in the nested loop,
    # which once killed the kernel with "pop from an empty deque")
    for _ in range(2):
        waited = kernel.run("print(nb.watch_status().wait_for_check().action.value)")
        assert waited.status == "ok" and waited.stream("stdout") == "up_to_date\n"
    status = kernel.run("%d365sync watch --status").of_type("execute_result")[0]["data"]
    status = status["text/plain"]
    assert status.startswith("watching: ") and "last check" in status
    kernel.run("nb.get_connection().emulator.next_release()")
    kernel.poll("nb.checks()['global_version_id'].max()", lambda v: v == "2")
    kernel.poll(ACTIONS, lambda v: v.count("'synced'") == 2)
    shown = kernel.value("str(nb.watch_status())")
    assert "notice: New version synced: 127.0.0.1" in shown  # jupyter target, no ipylab: a line
    assert "What changed: +" in shown
    stopped = kernel.run("%d365sync watch --stop")
    assert stopped.status == "ok"
    assert stopped.stream("stdout").startswith("Stopped the watch; not watching; last check")
    assert kernel.value("nb.watch_status().running") == "False"
    # check-version from a cell, while the kernel's loop runs: its requests run on a worker loop
    assert kernel.value("nb.check_version().status.due") == "False"
    sessions = kernel.value(
        "[s.initiated_by for s in nb.get_connection().manager.get_session_history()]"
    )
    assert sessions == "['watch', 'watch']"


def test_in_widget_mode_the_watch_shows_a_status_line_and_the_live_panel_of_its_sync(
    kernel: Kernel,
) -> None:
    kernel.run("%config D365Sync.display = 'widget'")
    try:
        reply = kernel.run("%d365sync watch --every 1s --notify jupyter")
        assert reply.status == "ok" and reply.of_type("display_data"), reply.outputs
        shown = reply.of_type("display_data")[0]
        assert "watching" in shown["data"]["text/html"]  # a static rendering beside the widget
        assert shown["transient"]["display_id"].startswith("d365sync-watch-")
        kernel.run("nb.get_connection().emulator.configure(version=1)")  # a new version again
        view = "nb.watch_status().view"
        kernel.poll(f"len({view}.sessions.children)", lambda v: v == "1")
        panel_classes = kernel.value(f"{view}.sessions.children[0]._dom_classes")
        assert "d365sync-panel" in panel_classes
        status = kernel.poll(f"{view}.status.value", lambda v: "last check" in v)
        assert status.startswith("<b>watching: ")
        notices = kernel.poll(f"{view}.notices.value", lambda v: "🔔" in v)
        assert "synced" in notices or "Sync completed" in notices
        # what a saved notebook keeps: the watch's state and its sync's final card
        kernel.poll(f"{view}._repr_mimebundle_()['text/plain']", lambda v: "completed" in v)
        card = kernel.value(f"{view}._repr_mimebundle_()['text/html']")
        assert "completed" in card and "running" not in card
        assert kernel.run("board = nb.panel()").status == "ok"  # the dashboard shows it too
        line = kernel.poll("board.watch_line.value", lambda v: "watching: " in v)
        assert line.startswith("<i>watching: ")
    finally:
        kernel.run("%d365sync watch --stop")
        kernel.run("%config D365Sync.display = 'auto'")


def test_a_kernel_restart_ends_the_watch_and_the_next_connect_says_so(
    kernel: Kernel, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cache = kernel.value("nb.get_connection().manager.store.path.parent")
    assert (
        kernel.run(
            "%d365sync watch --every 1h --notify webhook:https://example.invalid/x?sig=s3cr3t"
        ).status
        == "ok"
    )
    kernel.poll("nb.watch_status().status_line()", lambda v: v.startswith("watching: next"))
    kernel.km.restart_kernel(now=True)
    kernel.kc.wait_for_ready(timeout=60)
    drain_shell_replies(kernel.kc)
    reply = kernel.run(f"%load_ext d365sync_nb\n%d365sync connect --demo --cache-dir {cache}")
    assert reply.status == "ok", reply.outputs
    out = reply.stream("stdout")
    assert "Note: the watch started " in out and "(every 1h, by the notebook" in out
    assert "ended when its process stopped (a kernel restart, or a killed process)" in out
    again = kernel.run(f"%d365sync connect --demo --cache-dir {cache}").stream("stdout")
    assert "Note: the watch" not in again  # said once
    assert "s3cr3t" not in out + again


def test_watch_errors_are_one_line(shell) -> None:
    from IPython.core.error import UsageError

    shell.run_cell("%d365sync connect --demo --latency-ms 0")
    for line, words in (
        ("watch", "Give --every DURATION, --cron EXPR, --once, --stop or --status"),
        ("watch --every 5x", "Bad duration"),
        ("watch --cron '61 * * * *'", "Bad cron expression"),
        ("watch --every 1m --notify pager:x", "Bad notification target"),
    ):
        with pytest.raises(UsageError) as info:
            shell.run_line_magic("d365sync", line)
        assert words in str(info.value) and "\n" not in str(info.value)
    shell.run_line_magic("d365sync", "watch --stop")  # nothing running: says so, no error


def test_when_to_sync_in_a_notebook_and_its_chart(connected) -> None:
    import d365sync_nb.notebook as nb
    from d365sync_nb.notebook import charts

    view = nb.diagnose(history=True)
    assert isinstance(view, nb.WhenToSyncView)
    assert view.verdict.startswith("Too few sessions to tell when syncs go best: 0 finished")
    assert str(connected.run_line_magic("d365sync", "diagnose --history")) == str(view)
    hours = [
        {"hour": 1, "sessions": 3, "median_seconds": 240.0, "throttle_rate": 0.0,
         "failure_rate": 0.0},
        {"hour": 9, "sessions": 3, "median_seconds": 600.0, "throttle_rate": 0.03,
         "failure_rate": 0.33},
    ]  # fmt: skip
    figure = charts.sync_windows(hours)
    ax, rates = figure.axes
    bars = [p for p in ax.patches if p.get_gid() == "median-duration" and p.get_height() > 0]
    assert [(round(b.get_x() + b.get_width() / 2), b.get_height()) for b in bars] == [
        (1, 4.0), (9, 10.0)
    ]  # fmt: skip
    lines = {line.get_gid(): list(line.get_ydata()) for line in rates.get_lines()}
    assert lines == {"429-rate": [0.0, 3.0], "failure-rate": [0.0, 33.0]}


def test_wait_for_check_blocks_a_cell_until_the_watch_checks(connected) -> None:
    import d365sync_nb.notebook as nb

    watch = nb.watch(every="1s", notify=[], display=False)
    try:
        first = watch.wait_for_check()
        assert first.action.value == "synced" and first.global_version_id == 1
        nb.get_connection().emulator.next_release()
        upgraded = watch.wait_for_check(lambda r: r.action.value == "synced", timeout=60)
        assert upgraded.global_version_id == 2 and upgraded.previous_version_id == 1
    finally:
        nb.stop_watch(display=False)
    assert not watch.running
    with pytest.raises(ConfigurationError, match="has stopped"):
        watch.wait_for_check()


def test_check_version_in_a_notebook(connected) -> None:
    import d365sync_nb.notebook as nb

    view = nb.check_version()
    assert view.status.due and view.status.cached_version_id is None
    shown = connected.run_line_magic("d365sync", "check-version --strategy full")
    assert str(shown).startswith("Environment: version 1 (10.0.41.2095); cache: nothing")
