"""What the notebook tells when a background session ends: the kernel's notices, the line in
``%d365sync panel``, and the JupyterLab toast through ipylab's comm (the kernel's side of it; the
browser test sees the toast itself).

In the kernel, this test plays JupyterLab's part of ipylab's protocol over jupyter_client: it
answers the ``JupyterFrontEndModel`` comm with ``lab_ready`` and reads the ``apputils:notify``
command the kernel sends; without that answer (or without ipylab) the panel line is all there is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from d365sync_nb.notebook import get_connection, get_notices, get_session
from tests.notebook.kernel import Kernel
from tests.support import poll

TOLD = "[f'{t.event} {t.via}' for t in nb.get_notices()]"
STATE = "from d365sync_nb.notebook.state import state"
TOASTER = "__import__('d365sync_nb.notebook.state').notebook.state.state.notices.toaster"


@pytest.fixture
def widget_kernel(kernel: Kernel) -> Iterator[Kernel]:
    """The kernel in widget mode with no notice told yet and no ipylab bridge made."""
    kernel.run(f"{STATE}; state.notices.clear()")
    kernel.run("%config D365Sync.display = 'widget'")
    yield kernel
    kernel.run("%config D365Sync.display = 'auto'")
    kernel.run(f"{STATE}; state.notices.clear()")
    kernel.run("import sys; sys.modules.get('ipylab', 0) is None and sys.modules.pop('ipylab')")


def test_without_ipylab_a_background_start_tells_its_end_in_the_panel_line(
    widget_kernel: Kernel,
) -> None:
    kernel = widget_kernel
    kernel.run("import sys; sys.modules['ipylab'] = None")  # as if the extra were not installed
    assert kernel.run("board = nb.panel()").status == "ok"
    assert kernel.run("%d365sync start --force").status == "ok"
    line = kernel.poll("board.notices_line.value", lambda v: "Sync completed" in v)
    assert 'class="d365sync-notice"' in line and "Session " in line
    assert kernel.value(TOLD) == "['sync_completed panel']"
    assert kernel.value(f"{TOASTER}.app") == "None"


def frontend_comm(log: list[dict[str, Any]], model: str) -> str | None:
    """The comm id of the widget model ``model`` the kernel opened, if any."""
    for msg in log:
        content = msg["content"]
        if (
            msg["msg_type"] == "comm_open"
            and content.get("target_name") == "jupyter.widget"
            and content["data"]["state"].get("_model_name") == model
        ):
            return content["comm_id"]
    return None


def custom_messages(log: list[dict[str, Any]], comm_id: str) -> list[dict[str, Any]]:
    return [
        m["content"]["data"]["content"]
        for m in log
        if m["msg_type"] == "comm_msg"
        and m["content"]["comm_id"] == comm_id
        and m["content"]["data"].get("method") == "custom"
    ]


def test_with_ipylab_the_kernel_asks_jupyterlab_for_a_toast_once_its_frontend_answers(
    widget_kernel: Kernel,
) -> None:
    kernel = widget_kernel
    assert kernel.run("%d365sync start --force").status == "ok"
    app = frontend_comm(kernel.log, "JupyterFrontEndModel")
    commands = frontend_comm(kernel.log, "CommandRegistryModel")
    assert app and commands, "the start cell made no ipylab bridge"
    # JupyterLab's part: ipylab's frontend model says it is ready
    ready = kernel.kc.session.msg(
        "comm_msg",
        {"comm_id": app, "data": {"method": "custom", "content": {"event": "lab_ready"}}},
    )
    kernel.kc.shell_channel.send(ready)
    kernel.poll(TOLD, lambda v: v == "['sync_completed toast']")
    (sent,) = custom_messages(kernel.log, commands)
    assert sent["func"] == "execute"
    assert sent["payload"]["id"] == "apputils:notify"
    args = sent["payload"]["args"]
    assert args["type"] == "success" and args["options"] == {"autoClose": 15000}
    assert args["message"].startswith("Sync completed: 127.0.0.1 · session ")
    assert len(args["message"]) <= 140


def test_a_failed_background_session_tells_its_error_and_verdict(
    connected: InteractiveShell,
) -> None:
    before = len(get_notices())
    get_connection().emulator.configure(corrupt="non_json")
    assert connected.run_cell("%d365sync start --strategy full").success
    told = poll(get_notices, lambda n: len(n) > before, what="a notice")[-1]
    assert told.event == "sync_failed" and told.via == "panel"  # no JupyterLab here
    assert told.text.startswith("Sync failed: 127.0.0.1: ")
    assert "Error: " in told.text and "not JSON" in told.text
    assert "\n" not in told.text and "Traceback" not in told.text


def test_no_notify_and_the_setting_leave_a_background_session_untold(
    connected: InteractiveShell,
) -> None:
    before = len(get_notices())
    assert connected.run_cell("%d365sync start --strategy full --no-notify").success
    poll(_status, lambda s: s != "running", what="the first session")
    connected.run_line_magic("config", "D365Sync.notify_background = False")
    try:
        assert connected.run_cell("%d365sync start --strategy full --force").success
        poll(_status, lambda s: s != "running", what="the second session")
    finally:
        connected.run_line_magic("config", "D365Sync.notify_background = True")
    assert connected.run_cell("%d365sync start --strategy full --force").success
    told = poll(get_notices, lambda n: len(n) > before, what="the third session's notice")
    assert [t.event for t in told[before:]] == ["sync_completed"]  # only the third one


def _status() -> str:
    return get_session().status.value
