"""``report``: a session in one self-contained HTML file (``--html FILE``) to share or send to
support: summary, phases' Gantt, diagnosis, charts, http record, failed requests, upgrade diff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from d365sync_nb import diagnostics
from d365sync_nb.errors import ConfigurationError, D365SyncError
from d365sync_nb.explorer import Diff
from d365sync_nb.models import SyncSession, SyncStatus
from d365sync_nb.operations.common import SESSION_ID
from d365sync_nb.operations.spec import Arg, Operation
from d365sync_nb.redaction import environment_secrets, redact_url
from d365sync_nb.views.report import SessionReport


def upgrade_diff(manager: Any, session: SyncSession) -> Diff | None:
    """What changed from the version synced before to this session's, when it completed and
    such a version is in the cache (a sync after an upgrade); else None."""
    if session.status != SyncStatus.COMPLETED or session.global_version_id is None:
        return None
    try:
        return manager.explorer.diff(None, session.global_version_id)
    except D365SyncError:  # the first version synced, or its build is gone
        return None


def call(manager: Any, session_id: str | None, html: str | None) -> SessionReport:
    session, log = diagnostics.session_with_log(manager, manager.find_session_id(session_id))
    settings = manager.settings
    secret = settings.client_secret.get_secret_value() if settings.client_secret else ""
    report = SessionReport(
        session=session,
        log=log,
        diagnosis=diagnostics.diagnose(session, log),
        diff=upgrade_diff(manager, session),
        environment=redact_url(settings.base_url),
        secrets=frozenset({secret, *environment_secrets()}),
    )
    if html is not None:
        path = Path(html).expanduser()
        try:
            path.write_text(report.html(), encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"--html: cannot write {path}: {exc.strerror}") from None
        report.path = str(path)
    return report


OPERATION = Operation(
    name="report",
    summary="a session in one self-contained HTML file to share (--html FILE)",
    doc="A session (the latest when no id) as one self-contained HTML file to share or send "
    "to support: the summary, the phases' Gantt, the diagnosis, the charts of its requests "
    "(inline SVG), the http record, the last failed requests with their activity ids and, "
    "for a sync after an upgrade, the diff summary. No secret, nothing fetched, the same "
    "bytes for the same session. Without html: the summary as text (in a notebook, the "
    "report itself).",
    args=(SESSION_ID, Arg("html", "write the report to this HTML file", metavar="FILE")),
    call=call,
    json_help="the session, its diagnosis and diff summary as JSON (and the file's path)",
)
