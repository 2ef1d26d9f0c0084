"""The magics in a real Jupyter kernel (ipykernel): background sessions on the kernel's loop,
blocking waits, interrupts, one-line errors, and the widget panel's comm traffic."""

from __future__ import annotations

import re
import time
from typing import Any

from tests.notebook.kernel import Kernel, watch_cancel_button

STATUS = "nb.get_session().status.value"


def wait_idle_session(kernel: Kernel) -> None:
    kernel.poll(STATUS, lambda v: v != "running")


def test_start_returns_at_once_and_runs_while_idle(kernel: Kernel) -> None:
    kernel.run("nb.get_connection().emulator.configure(latency_ms=10)")
    t0 = time.monotonic()
    reply = kernel.run("%d365sync start --force")
    returned = time.monotonic() - t0
    assert reply.status == "ok"
    out = reply.stream("stdout")
    assert re.match(r"Started a 'full' sync of version 1 \(session [0-9a-f-]{36}\)\n", out)
    assert kernel.value(STATUS) == "running", "start returned only after the session"
    assert returned < 5
    kernel.poll(STATUS, lambda v: v == "completed")  # the kernel is idle between polls
    assert kernel.value("nb.get_session().phases['labels'].items_processed") == "899"
    # without widgets, its report is shown and brought to the final state by a later cell
    shown = [o for o in reply.of_type("display_data") if "text/html" in o["data"]]
    assert len(shown) == 1, reply.outputs
    display_id = shown[0]["transient"]["display_id"]

    def updates() -> list[dict[str, Any]]:
        return [
            m["content"]["data"]
            for m in kernel.log
            if m["msg_type"] == "update_display_data"
            and m["content"]["transient"]["display_id"] == display_id
        ]

    # the status reads completed a moment before the session's last snapshot is painted and
    # published: wait (idle kernel, one cell per poll) for the update that carries it
    kernel.poll(
        "1",
        lambda _: bool(updates()) and " completed " in updates()[-1]["text/plain"].split("\n")[0],
    )
    final = updates()[-1]["text/plain"]
    assert " completed " in final.splitlines()[0] and "Completed in" in final
    assert "running" not in final and "pending" not in final


def test_start_wait_blocks_until_completed(kernel: Kernel) -> None:
    reply = kernel.run("%d365sync start --force --wait")
    assert reply.status == "ok"
    out = reply.stream("stdout")
    assert re.search(r"^Session [0-9a-f-]{36}  full  version 1  completed", out, re.M), out
    assert out.count(" ✓ ") == 8
    assert kernel.value(STATUS) == "completed"  # already ended when the cell returned


def test_interrupt_during_wait_cancels_the_session(kernel: Kernel) -> None:
    kernel.run("nb.get_connection().emulator.configure(latency_ms=40)")
    msg_id = kernel.send("%d365sync start --force --wait")
    printed: list[str] = []

    def entities_done(msg: dict) -> bool:
        if msg["msg_type"] == "stream":
            printed.append(msg["content"]["text"])
        return " ✓ entities " in "".join(printed)

    kernel.collect(msg_id, until=entities_done)  # running, inside the blocking wait
    kernel.km.interrupt_kernel()
    reply = kernel.collect(msg_id)
    assert reply.status == "error"
    err = reply.stream("stderr")
    assert re.fullmatch(r"UsageError: Interrupted: session [0-9a-f-]{36} was cancelled\n", err)
    assert not reply.of_type("error")  # no traceback
    assert kernel.value(STATUS) == "cancelled"
    assert kernel.value("nb.get_session().phases['finalizing'].status.value") == "pending"
    assert kernel.value("len(nb.get_connection().manager.get_active_sessions())") == "0"
    kernel.run("nb.get_connection().emulator.configure(latency_ms=10)")


def test_magic_errors_are_one_line_without_traceback(kernel: Kernel) -> None:
    for line, expected in [
        ("%d365sync progress 00000000-0000-0000-0000-000000000000", "No sync session with id"),
        ("%d365sync start --strategy nope", "Unknown strategy 'nope'"),
        ("%d365sync connect --base-url http://example.com", "Plain http is only allowed"),
    ]:
        reply = kernel.run(line)
        assert reply.status == "error", line
        err = reply.stream("stderr")
        assert err.startswith(f"UsageError: {expected}") and err.count("\n") == 1, err
        assert not reply.of_type("error") and "Traceback" not in err


