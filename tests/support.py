"""Helpers the tests share (conftest.py files hold fixtures only): one polling helper, in a
blocking and an awaitable form, and the metadata counts a sync must reach."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from d365sync_nb.emulator import Emulator
    from d365sync_nb.sync.manager import SyncSessionManager

COUNT_KEYS = (
    "data_entities",
    "public_entities",
    "properties",
    "navigation_properties",
    "actions",
    "enumerations",
    "enumeration_members",
    "label_ids",
    "labels",
    "labels_missing",
    "labels_empty",
)
POLL_SECONDS = 0.02  # between two tries


class _Deadline:
    """The end of a poll, and the one failure message of every poll."""

    def __init__(self, timeout: float, what: str) -> None:
        self.timeout, self.what = timeout, what
        self.end = time.monotonic() + timeout

    def check(self, last: Any) -> None:
        if time.monotonic() > self.end:
            raise AssertionError(
                f"timed out after {self.timeout:g} s waiting for {self.what or 'a condition'}"
                f" (last value: {last!r:.300})"
            )


def poll(
    probe: Callable[[], Any],
    until: Callable[[Any], Any] = bool,
    *,
    timeout: float = 30.0,
    what: str = "",
) -> Any:
    """Call ``probe()`` until ``until(value)`` holds and return the value; fail the test at the
    deadline. For sync tests whose work runs on another thread."""
    deadline = _Deadline(timeout, what)
    while True:
        value = probe()
        if until(value):
            return value
        deadline.check(value)
        time.sleep(POLL_SECONDS)


async def apoll(
    probe: Callable[[], Any],
    until: Callable[[Any], Any] = bool,
    *,
    timeout: float = 30.0,
    what: str = "",
) -> Any:
    """:func:`poll` for async tests: ``probe`` may return an awaitable (it is awaited), and
    the event loop runs between tries."""
    deadline = _Deadline(timeout, what)
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if until(value):
            return value
        deadline.check(value)
        await asyncio.sleep(POLL_SECONDS)


def expected(emu: Emulator) -> dict[str, int]:
    """The counts a complete sync of the emulator's dataset reaches."""
    counts = emu.dataset.expected_counts()
    return {k: counts[k] for k in COUNT_KEYS}


def visible_counts(manager: SyncSessionManager, version_id: int) -> dict[str, int]:
    """Counts of the build a reader sees now, recomputed from the tables."""
    version = manager.store.versions.get_version(version_id)
    assert version is not None and version["current_build_id"] is not None
    counts = manager.store.rows.counts(version["current_build_id"])
    return {k: counts[k] for k in COUNT_KEYS}


def reset_notebook() -> None:
    """Forget the notebook's connection (stop its emulator) and its notices, as a fresh kernel
    would."""
    from d365sync_nb.notebook.state import state

    state.replace_connection(None)
    state.notices.clear()
