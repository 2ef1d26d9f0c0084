"""Fixtures for the real-browser tests: headless Debian Chromium driven by playwright, and a
JupyterLab server on loopback serving a tmp copy of ``notebooks/``."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.browser.lab import ARTIFACTS, FAILED, REPO, LabServer, run_lab

CHROMIUM = Path(os.environ.get("D365SYNC_CHROMIUM", "/usr/bin/chromium"))
# Debian's chromium as is; `playwright install` (a browser download) cannot work here.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1400, "height": 1000}
DEFAULT_TIMEOUT_MS = 30_000


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: drives JupyterLab in headless Chromium (skipped without chromium)"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember whether the test itself failed (fixtures take a screenshot then)."""
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium; the test is skipped when the Debian package is not installed.

    Module-scoped: playwright's sync API holds a running asyncio loop on this thread until it
    stops, which would break the async tests collected after this package."""
    if not CHROMIUM.is_file():
        pytest.skip(
            f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium; "
            ".ci/run does) or point D365SYNC_CHROMIUM at a Chromium binary"
        )
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=LAUNCH_ARGS, timeout=60_000
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context and page (closed afterwards)."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabServer]:
    """JupyterLab (this venv's) serving a tmp copy of notebooks/: running them in the browser
    never touches the committed notebooks. ``window.jupyterapp`` is exposed for the tests."""
    root = tmp_path / "notebooks"
    shutil.copytree(REPO / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    state = tmp_path / "lab-state"
    try:
        with run_lab(
            Path(sys.executable).parent,
            root,
            state,
            args=["--LabApp.expose_app_in_browser=True"],
        ) as server:
            yield server
    finally:
        log = state / "jupyter-lab.log"
        if log.is_file():
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, ARTIFACTS / "jupyter-lab.log")
