"""``report``: one self-contained HTML file of a session, from the CLI and the core call."""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from d365sync_nb.models import PHASES, SyncStatus
from d365sync_nb.operations import BY_NAME
from d365sync_nb.views.format import count

CANARY = "canary-s3cret-4711"
REPORT = BY_NAME["report"]


class Resources(HTMLParser):
    """Every tag, and every attribute that makes a browser load something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.loads: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data", "action") and value:
                self.loads.append(value)
            if name == "style" and value and "url(" in value:
                self.loads.append(value)


def parse(text: str) -> Resources:
    parser = Resources()
    parser.feed(text)
    return parser


@pytest.fixture
async def upgraded(emulator, make_manager):
    """A manager with two sessions: version 1 synced, then (after an upgrade, with faults and
    throttling) version 2."""
    manager = make_manager(emulator.base_url)
    first = await manager.start(strategy="full")
    await manager.wait(first.session_id)
    emulator.configure(version=2, fault_rate=0.05, max_concurrency=4, retry_after=0.05)
    second = await manager.start(strategy="full")
    session = await manager.wait(second.session_id)
    assert session.status == SyncStatus.COMPLETED, session.error
    return manager, session


async def test_the_report_holds_the_session_and_loads_nothing(upgraded, tmp_path: Path) -> None:
    manager, session = upgraded
    path = tmp_path / "report.html"
    view = REPORT.run(manager, {"html": str(path)})
    text = path.read_text(encoding="utf-8")
    assert view.path == str(path) and view.title.endswith(str(path))
    assert text == view.html()

    found = parse(text)
    assert "script" not in found.tags and "link" not in found.tags and "iframe" not in found.tags
    assert found.loads and all(src.startswith("data:image/svg+xml;base64,") for src in found.loads)
    assert len(found.loads) == 3  # the Gantt, requests over time, latency
    assert not re.search(r"https?://(?!127\.0\.0\.1)", text.replace("http://www.w3.org", ""))

    # the summary, every phase, the http record, the verdict, failed requests, the diff
    assert session.session_id in text and "completed" in text
    assert all(f">{phase.value}<" in text for phase in PHASES)
    assert f"{count(session.http.requests)} requests" in text
    assert f">{count(session.http.retries)}<" in text
    assert view.diagnosis.verdict.split(":")[0] in text
    retried = view.diagnosis.retried_requests + view.diagnosis.failed_requests
    assert retried and all(r["request_id"] in text for r in retried)
    assert any(r["activity_id"] and r["activity_id"] in text for r in retried)
    assert view.diff is not None and view.diff.summary_text in text
    assert "running" not in text and "pending" not in text

    # the same session, the same bytes
    again = REPORT.run(manager, {"html": str(tmp_path / "again.html")})
    assert (tmp_path / "again.html").read_bytes() == path.read_bytes() == again.html().encode()


async def test_the_first_sync_has_no_diff_and_secrets_are_masked(emulator, make_manager) -> None:
    manager = make_manager(emulator.base_url)
    started = await manager.start(strategy="full")
    await manager.wait(started.session_id)
    view = REPORT.run(manager, {"session_id": started.session_id[:8]})
    assert view.diff is None and view.path is None
    assert "Changes since" not in view.html()
    leaky = type(view)(
        session=view.session.model_copy(update={"error": f"token {CANARY} refused"}),
        log=view.log,
        diagnosis=view.diagnosis,
        diff=None,
        environment=f"https://u:{CANARY}@contoso.example",
        secrets=frozenset({CANARY}),
    )
    for rendered in (leaky.html(), leaky.text(), str(leaky.to_json())):
        assert CANARY not in rendered


def test_cli_report_writes_the_file_without_the_secret(emulator, tmp_path: Path) -> None:
    where = ("--base-url", emulator.base_url, "--cache-dir", str(tmp_path / "cache"))
    env = {"D365FO_CLIENT_SECRET": CANARY, "PATH": ""}

    def d365sync(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "d365sync_nb", *args], capture_output=True, text=True,
            timeout=120, env={**env, "HOME": str(tmp_path)},
        )  # fmt: skip

    assert d365sync("sync", *where, "--strategy", "full").returncode == 0
    out = tmp_path / "session.html"
    done = d365sync("report", *where, "--html", str(out))
    assert done.returncode == 0, done.stderr
    assert f"written to {out}" in done.stderr
    text = out.read_text(encoding="utf-8")
    assert "D365 metadata sync report" in text and CANARY not in text
    assert CANARY not in done.stdout + done.stderr
    bad = d365sync("report", *where, "--html", str(tmp_path / "missing" / "x.html"))
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
