"""A notebook saved from JupyterLab stays true where widgets do not run.

Runs a blocking and a non-blocking sync in JupyterLab, lets both finish, saves the notebook
through the UI (Ctrl+S), then reads the saved ``.ipynb``: the representations beside the widget
view (what GitHub, nbviewer and ``nbconvert`` show) must give the final status and all 8
phases, never "running" or "pending"; ``jupyter nbconvert --to html`` of it must show the same.
Then the session report is written from the notebook and opened in the browser.
``D365SYNC_UPDATE_DOCS_PANEL=1`` also refreshes the README's pictures (``docs/shared-notebook.png``,
``docs/report.png``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ARTIFACTS, FAILED, REPO
from tests.browser.lab import LabServer
from tests.browser.test_quickstart_browser import (
    RUN_ALL_TIMEOUT_MS,
    assert_no_errors,
    open_notebook,
    panel_state,
    shot,
    type_and_run_cell,
    wait_cells_done,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NAME = "shared.ipynb"
PHASE_NAMES = ("initializing", "version_check", "entities", "schemas", "enumerations", "labels",
               "indexing", "finalizing")  # fmt: skip
STALE = re.compile(r"\b(running|pending)\b", re.IGNORECASE)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
DOCS_MAX_BYTES = 400_000


def write_notebook(root: Path) -> None:
    cells = [
        "%load_ext d365sync_nb",
        "%d365sync connect --demo --latency-ms 10 --cache-dir shared-cache",  # beside it
        "%d365sync start --strategy full --force --wait",
        "%d365sync start --strategy full --force",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    nbformat.write(nb, root / NAME)


def static_texts(output: dict[str, Any]) -> dict[str, str]:
    """The representations of an output that a viewer without widgets shows."""
    data = output.get("data", {})
    return {
        mime: "".join(value) if isinstance(value, list) else value
        for mime, value in data.items()
        if mime in ("text/plain", "text/html")
    }


def assert_final(text: str, where: str) -> None:
    assert "completed" in text, (where, text[:400])
    missing = [p for p in PHASE_NAMES if p not in text]
    assert not missing, (where, missing)
    stale = STALE.search(text)
    assert stale is None, (where, text[max(0, stale.start() - 200) : stale.end() + 100])


@pytest.fixture
def shared(request: pytest.FixtureRequest, page: Page, lab: LabServer) -> Page:
    write_notebook(lab.root_dir)
    open_notebook(page, lab, NAME)
    yield page
    if request.node.stash.get(FAILED, False):
        shot(page, "saved-failure.png")


def test_saved_notebook_shows_final_states(shared: Page, lab: LabServer) -> None:
    page = shared
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    wait_cells_done(page, None, RUN_ALL_TIMEOUT_MS)
    assert_no_errors(page)
    panels = page.locator(".d365sync-panel")
    expect(panels).to_have_count(2)
    for each in panels.all():  # the non-blocking one finishes after its cell
        expect(each).to_have_class(re.compile(r"\bd365sync-status-completed\b"), timeout=60_000)
    assert all(panel_state(p)["summary"].startswith("Completed in") for p in panels.all())
    assert all(panel_state(p)["cancel"]["disabled"] for p in panels.all())  # live widgets

    # Save through the UI, as a user does.
    page.locator(".jp-Notebook .jp-Cell").first.click()
    page.keyboard.press("Control+s")
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.context.model.dirty === false"
    )
    saved = json.loads((lab.root_dir / NAME).read_text(encoding="utf-8"))
    starts = [c for c in saved["cells"] if "%d365sync start" in "".join(c["source"])]
    assert len(starts) == 2
    for index, cell in enumerate(starts):
        views = [o for o in cell["outputs"] if WIDGET_VIEW in o.get("data", {})]
        assert len(views) == 1, cell["outputs"]  # JupyterLab kept its live widget view
        texts = static_texts(views[0])
        assert set(texts) == {"text/plain", "text/html"}, texts.keys()
        for mime, text in texts.items():
            assert_final(text, f"start cell {index} {mime}")
        assert "<script" not in texts["text/html"]

    # What a reader of nbconvert's HTML (nbviewer, a mail attachment) sees.
    out = ARTIFACTS / "shared.html"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter"), "nbconvert", "--to", "html",
         "--output", str(out.with_suffix("")), str(lab.root_dir / NAME)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    converted = out.read_text(encoding="utf-8")
    body = converted[converted.index("<body") :]
    body = re.sub(r"<(script|style)\b.*?</\1>", "", body, flags=re.DOTALL)
    cards = re.findall(r'data-d365sync-status="(\w+)"', body)
    assert cards == ["completed", "completed"], cards
    assert_final(body, "nbconvert html")

    # The session report, written from the notebook and opened as a file.
    report = lab.root_dir / "session-report.html"
    cell = type_and_run_cell(page, f"%d365sync report --html {report}")
    expect(cell.locator(".jp-OutputArea-output")).to_contain_text("D365 metadata sync report")
    assert report.is_file()
    viewer = page.context.new_page()
    try:
        viewer.route(re.compile(r"^(?!file:|data:).*"), lambda route: route.abort())
        viewer.goto(out.as_uri())
        expect(viewer.locator("body")).to_contain_text("Completed in")
        viewer.screenshot(path=ARTIFACTS / "shared-notebook.png", full_page=True)
        requested: list[str] = []
        viewer.on("request", lambda r: requested.append(r.url))
        viewer.goto(report.as_uri())
        expect(viewer.locator("h1")).to_have_text("D365 metadata sync report")
        expect(viewer.locator("img")).to_have_count(3)
        assert all(u.startswith(("file:", "data:")) for u in requested), requested
        viewer.screenshot(path=ARTIFACTS / "report.png", full_page=True)
    finally:
        viewer.close()
    if os.environ.get("D365SYNC_UPDATE_DOCS_PANEL") == "1":
        for name in ("shared-notebook.png", "report.png"):
            assert (ARTIFACTS / name).stat().st_size < DOCS_MAX_BYTES, name
            shutil.copyfile(ARTIFACTS / name, REPO / "docs" / name)
