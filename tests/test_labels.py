"""Labels as data: several languages per sync, translation gaps, label texts per version.

One environment (the emulator, loopback HTTP, a real SQLite cache) is synced in en-us and de,
then incrementally with da added, then upgraded to release 2 and synced in full in all three.
Every expectation comes from the emulator's dataset (its texts per language, its untranslated
ids, its record of the label texts release 2 changed), never from the explorer itself.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from d365sync_nb import connect, metadata_tools
from d365sync_nb.connection import Connection, default_connection
from d365sync_nb.emulator import Emulator, build_dataset
from d365sync_nb.errors import ConfigurationError
from d365sync_nb.metadata import is_label_id
from d365sync_nb.models import SyncSession

V1 = build_dataset("small", 1)
V2 = build_dataset("small", 2)
LANGUAGES = ("en-us", "de", "da")
LABEL_CHANGES = [c for c in V2.changes if c["kind"] == "label"]


@dataclass
class Synced:
    cache_dir: Path
    url: str
    first: SyncSession  # full, en-us and de
    added: SyncSession  # incremental, da added
    added_label_requests: int  # what the emulator counted for the incremental sync
    added_log: list[dict[str, Any]]  # its request log
    upgrade: SyncSession  # release 2, full, three languages


async def _sync(conn: Connection, strategy: str, languages: str | None) -> SyncSession:
    result = await conn.manager.start(strategy=strategy, languages=languages)
    assert result.session_id, result.message
    session = await conn.manager.wait(result.session_id)
    assert session.status.value == "completed", session.error
    return session


def fetchable(dataset: Any) -> set[str]:
    return {i for i in dataset.label_ids_referenced() if is_label_id(i)}


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synced]:
    cache_dir = tmp_path_factory.mktemp("labels-cache")
    emulator = Emulator(scale="small")
    with emulator as url, connect(base_url=url, cache_dir=cache_dir) as conn:
        first = asyncio.run(_sync(conn, "full", "en-US, de"))
        emulator.reset_stats()
        added = asyncio.run(_sync(conn, "incremental", "en-us,de,da"))
        labels_asked = emulator.stats()["requests_by_endpoint"].get("Labels", 0)
        log = conn.manager.get_request_log(added.session_id)
        emulator.configure(version=2)  # the environment's upgrade
        upgrade = asyncio.run(_sync(conn, "full", ",".join(LANGUAGES)))
        yield Synced(cache_dir, url, first, added, labels_asked, log, upgrade)


@pytest.fixture
def conn(synced: Synced) -> Iterator[Connection]:
    with connect(base_url=synced.url, cache_dir=synced.cache_dir) as c:
        yield c


def cli(synced: Synced, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "d365sync_nb", *args]
    command += ["--base-url", synced.url, "--cache-dir", str(synced.cache_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def expected_coverage(dataset: Any, language: str) -> dict[str, int]:
    return {**dataset.expected_label_counts(language), "failed": 0, "not_synced": 0}


# -- the sync ------------------------------------------------------------------------------
def test_a_sync_in_two_languages_counts_id_language_pairs(synced: Synced) -> None:
    labels = synced.first.phases["labels"]
    assert labels.items_processed == labels.items_total == 2 * len(fetchable(V1))
    assert labels.note == f"fetched en-us {len(fetchable(V1)):,}, de {len(fetchable(V1)):,}"
    assert synced.first.http.by_language == {"en-us": len(fetchable(V1)),
                                             "de": len(fetchable(V1))}  # fmt: skip


def test_adding_a_language_fetches_only_that_languages_labels(synced: Synced) -> None:
    n = len(fetchable(V1))
    assert synced.added_label_requests == n  # the emulator's own count: da only
    assert synced.added.http.by_language == {"da": n}
    labels = synced.added.phases["labels"]
    assert labels.items_processed == labels.items_total == n
    assert f"{2 * n:,} cached labels reused (en-us {n:,}, de {n:,}, da 0)" in (labels.note or "")
    logged = [r for r in synced.added_log if r["endpoint"] == "Labels"]
    assert len(logged) == n and {r["language"] for r in logged} == {"da"}
    assert all(r["language"] is None for r in synced.added_log if r["endpoint"] != "Labels")


def test_a_language_already_synced_is_up_to_date(conn: Connection) -> None:
    result = asyncio.run(conn.manager.start(strategy="incremental", languages="de,en-us"))
    assert result.up_to_date and result.session_id is None


def test_languages_are_checked_in_one_line(conn: Connection) -> None:
    with pytest.raises(ConfigurationError, match="languages: 'de;drop' is not a language tag"):
        asyncio.run(conn.manager.start(strategy="full", languages="en-us,de;drop"))


# -- the explorer, from Python -------------------------------------------------------------
def test_label_counts_per_language_of_each_release(conn: Connection) -> None:
    explorer = conn.manager.explorer
    for version, dataset in ((1, V1), (2, V2)):
        table = explorer.coverage(version=version)
        rows = {r["language"]: r for r in table.records()}
        assert sorted(rows) == sorted(LANGUAGES)
        for language in LANGUAGES:
            row = rows[language]
            assert {k: row[k] for k in ("found", "empty", "missing", "failed", "not_synced")} \
                == expected_coverage(dataset, language), (version, language)  # fmt: skip
            assert row["label_ids"] == len(dataset.label_ids_referenced())
    assert rows["de"]["found"] < rows["en-us"]["found"] == rows["da"]["found"]


def test_labels_in_a_language_and_the_untranslated_ones(conn: Connection) -> None:
    explorer = conn.manager.explorer
    de = {r["label_id"]: r for r in explorer.labels(language="DE").records()}
    assert {i: r["text"] for i, r in de.items()} == {
        i: V2.label_text(i, "de") for i in V2.label_ids_referenced()
    }
    assert {r["language"] for r in de.values()} == {"de"}
    untranslated = explorer.labels(language="de", untranslated=True)
    assert [r["label_id"] for r in untranslated.records()] == sorted(V2.untranslated("de"))
    assert all(r["reference_text"] == V2.labels[r["label_id"]] for r in untranslated.records())
    assert {r["status"] for r in untranslated.records()} == {"missing", "empty"}
    assert len(explorer.labels(language="da", untranslated=True)) == 0
    assert len(explorer.labels(language="de", untranslated=True, version=1)) == len(
        V1.untranslated("de")
    )
    with pytest.raises(ConfigurationError, match="compares a language with en-us"):
        explorer.labels(untranslated=True)


def test_fields_with_one_label_column_per_language(conn: Connection) -> None:
    pe = V2.public_entities[0]
    table = conn.manager.explorer.fields(pe["EntitySetName"], language=["en-us", "de", "da"])
    names = table.column_names
    assert names[names.index("label_id") + 1 : names.index("enum")] == [
        "label_en-us", "label_de", "label_da"
    ]  # fmt: skip
    for row, prop in zip(table.records(), pe["Properties"], strict=True):
        label_id = prop["LabelId"]
        for language in LANGUAGES:
            expected = V2.label_text(label_id, language) if label_id else None
            assert row[f"label_{language}"] == expected, (prop["Name"], language)
    german = conn.manager.explorer.fields(pe["Name"], language="de").records()
    assert [r["label"] for r in german] == [r["label_de"] for r in table.records()]


def test_diff_reports_exactly_the_label_texts_the_release_changed(conn: Connection) -> None:
    diff = conn.manager.explorer.diff()
    labels = [c for c in diff.changes if c["kind"] == "label"]
    assert labels == LABEL_CHANGES  # exact, in order: id, then language
    assert {c["attribute"] for c in labels} == set(LANGUAGES)
    assert diff.summary["label"]["changed"] == len(LABEL_CHANGES)
    assert diff.summary_text.endswith(f"; {len(LABEL_CHANGES)} label texts changed")
    structural = [c for c in diff.changes if c["kind"] != "label"]
    assert sorted(map(json.dumps, structural)) == sorted(
        json.dumps(c) for c in V2.changes if c["kind"] != "label"
    )


def test_each_version_keeps_its_own_texts_and_shares_the_same_ones(conn: Connection) -> None:
    explorer = conn.manager.explorer
    changed = LABEL_CHANGES[0]
    old = explorer.labels(changed["name"], language=changed["attribute"], version=1).records()
    new = explorer.labels(changed["name"], language=changed["attribute"], version=2).records()
    assert [r["text"] for r in old if r["label_id"] == changed["name"]] == [changed["before"]]
    assert [r["text"] for r in new if r["label_id"] == changed["name"]] == [changed["after"]]
    rows = conn.manager.store.db.rows
    (texts,) = rows("SELECT count(*) FROM label_texts", ())
    pairs = {(i, lang) for d in (V1, V2) for i in d.label_ids_referenced() for lang in LANGUAGES}
    # one text per (id, language) used, plus one for each changed text: never one per version
    assert texts[0] == len(pairs) + len(LABEL_CHANGES)


# -- the CLI -------------------------------------------------------------------------------
def test_cli_coverage_untranslated_fields_and_label_diff(synced: Synced) -> None:
    coverage = cli(synced, "coverage", "--json")
    assert coverage.returncode == 0, coverage.stderr
    got = {r["language"]: r for r in json.loads(coverage.stdout)}
    for language in LANGUAGES:
        assert got[language]["missing"] == V2.expected_label_counts(language)["missing"]
        assert got[language]["found"] == V2.expected_label_counts(language)["found"]
    untranslated = cli(synced, "labels", "--untranslated", "--language", "de", "--csv")
    assert untranslated.returncode == 0, untranslated.stderr
    lines = untranslated.stdout.splitlines()
    assert lines[0] == "label_id,language,status,reference_language,reference_text"
    # (a cell starting with @ is written as '@..., so a spreadsheet shows it, never runs it)
    ids = [line.split(",")[0].removeprefix("'") for line in lines[1:]]
    assert ids == sorted(V2.untranslated("de"))
    as_json = cli(synced, "labels", "--untranslated", "--language", "de", "--json")
    assert [r["label_id"] for r in json.loads(as_json.stdout)] == sorted(V2.untranslated("de"))
    pe = V2.public_entities[0]
    fields = cli(synced, "fields", pe["Name"], "--language", "en-us", "--language", "de")
    assert fields.returncode == 0, fields.stderr
    header = fields.stdout.splitlines()[0].split()
    assert "label_en-us" in header and "label_de" in header
    assert f"{V2.label_text(pe['Properties'][0]['LabelId'], 'de')}" in fields.stdout
    diff = cli(synced, "diff", "--json")
    assert [c for c in json.loads(diff.stdout)["changes"] if c["kind"] == "label"] == (
        LABEL_CHANGES
    )
    text = cli(synced, "diff")
    assert f"{len(LABEL_CHANGES)} label texts changed" in text.stdout + text.stderr
    bad = cli(synced, "labels", "--language", "de;x")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1


# -- the tools -----------------------------------------------------------------------------
def test_tools_describe_in_a_language_and_report_label_changes(conn: Connection) -> None:
    pe = V2.public_entities[0]

    async def ask() -> tuple[dict[str, Any], dict[str, Any]]:
        with default_connection(conn):
            described = await metadata_tools.d365fo_describe_entity(pe["Name"], language="de")
            diff = await metadata_tools.d365fo_diff_versions(limit=5)
            return described, diff

    described, diff = asyncio.run(ask())
    assert described["success"] and described["language"] == "de"
    assert [f["label"] for f in described["fields"]] == [
        V2.label_text(p["LabelId"], "de") if p["LabelId"] else None for p in pe["Properties"]
    ]
    assert "labels in de" in described["message"]
    assert diff["success"] and diff["label_changes"] == LABEL_CHANGES[:5]
    assert diff["label_changes_truncated"] == len(LABEL_CHANGES) - 5
    assert diff["message"].endswith(f"{len(LABEL_CHANGES)} label texts changed")


# -- a cache written before label texts were kept per version --------------------------------
def test_a_version_4_cache_migrates_its_labels_into_version_texts(tmp_path: Path) -> None:
    """Migration 5: the dictionary's texts become revision 1, the visible build is recorded as
    synced with them; the next release's full sync then diffs its label texts exactly."""
    import sqlite3

    emulator = Emulator(scale="small")
    with emulator as url:
        with connect(base_url=url, cache_dir=tmp_path) as conn:
            asyncio.run(_sync(conn, "full", None))
            path = Path(conn.manager.store.path)
        old = sqlite3.connect(path)  # back to version 4: no texts per version, no language
        old.execute("DROP TABLE build_labels")
        old.execute("DROP TABLE label_texts")
        old.execute("ALTER TABLE requests DROP COLUMN language")
        old.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
        old.commit()
        old.close()
        with connect(base_url=url, cache_dir=tmp_path) as conn:
            rows = conn.manager.store.db.rows
            referenced = V1.label_ids_referenced()
            assert rows("SELECT count(*) FROM build_labels", ())[0][0] == len(referenced)
            assert rows("SELECT DISTINCT rev FROM label_texts", ())[0][0] == 1
            texts = {r["label_id"]: r["text"] for r in conn.manager.explorer.labels().records()}
            assert texts == {i: V1.labels[i] for i in referenced}
            emulator.configure(version=2)
            asyncio.run(_sync(conn, "full", None))
            diff = conn.manager.explorer.diff()
            assert [c for c in diff.changes if c["kind"] == "label"] == [
                c for c in LABEL_CHANGES if c["attribute"] == "en-us"
            ]


