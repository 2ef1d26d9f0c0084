"""JupyterLab notifications (toasts) in a real browser: ipylab's bridge runs ``apputils:notify``.

Background sessions (``%d365sync start`` without ``--wait``) against the emulator end completed,
failed (a corrupt answer: the toast carries the one-line error) and cancelled; each ending shows
a JupyterLab toast (``.Toastify__toast``, typed ``jp-Notification-Toast-<type>``) and a line in
``%d365sync panel``. A ``--no-notify`` start shows none. Then a watch finds the emulator's next
release, syncs it and says so with a toast. Screenshots go to ``artifacts/browser/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import ARTIFACTS, FAILED
from tests.browser.lab import LabServer
from tests.browser.test_quickstart_browser import (
    assert_no_errors,
    open_notebook,
    shot,
    type_and_run_cell,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NAME = "toasts.ipynb"
TOAST_TIMEOUT_MS = 60_000  # a small full sync, on a machine shared with other tests
SLOW_LATENCY_MS = 300  # a sync then runs long enough to cancel it
TOLD = "[f'{t.event} {t.via}' for t in nb.get_notices()]"  # what the kernel told, and how


def write_notebook(root: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("%load_ext d365sync_nb")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    nbformat.write(nb, root / NAME)


@pytest.fixture
def notebook(request: pytest.FixtureRequest, page: Page, lab: LabServer) -> Iterator[Page]:
    """An almost empty notebook open in JupyterLab; a screenshot when the test fails."""
    write_notebook(lab.root_dir)
    open_notebook(page, lab, NAME)
    yield page
    if request.node.stash.get(FAILED, False):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=ARTIFACTS / "toasts-failure.png", full_page=True)


def toast(page: Page, text: str) -> Locator:
    return page.locator(".Toastify__toast").filter(has_text=text)


def expect_toast(page: Page, text: str, kind: str) -> Locator:
    """The one toast holding ``text``, of JupyterLab's notification type ``kind``."""
    found = toast(page, text)
    expect(found).to_have_count(1, timeout=TOAST_TIMEOUT_MS)
    expect(found).to_have_class(re.compile(rf"\bjp-Notification-Toast-{kind}\b"))
    return found


def ended(cell: Locator, status: str) -> None:
    panel = cell.locator(".d365sync-panel")
    expect(panel).to_have_class(
        re.compile(rf"\bd365sync-status-{status}\b"), timeout=TOAST_TIMEOUT_MS
    )


def test_background_sessions_and_a_watch_end_with_jupyterlab_toasts(
    notebook: Page, lab: LabServer
) -> None:
    page = notebook
    # ipylab's JupyterLab extension (prebuilt in its wheel, found in the venv) is active
    assert page.evaluate("() => window.jupyterapp.isPluginActivated('ipylab:plugin')")
    cache = lab.root_dir / "toast-cache"
    type_and_run_cell(page, "%load_ext d365sync_nb")
    type_and_run_cell(page, f"%d365sync connect --demo --cache-dir {cache}")
    type_and_run_cell(page, "import d365sync_nb.notebook as nb; emu = nb.get_connection().emulator")

    # Completed: a success toast naming the session and its outcome.
    cell = type_and_run_cell(page, "%d365sync start --strategy full")
    ended(cell, "completed")
    done = expect_toast(page, "Sync completed", "success")
    expect(done).to_contain_text("127.0.0.1")
    expect(done).to_contain_text(re.compile(r"session [0-9a-f]{8}, completed in \d+ s"))
    shot(done, "toast-completed.png")

    # Failed: an error toast carrying the one-line error (the emulator's answers are corrupt).
    type_and_run_cell(page, "_ = emu.configure(corrupt='non_json')")
    cell = type_and_run_cell(page, "%d365sync start --strategy full --force")
    ended(cell, "failed")
    failed = expect_toast(page, "Sync failed", "error")
    error = cell.locator(".d365sync-summary").text_content() or ""
    assert error.startswith("Failed"), error
    message = failed.text_content() or ""
    assert "Traceback" not in message and "\n" not in message.strip(), message
    shot(failed, "toast-failed.png")

    # Cancelled: a warning toast.
    type_and_run_cell(page, f"_ = emu.configure(corrupt=None, latency_ms={SLOW_LATENCY_MS})")
    cell = type_and_run_cell(page, "%d365sync start --strategy full --force")
    cell.locator(".d365sync-cancel").click()
    ended(cell, "cancelled")
    expect_toast(page, "Sync cancelled", "warning")

    # --no-notify: the session ends without a toast or a line; the kernel asked for 3 toasts.
    type_and_run_cell(page, "_ = emu.configure(latency_ms=0)")
    cell = type_and_run_cell(page, "%d365sync start --strategy full --force --no-notify")
    ended(cell, "completed")
    board = type_and_run_cell(page, "%d365sync panel").locator(".d365sync-dashboard-notices")
    lines = board.locator(".d365sync-notice")
    expect(lines).to_have_count(3)
    for line, text in zip(lines.all(), ("completed", "failed", "cancelled"), strict=True):
        expect(line).to_contain_text(f"Sync {text}")
    told = type_and_run_cell(page, f"print({TOLD})")
    expect(told.locator(".jp-OutputArea-output")).to_have_text(
        "['sync_completed toast', 'sync_failed toast', 'sync_cancelled toast']"
    )

    # A watch finds the next release, syncs it and tells with a toast.
    type_and_run_cell(page, "%d365sync watch --every 1s")
    type_and_run_cell(page, "_ = emu.next_release()")
    synced = expect_toast(page, "New version synced", "success")
    expect(synced).to_contain_text(re.compile(r"version 2: \+\d+ entities"))  # what changed
    shot(synced, "toast-new-version.png")
    type_and_run_cell(page, "%d365sync watch --stop")
    told = type_and_run_cell(page, f"print({TOLD}[-1])")
    expect(told.locator(".jp-OutputArea-output")).to_have_text("version_changed toast")
    assert_no_errors(page)
    shot(page, "toasts.png")