def _overall_bar_updates(kernel: Kernel, model_id: str, messages: list[dict]) -> list[float]:
    values = []
    for msg in messages:
        content = msg["content"]
        if msg["msg_type"] == "comm_msg" and content.get("comm_id") == model_id:
            state = content["data"].get("state", {})
            if "value" in state:
                values.append(state["value"])
    return values


def test_panel_widget_reaches_100_percent(kernel: Kernel) -> None:
    kernel.run("%config D365Sync.display = 'widget'")
    try:
        reply = kernel.run("%d365sync start --force --wait")
        assert reply.status == "ok" and not reply.stream("stdout")  # the panel, no text
        (shown,) = reply.of_type("display_data")
        view = shown["data"]["application/vnd.jupyter.widget-view+json"]
        assert shown["data"]["text/plain"].startswith("Session ")
        panel_id = kernel.value("nb.get_panel().widget.model_id")
        assert view["model_id"] == panel_id
        bar_id = kernel.value("nb.get_panel().overall_bar.model_id")
        live = _overall_bar_updates(kernel, bar_id, reply.messages)
        assert any(0 < v < 100 for v in live), live  # bars moved while the cell was blocked
        assert live[-1] == 100
        state = kernel.value(
            "(lambda p: (p.overall_bar.value, p.overall_bar.bar_style, p.cancel_button.disabled,"
            " p.summary.value[:12]))(nb.get_panel())"
        )
        assert state == "(100.0, 'success', True, 'Completed in')"

        reply = kernel.run("%d365sync start --force")  # background: the panel keeps moving
        assert reply.status == "ok" and reply.of_type("display_data")
        kernel.poll("nb.get_panel().overall_bar.bar_style", lambda v: v == "success")
        assert kernel.value("nb.get_panel().overall_bar.value") == "100.0"
    finally:
        kernel.run("%config D365Sync.display = 'auto'")


def test_cancel_button_cancels_a_running_session(kernel: Kernel) -> None:
    kernel.run("%config D365Sync.display = 'widget'")
    kernel.run("nb.get_connection().emulator.configure(latency_ms=40)")
    try:
        assert kernel.run("%d365sync start --force").status == "ok"
        kernel.poll("nb.get_session().current_phase", lambda v: v == "labels")
        assert kernel.run("nb.get_panel().cancel_button.click()").status == "ok"
        kernel.poll(STATUS, lambda v: v == "cancelled")
        kernel.poll("nb.get_panel().overall_bar.bar_style", lambda v: v == "warning")
        assert kernel.value("nb.get_panel().cancel_button.disabled") == "True"
        assert kernel.value("nb.get_session().phases['labels'].status.value") == "cancelled"
    finally:
        kernel.run("nb.get_connection().emulator.configure(latency_ms=10)")
        kernel.run("%config D365Sync.display = 'auto'")


def test_requests_sent_during_a_wait_run_after_it(kernel: Kernel) -> None:
    """JupyterLab's Run All queues the next cells while one blocks: none may be lost."""
    first = kernel.send("%d365sync start --force --wait")
    second = kernel.send("print('second cell ran')")
    assert kernel.collect(first).status == "ok"
    reply = kernel.collect(second)
    assert reply.status == "ok" and reply.stream("stdout") == "second cell ran\n"
    noise = [
        m
        for m in kernel.log
        if m["msg_type"] == "stream" and "cannot enter" in m["content"]["text"]
    ]
    assert not noise


def test_cancel_click_from_the_frontend_protocol(kernel: Kernel) -> None:
    """A click as a frontend sends it: a comm message to the button's model."""
    kernel.run("%config D365Sync.display = 'widget'")
    kernel.run("nb.get_connection().emulator.configure(latency_ms=40)")
    try:
        assert kernel.run("%d365sync start --force").status == "ok"
        button = kernel.value("nb.get_panel().cancel_button.model_id")
        kernel.poll("nb.get_session().current_phase", lambda v: v == "labels")
        click = {"method": "custom", "content": {"event": "click"}}
        message = kernel.kc.session.msg("comm_msg", {"comm_id": button, "data": click})
        kernel.kc.shell_channel.send(message)
        kernel.poll(STATUS, lambda v: v == "cancelled")
        kernel.poll("nb.get_panel().summary.value[:22]", lambda v: v == "Cancelled in phase lab")
    finally:
        kernel.run("nb.get_connection().emulator.configure(latency_ms=10)")
        kernel.run("%config D365Sync.display = 'auto'")