# -- a profile's languages -------------------------------------------------------------------
def test_a_profiles_languages_are_normalised_and_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from d365sync_nb.config import resolve_settings

    profiles = tmp_path / "profiles.toml"
    monkeypatch.setenv("D365SYNC_PROFILES", str(profiles))
    profiles.write_text(
        '[profiles.dev]\nbase_url = "http://127.0.0.1:1"\nlanguages = ["en-US", "de", "DE"]\n'
        '[profiles.de]\nbase_url = "http://127.0.0.1:1"\nlanguages = ["de", "da"]\n'
        '[profiles.one]\nbase_url = "http://127.0.0.1:1"\nlanguage = "en-GB"\n'
        '[profiles.bad]\nbase_url = "http://127.0.0.1:1"\nlanguages = "de,<script>"\n'
    )
    dev = resolve_settings(profile="dev")
    assert (dev.language, dev.sync_languages) == ("en-us", ("en-us", "de"))
    german = resolve_settings(profile="de")  # no language: the first of its languages
    assert (german.language, german.sync_languages) == ("de", ("de", "da"))
    one = resolve_settings(profile="one")  # the default stays one language
    assert one.sync_languages == ("en-gb",)
    with pytest.raises(ConfigurationError, match=r"languages: '<script>' is not a language tag"):
        resolve_settings(profile="bad")


@pytest.mark.parametrize("value", ["Customer", "", None])
def test_a_fetched_label_is_the_label_model_construct_builds(value: str | None) -> None:
    """The label path's shortcut builds what pydantic's ``model_construct`` builds."""
    from d365sync_nb.metadata import Label

    fast = Label.fetched("@SYS1", "de", value)
    slow = Label.model_construct(id="@SYS1", language="de", value=value)
    assert fast == slow and fast.model_fields_set == slow.model_fields_set
    assert fast.model_dump() == slow.model_dump() and repr(fast) == repr(slow)
    assert fast.status == slow.status
    fast.http_status = 404  # still a mutable model (the runner sets it on refused labels)
    assert fast.model_copy(update={"value": "x"}).value == "x"
