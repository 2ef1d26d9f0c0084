"""``D365Sync``: the notebook surface's one config object.

``%load_ext d365sync_nb`` registers it with the shell, so ``%config D365Sync`` lists it and
``%config D365Sync.default_strategy = "incremental"`` sets it; the Python functions of
:mod:`d365sync_nb.notebook` read the same instance (``D365Sync.instance()``) with or without
the magics. ``progress_interval`` is applied to the connected manager by
:mod:`~d365sync_nb.notebook.state`, which observes it (``throttle_interval``, its old name,
still sets it, with a DeprecationWarning).
"""

from __future__ import annotations

import warnings
from typing import Any

from traitlets import Bool, Enum, Float, Int, TraitError, Unicode, observe, validate
from traitlets.config import SingletonConfigurable

from d365sync_nb.connection import SCALES
from d365sync_nb.errors import D365SyncError
from d365sync_nb.models import SyncStrategy
from d365sync_nb.notebook.frontend import DISPLAY_MODES


class D365Sync(SingletonConfigurable):
    """Defaults of ``%d365sync`` and of the :mod:`d365sync_nb.notebook` functions."""

    default_strategy = Unicode(
        "full", help="strategy used by start when --strategy is not given"
    ).tag(config=True)
    cache_dir = Unicode(
        None, allow_none=True, help="cache directory used by connect when --cache-dir is not given"
    ).tag(config=True)
    progress_interval = Float(
        0.1, help="seconds between progress repaints (phase transitions always repaint)"
    ).tag(config=True)
    throttle_interval = Float(
        0.1, help="deprecated name of progress_interval (it is not about HTTP throttling)"
    ).tag(config=True)
    display = Enum(
        DISPLAY_MODES,
        default_value="auto",
        help="'widget' panel, 'text', or 'auto' (widgets when the frontend renders them)",
    ).tag(config=True)
    demo_scale = Enum(SCALES, default_value="small", help="--demo dataset").tag(config=True)
    demo_latency_ms = Float(20.0, help="--demo latency per request, in milliseconds").tag(
        config=True
    )
    history_limit = Int(20, help="sessions shown by history without --limit").tag(config=True)
    notify_background = Bool(
        True,
        help="tell when a session started in the background (start without --wait) ends: a "
        "JupyterLab notification (with ipylab), and a line in %d365sync panel",
    ).tag(config=True)

    @validate("default_strategy")
    def _check_strategy(self, proposal: Any) -> str:
        try:
            return SyncStrategy.parse(proposal["value"]).value
        except D365SyncError as exc:
            raise TraitError(str(exc)) from None

    @validate("progress_interval", "throttle_interval")
    def _check_progress_interval(self, proposal: Any) -> float:
        if proposal["value"] < 0:
            raise TraitError(f"{proposal['trait'].name} must be 0 or more")
        return float(proposal["value"])

    @observe("throttle_interval")
    def _old_progress_interval(self, change: Any) -> None:
        if change["new"] != self.progress_interval:  # set by a user, not mirrored below
            warnings.warn(
                "D365Sync.throttle_interval is deprecated: use D365Sync.progress_interval",
                DeprecationWarning,
                stacklevel=2,
            )
            self.progress_interval = change["new"]

    @observe("progress_interval")
    def _mirror_progress_interval(self, change: Any) -> None:
        self.throttle_interval = change["new"]  # old readers see the value in force

    @validate("demo_latency_ms")
    def _check_latency(self, proposal: Any) -> float:
        if proposal["value"] < 0:
            raise TraitError("demo_latency_ms must be 0 or more")
        return float(proposal["value"])

    @validate("history_limit")
    def _check_history_limit(self, proposal: Any) -> int:
        if proposal["value"] < 1:
            raise TraitError("history_limit must be at least 1")
        return int(proposal["value"])
