"""The quickstart in a real browser: JupyterLab + headless Chromium, read through the DOM.

Runs every cell of ``01-quickstart.ipynb`` (a tmp copy) with Run All, then checks that the
session panels render and end at 100 %, and that the history renders as a DataFrame table.
Then it types cells into the notebook: reconnect to an emulator with high latency, start a
session, click the panel's Cancel button, and check that the panel and the history show it
cancelled. Screenshots go to ``artifacts/browser/``; ``D365SYNC_UPDATE_DOCS_PANEL=1`` also
copies the completed panel to ``docs/panel.png`` (the README's picture).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser.lab import ARTIFACTS, FAILED, REPO, LabServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

QUICKSTART = "01-quickstart.ipynb"
OPEN_TIMEOUT_MS = 90_000
RUN_ALL_TIMEOUT_MS = 120_000
CELL_TIMEOUT_MS = 60_000
# A full small sync then takes 15-25 s (at 300 ms it took 8-15 s once the client got lighter,
# and on a loaded machine the two-panel steps outlasted it): ample time to click Cancel.
SLOW_LATENCY_MS = 600
DOCS_PANEL = REPO / "docs" / "panel.png"
DOCS_PANEL_MAX_BYTES = 300_000

# The current notebook, from JupyterLab's models (window.jupyterapp is exposed by the fixture).
NOTEBOOK_STATE_JS = """() => {
  const panel = window.jupyterapp?.shell.currentWidget;
  const nb = panel?.content;
  if (!nb?.model || !panel.sessionContext) return null;
  const cells = nb.widgets.map((w, index) => ({
    index,
    type: w.model.type,
    source: w.model.sharedModel.getSource(),
    count: w.model.type === 'code' ? w.model.executionCount : null,
    running: w.model.executionState === 'running',
    errors: w.model.type === 'code'
      ? w.model.outputs.toJSON().filter(o => o.output_type === 'error')
          .map(o => `${o.ename}: ${o.evalue}`)
      : [],
  }));
  return {kernel: panel.sessionContext.session?.kernel?.status ?? null, cells};
}"""
# True once the kernel is idle and the given code cells (all when null) have run.
CELLS_DONE_JS = f"""(indexes) => {{
  const state = ({NOTEBOOK_STATE_JS})();
  if (!state || state.kernel !== 'idle') return false;
  return state.cells
    .filter(c => c.type === 'code' && c.source.trim())
    .filter(c => indexes === null || indexes.includes(c.index))
    .every(c => c.count !== null && !c.running);
}}"""
# One panel's state: its status, every bar's width (the bar's value in %), texts, the button.
PANEL_STATE_JS = """(panel) => {
  const status = el => ([...el.classList].find(c => c.startsWith('d365sync-status-')) ?? '')
    .replace('d365sync-status-', '') || null;
  const percent = bar => {
    const fill = bar?.querySelector('.progress-bar');
    return fill ? parseFloat(fill.style.width) : null;
  };
  const text = el => el ? el.textContent.trim() : null;
  const phases = {};
  for (const row of panel.querySelectorAll('.d365sync-phase')) {
    phases[text(row.querySelector('.d365sync-phase-name'))] = {
      status: status(row),
      percent: percent(row.querySelector('.d365sync-phase-bar')),
      text: text(row.querySelector('.d365sync-phase-text')),
    };
  }
  const cancel = panel.querySelector('.d365sync-cancel');
  return {
    status: status(panel),
    overall: percent(panel.querySelector('.d365sync-overall-bar')),
    overallText: text(panel.querySelector('.d365sync-overall-text')),
    phases,
    cancel: cancel ? {text: text(cancel), disabled: cancel.disabled} : null,
    summary: text(panel.querySelector('.d365sync-summary')),
  };
}"""


def notebook_state(page: Page) -> dict[str, Any]:
    state = page.evaluate(NOTEBOOK_STATE_JS)
    assert state is not None, "no notebook is open"
    return state


def wait_cells_done(page: Page, indexes: list[int] | None, timeout_ms: int) -> None:
    """Wait until the cells ran; on timeout fail with the cells that did not."""
    try:
        page.wait_for_function(CELLS_DONE_JS, arg=indexes, timeout=timeout_ms)
    except PlaywrightTimeout:
        state = notebook_state(page)
        pending = [
            f"[{c['index']}] {c['source'].splitlines()[0] if c['source'] else ''}"
            for c in state["cells"]
            if c["type"] == "code" and c["source"].strip() and (c["count"] is None or c["running"])
            if indexes is None or c["index"] in indexes
        ]
        raise AssertionError(
            f"cells did not finish within {timeout_ms / 1000:.0f} s (kernel "
            f"{state['kernel']}): {pending}"
        ) from None


def assert_no_errors(page: Page) -> None:
    errors = [(c["index"], e) for c in notebook_state(page)["cells"] for e in c["errors"]]
    assert not errors, f"cells raised: {errors}"
    expect(page.locator(".jp-Notebook")).not_to_contain_text("Error displaying widget")


def open_notebook(page: Page, lab: LabServer, name: str) -> None:
    page.goto(lab.url(f"lab/tree/{name}?reset"))
    page.wait_for_function(
        "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel"
        "?.status === 'idle'",
        timeout=OPEN_TIMEOUT_MS,
    )


def run_all(page: Page) -> None:
    """Clear the saved outputs, then Run All Cells (as a user would) and wait for the last."""
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    expect(page.locator(".d365sync-panel")).to_have_count(0)
    counts = [c["count"] for c in notebook_state(page)["cells"] if c["type"] == "code"]
    assert counts and all(n is None for n in counts), counts
    # not awaited: the command's promise settles only when every cell has run
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    wait_cells_done(page, None, RUN_ALL_TIMEOUT_MS)


def type_and_start_cell(page: Page, source: str) -> tuple[Locator, int]:
    """Add a code cell at the end, type ``source`` into it, run it with Shift+Enter (no wait)."""
    index = page.evaluate(
        """async () => {
          const nb = window.jupyterapp.shell.currentWidget.content;
          nb.activeCellIndex = nb.widgets.length - 1;
          await window.jupyterapp.commands.execute('notebook:insert-cell-below');
          return nb.activeCellIndex;
        }"""
    )
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    editor = cell.locator(".cm-content")
    editor.click()
    page.keyboard.type(source)
    expect(editor).to_have_text(source)
    page.keyboard.press("Shift+Enter")
    return cell, index


def type_and_run_cell(page: Page, source: str) -> Locator:
    """Add a code cell at the end, type ``source`` into it, run it and wait for it."""
    cell, index = type_and_start_cell(page, source)
    wait_cells_done(page, [index], CELL_TIMEOUT_MS)
    assert_no_errors(page)
    return cell


def panel_state(panel: Locator) -> dict[str, Any]:
    return panel.evaluate(PANEL_STATE_JS)


def table_column(table: Locator, name: str) -> list[str] | None:
    """The cells of one column of a rendered DataFrame (``table.dataframe``)."""
    return table.evaluate(
        """(table, name) => {
          const heads = [...table.querySelectorAll('thead tr:last-child th')]
            .map(th => th.textContent.trim());
          const at = heads.indexOf(name);
          if (at < 0) return null;
          return [...table.querySelectorAll('tbody tr')]
            .map(tr => tr.children[at]?.textContent.trim());
        }""",
        name,
    )


def shot(target: Page | Locator, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if isinstance(target, Page):
        target.screenshot(path=ARTIFACTS / name, full_page=True)
    else:
        target.screenshot(path=ARTIFACTS / name)


@pytest.fixture
def quickstart(request: pytest.FixtureRequest, page: Page, lab: LabServer) -> Iterator[Page]:
    """The quickstart open in JupyterLab; a screenshot of the page when the test fails."""
    if not (lab.root_dir / QUICKSTART).is_file():
        pytest.fail(f"notebooks/{QUICKSTART} is missing")
    open_notebook(page, lab, QUICKSTART)
    yield page
    if request.node.stash.get(FAILED, False):
        shot(page, "failure.png")


def test_quickstart_panel_cancel_and_history(quickstart: Page) -> None:
    page = quickstart
    run_all(page)
    assert_no_errors(page)

    # The panels render; their sessions ended (none failed) and the completed ones at 100 %.
    panels = page.locator(".d365sync-panel")
    expect(panels.first).to_be_attached()
    states = [panel_state(p) for p in panels.all()]
    statuses = [s["status"] for s in states]
    assert "completed" in statuses, statuses
    assert set(statuses) <= {"completed", "cancelled"}, statuses
    for s in states:
        if s["status"] != "completed":
            continue
        assert s["overall"] == 100.0, s
        assert s["overallText"].startswith("100.0%"), s
        assert len(s["phases"]) == 8, s["phases"]
        for name, phase in s["phases"].items():
            if phase["status"] != "skipped":  # done: did its work, or reused the cache's
                assert phase["status"] in ("completed", "reused"), (name, phase)
                assert phase["percent"] == 100.0, (name, phase)
        assert s["cancel"] and s["cancel"]["disabled"], s["cancel"]  # disabled once ended
        assert s["summary"].startswith("Completed in"), s["summary"]
    completed_panel = panels.nth(len(statuses) - 1 - statuses[::-1].index("completed"))
    shot(completed_panel, "panel-completed.png")
    shot(page, "quickstart.png")
    if os.environ.get("D365SYNC_UPDATE_DOCS_PANEL") == "1":
        size = (ARTIFACTS / "panel-completed.png").stat().st_size
        assert size < DOCS_PANEL_MAX_BYTES, size
        shutil.copyfile(ARTIFACTS / "panel-completed.png", DOCS_PANEL)

    # The quickstart's history renders as a DataFrame table of completed sessions.
    tables = page.locator(".jp-OutputArea-output table.dataframe")
    expect(tables.first).to_be_attached()
    statuses = [table_column(t, "status") for t in tables.all()]
    assert any(col and "completed" in col for col in statuses), statuses

    # A slow session, cancelled with the panel's Cancel button.
    connected = type_and_run_cell(page, f"%d365sync connect --demo --latency-ms {SLOW_LATENCY_MS}")
    expect(connected).to_contain_text(f"{SLOW_LATENCY_MS} ms latency")
    started = type_and_run_cell(page, "%d365sync start --strategy full --force")
    panel = started.locator(".d365sync-panel")
    expect(panel).to_have_class(re.compile(r"\bd365sync-status-running\b"))
    cancel = panel.locator(".d365sync-cancel")
    expect(cancel).to_be_enabled()
    cancel.click()
    expect(panel).to_have_class(re.compile(r"\bd365sync-status-cancelled\b"))
    state = panel_state(panel)
    assert state["cancel"] and state["cancel"]["disabled"], state["cancel"]
    assert state["overall"] is not None and state["overall"] < 100.0, state
    cancelled = [n for n, p in state["phases"].items() if p["status"] == "cancelled"]
    assert len(cancelled) == 1, state["phases"]
    assert state["phases"]["finalizing"]["status"] == "pending", state["phases"]
    assert state["summary"].startswith(f"Cancelled in phase {cancelled[0]}"), state["summary"]
    shot(panel, "panel-cancelled.png")

    # The history now shows the cancelled session on top.
    history = type_and_run_cell(page, "%d365sync history --limit 5")
    table = history.locator("table.dataframe")
    expect(table).to_be_attached()
    column = table_column(table, "status")
    assert column and column[0] == "cancelled", column
    shot(history, "history.png")
    shot(page, "quickstart-cancelled.png")


def test_cancel_during_wait_and_a_kernel_restart(quickstart: Page, lab: LabServer) -> None:
    """Cancel clicked while `start --wait` blocks ends the cell within a second, cancelled; a
    kernel restarted mid-sync leaves no session shown as running."""
    page = quickstart
    cache = lab.root_dir / "restart-cache"
    type_and_run_cell(page, "%load_ext d365sync_nb")
    type_and_run_cell(
        page, f"%d365sync connect --demo --latency-ms {SLOW_LATENCY_MS} --cache-dir {cache}"
    )
    waiting, index = type_and_start_cell(page, "%d365sync start --strategy full --force --wait")
    panel = waiting.locator(".d365sync-panel")
    expect(panel).to_have_class(re.compile(r"\bd365sync-status-running\b"))
    cancel = panel.locator(".d365sync-cancel")
    expect(cancel).to_be_enabled()  # ipykernel >= 7.4: the click reaches the waiting cell
    assert notebook_state(page)["cells"][index]["running"]
    started = time.monotonic()
    cancel.click()
    wait_cells_done(page, [index], CELL_TIMEOUT_MS)
    took = time.monotonic() - started
    print(f"Cancel during --wait: the cell ended {took:.2f} s after the click")
    assert took < 1.0, f"the cell ended {took:.2f} s after the click"
    expect(panel).to_have_class(re.compile(r"\bd365sync-status-cancelled\b"))
    shot(panel, "panel-cancelled-during-wait.png")

    # Two sessions at once (the environment moved to its next release meanwhile): two live
    # panels, each following and cancelling its own session.
    running = re.compile(r"\bd365sync-status-running\b")
    cancelled = re.compile(r"\bd365sync-status-cancelled\b")
    first = type_and_run_cell(page, "%d365sync start --strategy full --force")
    type_and_run_cell(
        page,
        "from d365sync_nb import notebook as nb; "
        "_ = nb.get_connection().emulator.configure(version=2)",
    )
    second = type_and_run_cell(page, "%d365sync start --strategy full --force")
    panels = [first.locator(".d365sync-panel"), second.locator(".d365sync-panel")]
    for each in panels:
        expect(each).to_have_class(running)
    headers = [each.locator(".d365sync-header").text_content() for each in panels]
    versions = [re.search(r"· version (\d+) ·", h or "") for h in headers]
    assert all(versions) and versions[0][1] != versions[1][1], headers  # type: ignore[index]
    panels[1].locator(".d365sync-cancel").click()
    expect(panels[1]).to_have_class(cancelled)
    expect(panels[0]).to_have_class(running)  # the other session goes on
    panels[0].locator(".d365sync-cancel").click()
    expect(panels[0]).to_have_class(cancelled)
    shot(page, "two-panels.png")

    # A restart while a session runs: the next connect finds it interrupted, none running.
    started_cell = type_and_run_cell(page, "%d365sync start --strategy full --force")
    expect(started_cell.locator(".d365sync-panel")).to_have_class(
        re.compile(r"\bd365sync-status-running\b")
    )
    page.evaluate(
        "async () => { await window.jupyterapp.shell.currentWidget.sessionContext"
        ".session.kernel.restart(); }"
    )
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
        ".status === 'idle'",
        timeout=OPEN_TIMEOUT_MS,
    )
    type_and_run_cell(page, "%load_ext d365sync_nb")
    type_and_run_cell(page, f"%d365sync connect --demo --cache-dir {cache}")
    dashboard = type_and_run_cell(page, "%d365sync panel").locator(".d365sync-dashboard")
    expect(dashboard.locator(".d365sync-dashboard-running")).to_contain_text(
        "No session is running"
    )
    expect(dashboard.locator(".d365sync-panel")).to_have_count(0)
    history = type_and_run_cell(page, "%d365sync history --limit 3")
    column = table_column(history.locator("table.dataframe"), "status")
    assert column and column[0] == "failed" and column[1] == "cancelled", column
    why = type_and_run_cell(
        page, "from d365sync_nb import notebook as nb; print(nb.history(limit=1).error[0][:12])"
    )
    expect(why.locator(".jp-OutputArea-output")).to_contain_text("interrupted:")
    shot(page, "after-restart.png")
