"""The assistant tool that says whether a sync is due: ``d365fo_check_version``.

Like the other tools (:mod:`d365sync_nb.tools`): ``async def`` returning a JSON-ready dict,
failure as a value, secrets redacted. It sends the 3 version requests only (no sync), so an
assistant can check as often as it likes and decide when to call ``d365fo_start_sync``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from d365sync_nb.automation.version_check import DEFAULT_STRATEGY, check_version
from d365sync_nb.connection import registry
from d365sync_nb.models import SyncStrategy
from d365sync_nb.operations.check_version import STRATEGY
from d365sync_nb.tool_results import ToolAnswer
from d365sync_nb.tools import Profile, Result, ToolSpec, as_tool

# declared once (operations/check_version.py); the enum kept in the schema for assistants
CheckStrategy = Annotated[
    str, Field(description=STRATEGY.help, json_schema_extra={"enum": list(STRATEGY.enum or ())})
]


class CheckVersionAnswer(ToolAnswer):
    """What d365fo_check_version answers (VersionStatus's fields, and the last watch check)."""

    global_version_id: int | None = Field(None, description="The version the environment runs")
    application_version: str | None = None
    platform_version: str | None = None
    modules: int | None = None
    cached_version_id: int | None = Field(
        None, description="The cache's current complete version (null: none yet)"
    )
    cached_application_version: str | None = None
    version_changed: bool | None = None
    due: bool | None = Field(None, description="True when a sync should start now")
    reason: str | None = Field(None, description="Why a sync is due, or not")
    strategy: str | None = None
    failures: int | None = Field(None, description="Consecutive failed sessions of the version")
    retry_at: str | None = Field(None, description="When a failed sync may be retried")
    running_session_id: str | None = None
    last_watch_check: dict[str, Any] | None = Field(
        None, description="The last check a watch recorded (time, action, version, session)"
    )


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
        result=CheckVersionAnswer,
    ),
)

__all__ = ["TOOLS", "d365fo_check_version"]
