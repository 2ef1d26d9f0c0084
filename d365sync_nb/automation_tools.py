"""The assistant tool that says whether a sync is due: ``d365fo_check_version``.

Like the other tools (:mod:`d365sync_nb.tools`): ``async def`` returning a JSON-ready dict,
failure as a value, secrets redacted. It sends the 3 version requests only (no sync), so an
assistant can check as often as it likes and decide when to call ``d365fo_start_sync``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from d365sync_nb.automation.version_check import DEFAULT_STRATEGY, check_version
from d365sync_nb.connection import registry
from d365sync_nb.models import SyncStrategy
from d365sync_nb.operations.check_version import STRATEGY
from d365sync_nb.tools import Profile, Result, ToolSpec, as_tool

# declared once (operations/check_version.py); the enum kept in the schema for assistants
CheckStrategy = Annotated[
    str, Field(description=STRATEGY.help, json_schema_extra={"enum": list(STRATEGY.enum or ())})
]


@as_tool
async def d365fo_check_version(
    strategy: CheckStrategy = DEFAULT_STRATEGY.value, profile: Profile = None
) -> Result:
    """The live version against the cached one, and whether a sync is due (3 requests)."""
    conn = registry.connection(profile)
    status = await check_version(conn.manager, SyncStrategy.parse(strategy))
    last = conn.manager.store.checks.latest()
    if status.due:
        todo = (
            f"A sync is due ({status.reason}): call d365fo_start_sync with "
            f"strategy='{status.strategy}'."
        )
    elif status.running_session_id:
        todo = (
            f"A sync is running ({status.running_session_id}): follow it with "
            "d365fo_get_sync_progress."
        )
    elif status.retry_at is not None:
        todo = f"Wait: {status.reason}."
    else:
        todo = f"Nothing to do: {status.reason}."
    return {
        "success": True,
        **status.to_dict(),
        "last_watch_check": last.to_dict() if last else None,
        "message": todo,
    }


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "d365fo_check_version",
        "Check whether a sync is due",
        "Ask the environment which version it runs (3 cheap requests, no sync) and compare it "
        "with the cache's current complete version. Answers global_version_id and "
        "application_version (live), cached_version_id and cached_application_version, "
        "version_changed, due (true when the version changed, the strategy needs data the "
        "cache lacks, or a failed sync may be retried), reason, retry_at (when a failed sync "
        "backs off), running_session_id, and the last check of a running watch. Call "
        "d365fo_start_sync when due is true.",
        d365fo_check_version,
        read_only=True,
    ),
)

__all__ = ["TOOLS", "d365fo_check_version"]
