"""Keeping the cache current without watching it: version checks, the watch loop, schedules,
notifications (UI-free; the CLI, the magics and the tools are its surfaces).

- :mod:`.version_check`: the 3 version requests against the cache: is a sync due, and why.
- :mod:`.schedule`: ``--every 15m`` or ``--cron "0 2 * * *"`` (croniter).
- :mod:`.watch`: :class:`Watcher` checks, syncs, notifies and records each check.
- :mod:`.notify`: Teams (Adaptive Card), Slack, generic webhook JSON, JupyterLab.
"""

from d365sync_nb.automation.notify import Notice, NotifyTarget, parse_targets, set_jupyter_sink
from d365sync_nb.automation.schedule import Schedule, parse_duration
from d365sync_nb.automation.version_check import VersionStatus, check_version
from d365sync_nb.automation.watch import (
    Watcher,
    WatchTarget,
    event_text,
    exit_code,
    session_notice,
)

__all__ = [
    "Notice",
    "NotifyTarget",
    "Schedule",
    "VersionStatus",
    "WatchTarget",
    "Watcher",
    "check_version",
    "event_text",
    "exit_code",
    "parse_duration",
    "parse_targets",
    "session_notice",
    "set_jupyter_sink",
]
