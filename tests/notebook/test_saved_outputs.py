"""A notebook executed by nbclient (papermill's engine) keeps each session's final state.

nbclient renders no widget: ``start --wait`` prints its phases as they end, and a non-blocking
``start`` shows a static report that is brought up to date from a later cell (nbclient reads
only the messages of the cell it runs). With widgets forced on, the panel's output carries the
same static renderings beside its widget view.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

PHASE_NAMES = ("initializing", "version_check", "entities", "schemas", "enumerations", "labels",
               "indexing", "finalizing")  # fmt: skip
STALE = re.compile(r"\b(running|pending)\b")

pytestmark = pytest.mark.timeout(240)


def run_notebook(tmp_path: Path, display: str) -> nbformat.NotebookNode:
    cells = [
        "%load_ext d365sync_nb",
        f"%d365sync connect --demo --latency-ms 5 --cache-dir {tmp_path / 'cache'}",
        "%d365sync start --strategy full --force --wait",
        "%d365sync start --strategy full --force",
        "from d365sync_nb import notebook as nb\n_ = nb.progress(wait=True, display=False)",
        # every chart the package draws, saved as an image a viewer shows without the kernel
        "%d365sync timeline",
        "%d365sync diagnose",
        "nb.charts.history_durations(nb.history())",
        "nb.charts.history_throughput(nb.history())",
        "_ = nb.get_connection().emulator.configure(version=2)\n"
        "_ = nb.start('full', wait=True, display=False)\n"
        "nb.charts.changes_by_kind(nb.diff())",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env = {**os.environ, "D365SYNC_DISPLAY": display}
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={
        "metadata": {"path": str(tmp_path)}})  # fmt: skip
    old = {k: os.environ.get(k) for k in ("D365SYNC_DISPLAY",)}
    os.environ.update(env)
    try:
        client.execute()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


def shown(cell: nbformat.NotebookNode) -> str:
    """Everything a viewer without widgets shows of a cell: streams, text and HTML."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        for mime in ("text/plain", "text/html"):
            if mime in output.get("data", {}):
                parts.append(output.data[mime])
    return "\n".join(parts)


def assert_final(text: str, *, outcome: bool = True) -> None:
    assert "completed" in text, text
    assert not outcome or "Completed in" in text, text  # the outcome sentence
    assert all(name in text for name in PHASE_NAMES), text
    assert not STALE.search(text), text


def test_text_display_saves_the_final_state(tmp_path: Path) -> None:
    nb = run_notebook(tmp_path, "text")
    blocking, background = nb.cells[2], nb.cells[3]
    assert_final(shown(blocking), outcome=False)  # the printed phases, then the headline
    assert [o.output_type for o in background.outputs] == ["stream", "display_data", "stream"]
    assert "Started a 'full' sync" in background.outputs[0].text  # honest at any time
    static = background.outputs[1].data
    assert set(static) == {"text/plain", "text/html"}
    assert_final(static["text/plain"])
    assert_final(static["text/html"])
    assert "<script" not in static["text/html"]
    images = [len([o for o in cell.outputs if "image/png" in o.get("data", {})])
              for cell in nb.cells[5:]]  # fmt: skip
    assert images == [1, 2, 1, 1, 1], images  # diagnose: requests over time, latency


def test_widget_display_carries_the_final_state_beside_the_view(tmp_path: Path) -> None:
    nb = run_notebook(tmp_path, "widget")
    for cell in nb.cells[2:4]:
        views = [o for o in cell.outputs if "application/vnd.jupyter.widget-view+json" in
                 o.get("data", {})]  # fmt: skip
        assert len(views) == 1, cell.outputs
        assert_final(views[0].data["text/plain"])
        assert_final(views[0].data["text/html"])
