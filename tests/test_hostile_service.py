"""A hostile or broken service, through the real command (``d365sync_nb.cli.main``) and the
manager, against a real HTTP server on loopback (tests/hostile_service.py).

Each case ends in one line or a completed sync with its notes: no traceback, no hang (each test
has a timeout), no secret echoed, no formula cell, nothing written outside the target.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from d365sync_nb.cli import main
from d365sync_nb.errors import ConfigurationError
from tests.hostile_service import (
    Answer,
    HostileService,
    drip,
    endless_chunks,
    error,
    gzip_bomb,
    raw,
    slow,
)

ESCAPES = "\x1b[31mRED\x1b[0m \x1b]8;;http://evil.example\x07link\x1b]8;;\x07"


@pytest.fixture
def profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service: HostileService):
    """A profile ``hostile`` for the service with the given settings (short deadlines)."""

    def make(**settings: object) -> str:
        lines = ["[profiles.hostile]", f'base_url = "{service.base_url}"']
        lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
        path = tmp_path / "profiles.toml"
        path.write_text("\n".join(lines) + "\n")
        monkeypatch.setenv("D365SYNC_PROFILES", str(path))
        return "hostile"

    return make


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    @property
    def json(self) -> object:
        return json.loads(self.out.strip().splitlines()[-1])

    def line(self, words: str) -> str:
        """The line of stderr saying ``words``, checked: no traceback, no escape sequence
        anywhere, and the words within one line."""
        assert "Traceback" not in self.err, self.err
        assert "\x1b" not in self.err + self.out and "\r" not in self.err
        lines = [line for line in self.err.splitlines() if words in line]
        assert lines, self.err
        return lines[0]


@pytest.fixture
def d365sync(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    cache = str(tmp_path / "cache")

    def run(*args: str, where: tuple[str, ...] | None = None) -> Run:
        capsys.readouterr()
        try:
            code = main([*args, *(where or ()), "--cache-dir", cache])
        except SystemExit as exit_:  # argparse refuses an argument: usage line, exit 2
            code = int(exit_.code or 0)
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def base(service: HostileService) -> tuple[str, ...]:
    return ("--base-url", service.base_url)


# -- the honest baseline -------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_an_honest_answer_syncs(service, d365sync):
    done = d365sync("sync", "--json", where=base(service))
    assert done.code == 0, done.err
    result = done.json
    assert result["status"] == "completed"
    assert result["counts"]["labels"] == len(service.label_ids())
    # every request carries the service's headers (the aiohttp session's own) and its own id
    ids = [r.headers.get("x-ms-client-request-id") for r in service.requests]
    assert len(set(ids)) == len(ids) == result["http"]["requests"] and all(ids)
    for r in service.requests:
        assert r.headers.get("odata-version") == "4.0", r
        assert r.headers.get("accept") == "application/json", r
        assert r.headers.get("user-agent", "").startswith("python-httpx/"), r


# -- class 1: wrong shapes ---------------------------------------------------------------------
def _entities_with(service: HostileService, index: int, **fields: object) -> list[dict]:
    items = [dict(e) for e in service.entities]
    items[index].update(fields)
    return items


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("endpoint", "answer", "words"),
    [
        (
            "DataEntities",
            lambda s: {"value": _entities_with(s, 17, IsReadOnly="maybe")},
            "DataEntities item 17 (Name 'Entity17'): IsReadOnly must be a boolean, got 'maybe'",
        ),
        (
            "DataEntities",
            lambda s: {"value": _entities_with(s, 3, Name=None)},
            "DataEntities item 3: Name must be a string, got null",
        ),
        (
            "DataEntities",
            lambda s: {"value": ["a", "b"]},
            "DataEntities item 0: must be an object, got 'a'",
        ),
        (
            "DataEntities",
            lambda s: {"value": s.entities, "@odata.nextLink": 5},
            "DataEntities: @odata.nextLink must be a string, got 5",
        ),
        (
            "DataEntities",
            lambda s: {"value": {"Name": "X"}},
            "expected an OData collection with a 'value' list, got an object",
        ),
        (
            "PublicEntities",
            lambda s: {
                "value": [{**s.publics[0], "Properties": [{"Name": "F", "IsKey": "perhaps"}]}]
            },
            "PublicEntities item 0 (Name 'Public0'): Properties.0.IsKey must be a boolean",
        ),
        (
            "PublicEnumerations",
            lambda s: {"value": [{"Name": "E", "Members": "none"}]},
            "PublicEnumerations item 0 (Name 'E'): Members must be a list, got 'none'",
        ),
        (
            "GetApplicationVersion",
            lambda s: {"value": {"v": 1}},
            "GetApplicationVersion: the version must be a string, got an object",
        ),
    ],
)
def test_a_wrong_shape_is_one_line_naming_endpoint_item_and_field(
    service, d365sync, endpoint, answer, words
):
    service.override(endpoint, lambda r: Answer(body=answer(service)))
    done = d365sync("sync", where=base(service))
    assert done.code == 1
    done.line(words)
    history = d365sync("history", "--json", where=base(service))
    stored = [row["error"] for row in json.loads(history.out) if row["error"]]
    assert all("\n" not in e and words in e for e in stored), stored


@pytest.mark.timeout(60)
@pytest.mark.parametrize("value", [42, {"text": "x"}])
def test_a_label_of_the_wrong_shape_fails_that_label_not_the_sync(service, d365sync, value):
    bad = service.label_ids()[5]
    service.override(
        "Labels", lambda r: Answer(body={"Value": value}) if r.label_id == bad else None
    )
    done = d365sync("sync", "--json", where=base(service))
    assert done.code == 0, done.err
    assert done.json["status"] == "completed"
    assert "Traceback" not in done.err
    diagnosis = d365sync("diagnose", where=base(service))
    assert f"{bad} (shape)" in diagnosis.out
    assert "Value must be a string" in diagnosis.out


# -- class 2: malformed HTTP ---------------------------------------------------------------------
@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "data",
    [
        b"SPAM SPAM SPAM\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n{}",
    ],
    ids=["garbage-status-line", "100KB-header"],
)
def test_malformed_http_is_the_transport_error_after_retries(service, d365sync, data):
    service.override("GetApplicationVersion", lambda r: raw(data))
    done = d365sync("sync", where=base(service))
    assert done.code == 1
    done.line("no answer after 6 attempts")
    assert service.count("GetApplicationVersion") == 6


# -- class 3: no hang ----------------------------------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("writer", [drip(0.1), endless_chunks()], ids=["drip", "endless-chunks"])
def test_a_body_that_never_completes_ends_at_the_request_deadline(
    service, d365sync, profile, writer
):
    name = profile(request_deadline=1.5)
    service.override("DataEntities", lambda r: writer)
    done = d365sync("sync", where=("--profile", name))
    assert done.code == 1
    done.line("no complete answer within 1.5 s, the request's deadline")
    assert service.count("DataEntities") == 1  # the deadline is the request's, not per attempt
    diagnosis = d365sync("diagnose", where=("--profile", name))
    assert "request's deadline" in diagnosis.out and "requests past their deadline" in diagnosis.out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("writer", [slow(Answer(body={"Value": "late"}), 30), drip(0.1)],
                         ids=["silent", "drip"])  # fmt: skip
def test_a_label_without_an_answer_is_a_stall_within_the_read_timeout(
    service, d365sync, profile, writer
):
    """A single item has no per-read timer (its attempt's timer watches it): no complete
    answer within read_timeout is a stall, retried, then the one line of a stalled service."""
    stalled = service.label_ids()[3]
    service.override("Labels", lambda r: writer if r.label_id == stalled else None)
    name = profile(read_timeout=0.5, request_deadline=60)
    started = time.monotonic()
    done = d365sync("sync", where=("--profile", name))
    assert done.code == 1
    done.line("the service stopped answering: no data for 0.5 s, 3 times")
    assert time.monotonic() - started < 30  # 3 stalls of 0.5 s, not the label's 12 s deadline
    asked = [r for r in service.requests if r.endpoint == "Labels" and r.label_id == stalled]
    assert len(asked) == 3


@pytest.mark.timeout(60)
def test_a_next_link_that_changes_on_every_page_ends_at_the_page_bound(service, d365sync):
    service.override(
        "DataEntities",
        lambda r: Answer(
            body={
                "value": service.entities[:1],
                "@odata.count": 3,
                "@odata.nextLink": f"{service.base_url}/Metadata/DataEntities"
                f"?page={len(service.requests)}",
            }
        ),
    )
    done = d365sync("sync", where=base(service))
    assert done.code == 1
    done.line("still paging after 8 pages")  # 2 x 3 + 2, from the count


@pytest.mark.timeout(120)
def test_without_a_count_the_page_bound_is_generous_but_finite(service, d365sync):
    link = f"{service.base_url}/Metadata/DataEntities"
    service.override(
        "DataEntities",
        lambda r: Answer(
            body={
                "value": [],
                "@odata.nextLink": f"{link}?p={len(service.requests)}",
            }
        ),
    )
    done = d365sync("sync", where=base(service))
    assert done.code == 1
    done.line("still paging after 1,000 pages")


# -- class 4: the service's text -----------------------------------------------------------------
@pytest.mark.timeout(60)
def test_an_error_message_with_newlines_and_escapes_is_one_clean_line(service, d365sync):
    message = f"first line\nsecond line {ESCAPES}\r\n" + "x" * 5000
    service.override("DataEntities", lambda r: error(400, message))
    done = d365sync("sync", where=base(service))
    assert done.code == 1
    line = done.line("first line second line RED link")
    assert "xxx…" in line
    assert len(line) < 1000
    for command in (("history", "--json"), ("diagnose",), ("diagnose", "--json")):
        shown = d365sync(*command, where=base(service))
        assert "\x1b" not in shown.out and "second line" in shown.out
    history = json.loads(d365sync("history", "--json", where=base(service)).out)
    assert "\n" not in history[0]["error"] and "\x07" not in history[0]["error"]


# -- class 5: formula cells ----------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_no_csv_cell_the_package_writes_starts_a_formula(service, d365sync, tmp_path):
    formula = '=HYPERLINK("http://evil.example","click")'
    service.entities[0]["Name"] = "+cmd|' /C calc'!A0"
    service.entities[0]["EntityCategory"] = "-2+3"
    service.override(
        "Labels",
        lambda r: Answer(
            body={"Value": formula, "Language": "en-US"}, headers={"ms-dyn-aid": formula}
        ),
    )
    assert d365sync("sync", where=base(service)).code == 0
    outputs = [
        d365sync("entities", "--csv", where=base(service)).out,
        d365sync("labels", "--csv", where=base(service)).out,
        d365sync("requests", "--csv", where=base(service)).out,
    ]
    target = tmp_path / "export"
    assert d365sync("export", str(target), where=base(service)).code == 0
    outputs += [p.read_text() for p in target.glob("*.csv")]
    cells = [cell for text in outputs for row in csv.reader(io.StringIO(text)) for cell in row]
    assert any(cell == "'" + formula for cell in cells)  # neutralised, not dropped
    assert any(cell == "'+cmd|' /C calc'!A0" for cell in cells)
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    as_json = json.loads(d365sync("labels", "--json", where=base(service)).out)
    assert any(row.get("text") == formula or formula in row.values() for row in as_json)


# -- class 6: export through a planted link ------------------------------------------------------
@pytest.mark.timeout(60)
def test_export_never_writes_through_a_planted_link(service, d365sync, tmp_path):
    assert d365sync("sync", where=base(service)).code == 0
    target, outside = tmp_path / "export", tmp_path / "precious.txt"
    target.mkdir()
    outside.write_text("keep me")
    for name in (".entities.csv.partial", "fields.csv"):
        (target / name).symlink_to(outside)
    done = d365sync("export", str(target), where=base(service))
    assert done.code == 0, done.err
    assert outside.read_text() == "keep me"
    assert not (target / "fields.csv").is_symlink() and (target / "entities.csv").is_file()
    assert not (target / "entities.csv").is_symlink()
    assert "replaced 1 existing file(s)" in done.out
    again = d365sync("export", str(target), where=base(service))
    assert "replaced 7 existing file(s)" in again.out
    assert not [p for p in target.iterdir() if p.name.endswith(".partial") and not p.is_symlink()]


@pytest.mark.timeout(60)
def test_export_to_an_empty_path_is_refused(service, d365sync, tmp_path, monkeypatch):
    assert d365sync("sync", where=base(service)).code == 0
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    done = d365sync("export", "", where=base(service))
    assert done.code == 2  # refused by the command line: a value is required
    assert "DIR" in done.err and "Traceback" not in done.err
    assert set(tmp_path.iterdir()) == before
    from d365sync_nb.config import resolve_settings
    from d365sync_nb.sync.manager import SyncSessionManager

    settings = resolve_settings(base_url=service.base_url, cache_dir=tmp_path / "cache")
    manager = SyncSessionManager(settings)
    try:  # and by the core, for Python callers
        with pytest.raises(ConfigurationError, match="export directory is empty"):
            manager.explorer.export("  ")
    finally:
        manager.store.close()
    assert set(tmp_path.iterdir()) == before


# -- class 7: URL passwords ----------------------------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "url",
    [
        "http://u:x@CANARY@127.0.0.1:99999",
        "http://u:x/CANARY@127.0.0.1:99999",
        "http://u:x:CANARY@127.0.0.1:99999/path",
    ],
)
def test_a_url_password_is_never_echoed(service, d365sync, url):
    assert d365sync("sync", where=base(service)).code == 0
    for command, where in (
        (("sync",), ("--base-url", url)),
        (("diff", "--against", url), base(service)),
    ):
        done = d365sync(*command, where=where)
        assert done.code == 2
        assert "CANARY" not in done.err + done.out
        assert "Traceback" not in done.err and len(done.err.splitlines()) == 1, done.err


@pytest.mark.parametrize("url", ["http://u:x@CANARY@127.0.0.1:99999", "http://u:x/CANARY@h:0"])
def test_connect_as_the_magic_and_tools_do_never_echoes_a_url_password(url, tmp_path):
    from d365sync_nb import connect

    with pytest.raises(ConfigurationError) as caught:
        connect(base_url=url, cache_dir=tmp_path)
    assert "CANARY" not in str(caught.value) and "\n" not in str(caught.value)


def test_the_one_redaction_masks_to_the_last_at_of_the_authority():
    from d365sync_nb.errors import D365Error
    from d365sync_nb.redaction import redact_url

    assert redact_url("see http://u:a@b/c:d@host:1/x") == "see http://u:***@host:1/x"
    assert "CANARY" not in str(D365Error("boom", url="http://u:p@CANARY@h/"))
    label = "GET https://h:443/Metadata/Labels(Id='@SYS1',Language='en-us')"
    assert redact_url(label) == label  # a label id's '@' is not a password's end


# -- class 8: extreme dates ----------------------------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("flag", "value"),
    [("--until", "9999-12-31T23:00:00-05:00"), ("--since", "0001-01-01T00:00:00+05:00")],
)
def test_a_date_out_of_range_is_one_line(service, d365sync, flag, value):
    done = d365sync("history", flag, value, where=base(service))
    assert done.code == 2
    done.line("out of range")


# -- class 9: decompression bombs ----------------------------------------------------------------
@pytest.mark.timeout(60)
def test_a_gzip_bomb_is_refused_once_not_inflated_or_retried(service, d365sync, profile):
    name = profile(max_answer_mb=2)
    bomb = gzip_bomb(64)
    service.override("DataEntities", lambda r: bomb)
    done = d365sync("sync", where=("--profile", name))
    assert done.code == 1
    done.line("larger than 2 MB decoded; not retried")
    assert service.count("DataEntities") == 1


# -- class 10: the smaller ones ------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_a_redirect_is_named(service, d365sync):
    service.override(
        "GetApplicationVersion",
        lambda r: Answer(
            302,
            b"",
            headers={"Location": "https://login.example/sso", "Content-Type": "text/plain"},
        ),
    )
    done = d365sync("sync", where=base(service))
    assert done.code == 1
    done.line("redirected to https://login.example/sso (302)")


@pytest.mark.timeout(60)
def test_duplicated_entity_names_are_said_in_the_session_notes(service, d365sync):
    service.entities.append(dict(service.entities[0]))
    done = d365sync("sync", "--json", where=base(service))
    assert done.code == 0
    phases = done.json["phases"]
    assert "1 duplicated data entity name(s)" in phases["entities"]["note"]
    assert "Entity0 (x2)" in phases["entities"]["note"]


@pytest.mark.timeout(60)
def test_diff_against_a_cache_of_a_newer_schema_is_refused(service, d365sync, tmp_path):
    assert d365sync("sync", where=base(service)).code == 0
    other = tmp_path / "other.sqlite3"
    mine = next((tmp_path / "cache").glob("*.sqlite3"))
    other.write_bytes(mine.read_bytes())
    with sqlite3.connect(other) as conn:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    done = d365sync("diff", "--against", str(other), where=base(service))
    assert done.code == 1
    done.line("schema version 999, newer than this package knows")


def test_history_from_python_validates_its_limit(service, tmp_path):
    from d365sync_nb.config import resolve_settings
    from d365sync_nb.sync.manager import SyncSessionManager

    manager = SyncSessionManager(
        resolve_settings(base_url=service.base_url, cache_dir=tmp_path / "c")
    )
    try:
        with pytest.raises(ConfigurationError, match="limit must be an integer"):
            manager.get_session_history(limit="x")
        with pytest.raises(ConfigurationError, match="out of range"):
            manager.get_session_history(until="9999-12-31T23:00:00-05:00")
    finally:
        manager.store.close()


# -- one bad label never kills a sync ------------------------------------------------------------
@pytest.mark.timeout(90)
def test_three_refused_labels_of_many_complete_the_sync_and_are_named(service, d365sync, tmp_path):
    ids = service.label_ids()
    refused = {ids[3]: 500, ids[10]: 400, ids[20]: 403}
    assert len(refused) / len(ids) < 0.05
    service.override(
        "Labels",
        lambda r: (
            error(refused[r.label_id], f"no label {r.label_id}") if r.label_id in refused else None
        ),
    )
    done = d365sync("sync", "--json", where=base(service))
    assert done.code == 0, done.err
    result = done.json
    assert result["status"] == "completed"
    note = result["phases"]["labels"]["note"]
    assert "3 labels failed, kept as missing" in note
    for label, status in refused.items():
        assert f"{label} ({status})" in note
    # 500 is retried a bounded number of times; 400 and 403 are not retried
    asked = [r.label_id for r in service.requests if r.endpoint == "Labels"]
    assert asked.count(ids[3]) == 3 and asked.count(ids[10]) == 1 and asked.count(ids[20]) == 1
    diagnosis = d365sync("diagnose", "--json", where=base(service))
    report = json.loads(diagnosis.out)
    assert "3 labels failed" in report["verdict"]
    assert all(label in " ".join(report["findings"]) for label in refused)
    failed = [r for r in report["failed_requests"] if r["endpoint"] == "Labels"]
    assert sorted(r["status"] for r in failed) == [400, 403, 500]
    cache = next((tmp_path / "cache").glob("*.sqlite3"))
    with sqlite3.connect(cache) as conn:
        rows = conn.execute(
            "SELECT label_id FROM labels WHERE status = 'failed' ORDER BY label_id"
        ).fetchall()
    assert [r[0] for r in rows] == sorted(refused)
    # the next sync asks for the failed labels again, and only for them
    service.overrides.pop("Labels")
    before = service.count("Labels")
    again = d365sync("sync", "--strategy", "incremental", "--force", "--json", where=base(service))
    assert again.code == 0, again.err
    assert service.count("Labels") - before == 3


@pytest.mark.timeout(90)
def test_more_than_five_percent_of_labels_failing_fails_the_sync_in_one_line(service, d365sync):
    service.override(
        "Labels", lambda r: error(403, "forbidden") if r.label_id[-1] in "0123" else None
    )
    done = d365sync("sync", where=base(service))
    assert done.code == 1
    assert "label requests failed" in done.line("more than 5% of")


# -- no traceback in a real process --------------------------------------------------------------
@pytest.mark.timeout(90)
def test_a_wrong_shape_prints_no_traceback_from_a_real_process(service, tmp_path):
    service.override("DataEntities", lambda r: Answer(body={"value": [{"Name": None}]}))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "d365sync_nb",
            "sync",
            "--base-url",
            service.base_url,
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    said = [line for line in done.stderr.splitlines() if "Name must be a string" in line]
    assert len(said) == 1 and "DataEntities item 0" in said[0], done.stderr


# -- fidelity: real answers found in public material ---------------------------------------------
@pytest.mark.timeout(60)
def test_answers_seen_from_real_environments_sync_as_meant(service, d365sync):
    service.entities[0]["LabelId"] = "Customer master"  # plain text, not a label id
    field = service.publics[0]["Properties"][1]
    field.update({"TypeName": "Edm.Boolean", "DataType": "Enum"})
    service.publics[0]["NavigationProperties"] = [
        {
            "Name": "Currency",
            "RelatedEntity": "Public1",
            "Cardinality": "Single",
            "Constraints": [
                {
                    "@odata.type": "#Microsoft.Dynamics.Metadata.FixedConstraint",
                    "Property": "Field2",
                    "Value": 1,
                    "StringValue": "Yes",
                }
            ],
        }
    ]
    service.override("GetApplicationVersion", lambda r: Answer(body="10.0.41"))  # bare string
    done = d365sync("sync", "--json", where=base(service))
    assert done.code == 0, done.err
    asked = {r.label_id for r in service.requests if r.endpoint == "Labels"}
    assert "Customer master" not in asked and all(i.startswith("@") for i in asked)
    assert all(r.label_id is None or "Language='en-us'" in r.path for r in service.requests)
    entities = json.loads(d365sync("entities", "--json", where=base(service)).out)
    assert next(e for e in entities if e["data_entity"] == "Entity0")["label"] == "Customer master"
    fields = json.loads(d365sync("fields", "Public0", "--json", where=base(service)).out)
    assert next(f for f in fields if f["name"] == "Field1")["enum"] is None
    relations = json.loads(d365sync("relations", "Public0", "--json", where=base(service)).out)
    assert "'Yes'" in relations[0]["constraints"]
    assert "application 10.0.41" in done.json["phases"]["version_check"]["note"]


@pytest.mark.timeout(60)
def test_a_profile_language_in_the_services_casing_is_the_same_cache(service, d365sync, profile):
    name = profile(language="en-US")
    done = d365sync("sync", "--json", where=("--profile", name))
    assert done.code == 0, done.err
    labels = [r for r in service.requests if r.endpoint == "Labels"]
    assert labels and all("Language='en-us'" in unquote(r.path) for r in labels)
    assert done.json["counts"]["labels"] == len(service.label_ids())


@pytest.mark.timeout(90)
def test_a_second_ctrl_c_while_cancelling_ends_in_one_line_not_by_the_signal(service, tmp_path):
    service.override("Labels", lambda r: slow(service.honest(r), 0.3))
    proc = subprocess.Popen(
        [sys.executable, "-m", "d365sync_nb", "sync", "--base-url", service.base_url,
         "--cache-dir", str(tmp_path / "cache")],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "Started" in line:
                break
        while service.count("Labels") == 0:  # in the labels phase
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)  # the scenario: a second Ctrl-C 50 ms after the first
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        assert proc.wait(60) == 130, rest
    finally:
        proc.kill()
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest
    assert "cancelled" in rest


@pytest.mark.timeout(60)
@pytest.mark.parametrize("debug", [False, True])
def test_the_package_log_prints_a_traceback_only_when_debugging(debug):
    script = (
        "import logging, d365sync_nb\n"
        f"if {debug}:\n"
        "    logging.basicConfig()\n"
        "    logging.getLogger('d365sync_nb').setLevel(logging.DEBUG)\n"
        "try:\n"
        "    raise ValueError('bad\\nvalue \\x1b[31m')\n"
        "except ValueError as exc:\n"
        "    logging.getLogger('d365sync_nb.sync.runner').error('failed', exc_info=exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    if debug:
        assert "Traceback" in done.stderr and "ValueError: bad" in done.stderr
    else:
        assert done.stderr == "d365sync: error: failed (ValueError: bad value)\n"


@pytest.mark.timeout(60)
def test_a_500_is_retried_a_bounded_number_of_times(service, d365sync):
    service.override("DataEntities", lambda r: error(500, "boom"))
    done = d365sync("sync", where=base(service))
    assert done.code == 1
    assert "500 Internal Server Error: boom" in done.line("500 Internal Server Error")
    assert service.count("DataEntities") == 3
    answers = iter([error(500, "once"), None])
    service.override("PublicEnumerations", lambda r: next(answers, None))
    service.overrides.pop("DataEntities")
    healed = d365sync("sync", "--json", where=base(service))
    assert healed.code == 0 and healed.json["status"] == "completed"


@pytest.mark.timeout(90)
def test_a_service_refusing_every_label_fails_the_sync_early(tmp_path, capsys):
    server = HostileService(entities=700).start()
    try:
        server.override("Labels", lambda r: error(400, "no labels today"))
        code = main(["sync", "--base-url", server.base_url, "--cache-dir", str(tmp_path)])
        err = capsys.readouterr().err
        assert code == 1
        assert (
            "labels: 100 in a row (of 3,503) label requests failed (100 labels failed (HTTP 400"
            in err
        )
        assert server.count("Labels") < 300  # not 5% of the labels, each retried
    finally:
        server.stop()


def test_service_text_is_one_printable_bounded_line():
    from d365sync_nb.explorer.table import csv_cell
    from d365sync_nb.text import one_line

    text = "a\nb\r\n\tc \x1b[2J\x1b]0;title\x07\x1b]8;;http://x\x1b\\d\x9b31m\u202eevil\x00"
    assert one_line(text) == "a b c d evil"
    assert one_line("x" * 50, 10) == "x" * 9 + "…"
    assert one_line("plain text") == "plain text"
    for cell in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert csv_cell(cell) == "'" + cell
    assert csv_cell("Customers") == "Customers" and csv_cell(-1) == -1 and csv_cell(None) == ""
