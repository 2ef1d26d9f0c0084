"""The Teams notification's Adaptive Card, parsed and validated by Microsoft's own SDK.

tests/test_watch.py checks the card's shape; here the ``adaptivecards`` npm package (3.0.6,
installed under tests/adaptivecards by ``make test``) parses each card the watch can send, at
the version the card declares, and must report no issue: no unknown element type, no invalid
property value. A card with a known mistake shows that the SDK does report them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from d365sync_nb.automation.notify import Notice, teams_payload

CARDS = Path(__file__).parent / "adaptivecards"
NODE = shutil.which("node")
SESSION = {
    "session_id": "5d0c0e8e-2f7a-4a57-9a53-8f1d3c1b2a10",
    "status": "completed",
    "strategy": "incremental",
    "duration_seconds": 241.5,
    "counts": {"entities": 101},
}
NOTICES = [
    Notice(
        event="version_changed",
        environment="https://contoso.operations.dynamics.com",
        global_version_id=2,
        application_version="10.0.42.2150",
        session=SESSION,
        changes={"summary": "+4 entities, -3; 5 fields changed", "from_global_version_id": 1},
        verdict="throttled: 7 x 429 (Retry-After honoured)",
    ),
    Notice(event="sync_completed", environment="http://127.0.0.1:8080", session=SESSION),
    Notice(
        event="sync_failed",
        environment="https://contoso.operations.dynamics.com",
        global_version_id=3,
        session={**SESSION, "status": "failed"},
        error="Labels: 500 Internal Server Error after 3 attempts",
        verdict="failed in labels: the service answered 500",
        activity_id="0f5c2a4e-aaaa-4bbb-8ccc-123456789abc",
    ),
    Notice(event="sync_cancelled", environment="http://127.0.0.1:8080", session=SESSION),
]


def validate(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the SDK says of each card: its version, its number of body items, its issues."""
    if NODE is None:
        pytest.skip("node not found: install nodejs and npm (apt-get install nodejs npm)")
    if not (CARDS / "node_modules" / "adaptivecards").is_dir():
        pytest.skip(f"the adaptivecards SDK is not installed: npm ci --prefix {CARDS} (make test)")
    done = subprocess.run(
        [NODE, str(CARDS / "validate.js")],
        input=json.dumps(cards),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_teams_card_parses_and_validates_with_the_adaptivecards_sdk() -> None:
    cards = [teams_payload(n)["attachments"][0]["content"] for n in NOTICES]
    results = validate(cards)
    assert [r["issues"] for r in results] == [[] for _ in cards]
    assert [r["version"] for r in results] == ["1.4"] * len(cards)
    assert [r["items"] for r in results] == [len(c["body"]) for c in cards]  # nothing dropped


def test_the_sdk_reports_what_is_wrong_with_a_card() -> None:
    card = teams_payload(NOTICES[0])["attachments"][0]["content"]
    card["body"][0]["weight"] = "Heavy"  # not a TextBlock weight
    card["body"].append({"type": "Marquee", "text": "x"})  # not an element type
    (result,) = validate([card])
    assert len(result["issues"]) == 2, result
    assert any("Heavy" in issue and "weight" in issue for issue in result["issues"])
    assert any("Marquee" in issue for issue in result["issues"])