def test_auto_display_uses_widgets_only_for_notebook_frontends(kernel: Kernel) -> None:
    """JupyterLab, Notebook 7 and VS Code send a cellId with each execute request;
    executing clients (nbclient, nbval) do not, and get text."""
    code = "%d365sync progress"
    content = {
        "code": code,
        "silent": False,
        "store_history": True,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    request = kernel.kc.session.msg("execute_request", content, metadata={"cellId": "cell-1"})
    kernel.kc.shell_channel.send(request)
    as_lab = kernel.collect(request["header"]["msg_id"])
    (shown,) = as_lab.of_type("display_data")
    assert "application/vnd.jupyter.widget-view+json" in shown["data"]
    assert not as_lab.stream("stdout")
    as_client = kernel.run(code)
    assert not as_client.of_type("display_data")
    assert re.match(r"Session [0-9a-f-]{36}  full  version 1  ", as_client.stream("stdout"))


def test_diagnose_shows_the_report_then_its_charts(kernel: Kernel) -> None:
    """In a kernel ``diagnose`` is three outputs: the report (HTML and its text), then the
    requests-over-time and latency charts as images; the text alone stands for clients that
    render no HTML."""
    assert kernel.run("%d365sync start --force --wait").status == "ok"
    reply = kernel.run("%d365sync diagnose")
    assert reply.status == "ok", reply.outputs
    report, *images = reply.of_type("display_data")
    sid = kernel.value("nb.get_session().session_id")
    assert report["data"]["text/plain"].startswith(f"Session {sid} (completed): healthy: ")
    assert 'class="d365sync-verdict"' in report["data"]["text/html"]
    assert len(images) == 2 and all("image/png" in image["data"] for image in images)
    assert [i["data"]["text/plain"].startswith("<Figure size 1000x520") for i in images] == [
        True,
        False,
    ]
    assert not reply.of_type("execute_result")


def test_cancel_click_during_wait_ends_the_cell_within_a_second(kernel: Kernel) -> None:
    """The panel's Cancel, clicked (as a frontend sends it) while `start --wait` blocks: on
    ipykernel >= 7.4 the click is handled at once and the cell returns, cancelled; older kernels
    cannot deliver it, so the button is disabled for the wait and says to interrupt instead."""
    kernel.run("%config D365Sync.display = 'widget'")
    kernel.run("nb.get_connection().emulator.configure(latency_ms=40)")
    deliverable = kernel.value(
        "__import__('d365sync_nb.notebook.event_loop').notebook.event_loop"
        ".clicks_reach_a_waiting_cell()"
    )
    try:
        msg_id = kernel.send("%d365sync start --force --wait")
        seen: dict[str, Any] = {}
        observe = watch_cancel_button(seen)

        def moving(msg: dict[str, Any]) -> bool:
            value = observe(msg).get("value")  # the overall bar moving: the cell is blocked
            return "button" in seen and isinstance(value, float) and 5 < value < 90

        kernel.collect(msg_id, until=moving)
        if deliverable != "True":
            assert seen.get("disabled") is True and "interrupt" in seen.get("tooltip", "")
            kernel.collect(msg_id)
            return
        click = {"method": "custom", "content": {"event": "click"}}
        clicked = time.monotonic()
        kernel.kc.shell_channel.send(
            kernel.kc.session.msg("comm_msg", {"comm_id": seen["button"], "data": click})
        )
        reply = kernel.collect(msg_id)
        took = time.monotonic() - clicked
        assert reply.status == "ok"
        assert took < 1.0, f"the cell returned {took:.2f} s after the click"
        assert kernel.value(STATUS) == "cancelled"
        assert kernel.value("nb.get_session().phases['finalizing'].status.value") == "pending"
    finally:
        kernel.run("nb.get_connection().emulator.configure(latency_ms=10)")
        kernel.run("%config D365Sync.display = 'auto'")
