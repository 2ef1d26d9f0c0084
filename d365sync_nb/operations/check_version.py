"""``check-version``: the live version against the cache's, and whether a sync is due (the 3
version requests only; nothing is synced). The assistant tool ``d365fo_check_version`` answers
the same."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from d365sync_nb.automation.version_check import DEFAULT_STRATEGY, VersionStatus, check_version
from d365sync_nb.models import STRATEGY_DESCRIPTIONS
from d365sync_nb.operations.spec import Arg, Operation

T = TypeVar("T")
STRATEGY = Arg(
    "strategy",
    f"the strategy a sync would use (default {DEFAULT_STRATEGY.value}; it decides what data "
    "counts as missing), one of: " + ", ".join(s.value for s in STRATEGY_DESCRIPTIONS),
    enum=tuple(s.value for s in STRATEGY_DESCRIPTIONS),
    default=DEFAULT_STRATEGY.value,
)


@dataclass
class VersionStatusView:
    """What :func:`~d365sync_nb.automation.version_check.check_version` found."""

    status: VersionStatus
    title = None

    def text(self) -> str:
        s = self.status
        live = _label(s.global_version_id, s.application_version)
        cached = (
            _label(s.cached_version_id, s.cached_application_version)
            if s.cached_version_id is not None
            else "nothing complete yet"
        )
        verdict = "a sync is due" if s.due else "no sync is due"
        return f"Environment: {live}; cache: {cached}\n{verdict}: {s.reason}"

    def to_json(self) -> Any:
        return self.status.to_dict()

    def __str__(self) -> str:
        return self.text()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.text())


def call(manager: Any, strategy: str) -> VersionStatusView:
    return VersionStatusView(run_blocking(check_version(manager, strategy)))


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run a short coroutine to its end from synchronous code: on a new loop, or (when this
    thread already runs one, as a notebook cell does) on a new loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="d365sync-check") as pool:
        return pool.submit(asyncio.run, coro).result()


def _label(version_id: int | None, application: str | None) -> str:
    return f"version {version_id}" + (f" ({application})" if application else "")


OPERATION = Operation(
    name="check-version",
    python_name="check_version",
    summary="is a sync due? the live version against the cached one (3 requests, no sync)",
    doc="Ask the environment which version it runs (3 cheap requests, no sync) and compare it "
    "with the cache's current complete version: whether a sync is due and why (the version "
    "changed, the strategy needs data the cache lacks, or a failed sync may be retried).",
    args=(STRATEGY,),
    call=call,
    json_help="the live and cached versions, due, reason, retry_at as one JSON object",
)
