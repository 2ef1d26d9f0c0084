"""The assistant tools' answers as pydantic models: one per tool, each naming its properties.

The MCP server publishes each model's JSON schema as the tool's ``outputSchema`` and returns the
tool's answer as ``structuredContent`` (and the same JSON as text). Every answer validates,
a failure included: ``success`` is false, ``error`` says what went wrong (one line) and ``tool`` /
``arguments`` echo the call, so every field but ``success`` is optional. Nested records that
other modules own (a session's full detail, an entity's fields) stay JSON objects here and are
described, not restated.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ToolAnswer(BaseModel):
    """What every answer has: success, a sentence, and on failure the error and the call."""

    success: bool = Field(description="False when the tool failed; 'error' then says why")
    message: str | None = Field(None, description="One sentence on the outcome")
    error: str | None = Field(None, description="On failure: what went wrong and what to do")
    tool: str | None = Field(None, description="On failure: the tool that was called")
    arguments: dict[str, Any] | None = Field(None, description="On failure: the arguments given")
    notice: str | None = Field(None, description="An argument that was adjusted (e.g. clamped)")
    environment: str | None = Field(None, description="The environment's base URL")


class SessionSummary(BaseModel):
    """A few lines' worth of one session."""

    session_id: str
    status: str = Field(description="running, completed, failed or cancelled")
    strategy: str
    global_version_id: int | None = None
    progress_percent: float
    current_phase: str | None = None
    estimated_remaining_seconds: float | None = None
    is_running: bool
    started_at: str | None = None
    duration_seconds: float
    initiated_by: str | None = None


class StartAnswer(ToolAnswer):
    session_id: str | None = Field(None, description="The new session; null when up to date")
    global_version_id: int | None = None
    strategy: str | None = None
    up_to_date: bool | None = None
    synced_at: str | None = None
    instructions: str | None = Field(None, description="What to call next")
    waited: WaitAnswer | None = Field(
        None, description="With wait_seconds: the wait's outcome (as d365fo_wait_sync answers)"
    )


class ProgressAnswer(ToolAnswer):
    summary: SessionSummary | None = None
    session: dict[str, Any] | None = Field(
        None,
        description="Full detail: phases (items done/total, status, note, error), counts, "
        "timestamps, error, and http (requests, retries, answers by status, throttling)",
    )
    diagnosis: str | None = Field(None, description="A finished session: why slow or failed")


class WaitAnswer(ProgressAnswer):
    session_id: str | None = None
    finished: bool | None = Field(None, description="True when the session has ended")
    still_running: bool | None = Field(None, description="True when the timeout passed first")
    waited_seconds: float | None = None
    verdict: str | None = Field(None, description="A finished session's diagnosis verdict")
    http: dict[str, Any] | None = Field(None, description="The session's http record")


class CancelAnswer(ToolAnswer):
    session_id: str | None = None
    status: str | None = None


class ListSummary(BaseModel):
    has_running_sessions: bool
    latest_session_id: str | None = None
    message: str


class ListAnswer(ToolAnswer):
    active_sessions: list[SessionSummary] | None = None
    total_count: int | None = None
    running_count: int | None = None
    summary: ListSummary | None = None


class HistorySummary(BaseModel):
    successful_syncs: int
    failed_syncs: int
    cancelled_syncs: int
    running_syncs: int
    average_duration_seconds: float | None = None
    last_successful_sync_at: str | None = None


class HistoryAnswer(ToolAnswer):
    limit: int | None = None
    history: list[dict[str, Any]] | None = Field(
        None, description="Sessions, newest first: summary fields, counts, requests, http, error"
    )
    total_count: int | None = None
    recorded_count: int | None = None
    summary: HistorySummary | None = None
    filters: dict[str, Any] | None = None
    when_to_sync: str | None = Field(
        None, description="When syncs of this environment go best (hours of day, UTC), or why "
        "there are too few sessions to tell"
    )


class SearchHit(BaseModel):
    kind: str
    name: str
    label: str | None = None
    parent: str | None = None


class SearchAnswer(ToolAnswer):
    version: str | None = None
    hits: list[SearchHit] | None = None
    total_count: int | None = None
    more: bool | None = Field(None, description="More hits than the limit")


class DescribeAnswer(ToolAnswer):
    entity: str | None = None
    version: str | None = Field(None, description="The cached version, e.g. 'version 2 (10.0.42)'")
    language: str | None = Field(None, description="The language of the label texts")
    data_entity: dict[str, Any] | None = None
    keys: list[str] | None = None
    fields: list[dict[str, Any]] | None = None
    relations: list[dict[str, Any]] | None = None
    actions: list[dict[str, Any]] | None = None
    truncated: dict[str, int] | None = Field(None, description="Items left out, per part")


class DiffAnswer(ToolAnswer):
    from_: int | None = Field(None, alias="from", description="The older global version id")
    to: int | None = Field(None, description="The newer global version id")
    from_version: dict[str, Any] | None = None
    to_version: dict[str, Any] | None = None
    summary: dict[str, Any] | None = Field(None, description="Per kind: added, removed, changed")
    summary_text: str | None = None
    changes: list[dict[str, Any]] | None = Field(
        None, description="The first changes: kind, parent, name, change, attribute, before, after"
    )
    truncated: int | None = Field(None, description="Changes left out beyond the limit")
    total_count: int | None = None
    label_changes: list[dict[str, Any]] | None = Field(
        None,
        description="Changed label texts of labels both versions use: parent (the label id), "
        "attribute (the language), before and after (the texts)",
    )
    label_changes_truncated: int | None = Field(
        None, description="Label changes left out beyond the limit"
    )

    model_config = {"populate_by_name": True}


StartAnswer.model_rebuild()
