"""The metadata explorer on real caches synced from the emulator: tables, diff, export, CLI, tools.

Two environments are synced once per module (loopback HTTP, real SQLite): "dev" holds release
1 then release 2 (the emulator's next version), "prod" holds release 2 only. Every expectation
comes from the emulator's dataset, never from the explorer itself.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from d365sync_nb import connect, metadata_tools
from d365sync_nb.connection import Connection, default_connection
from d365sync_nb.emulator import Emulator, build_dataset
from d365sync_nb.errors import CacheError, ConfigurationError, NotInCacheError
from d365sync_nb.explorer import MetadataExplorer
from d365sync_nb.metadata import (
    EntityProperty,
    EnvironmentVersion,
    InstalledModule,
    PublicEntity,
    PublicEnumeration,
)
from d365sync_nb.store import MetadataStore

V1 = build_dataset("small", 1)
V2 = build_dataset("small", 2)
# The release's structural changes, and its label text changes in en-us (the language synced
# here). dev's upgrade was an incremental sync, which keeps the texts it had: its diff of the two
# versions has no label change, while prod (synced in full on release 2) has the new texts.
STRUCTURAL = [c for c in V2.changes if c["kind"] != "label"]
EN_LABELS = [c for c in V2.changes if c["kind"] == "label" and c["attribute"] == "en-us"]
FIELD_KEYS = ("TypeName", "DataType", "IsKey", "IsMandatory", "AllowEdit", "IsDimension")


@dataclass
class Caches:
    cache_dir: Path
    dev_url: str
    prod_url: str
    prod_file: Path


async def _sync(conn: Connection, strategy: str) -> None:
    result = await conn.manager.start(strategy=strategy)
    assert result.session_id, result.message
    session = await conn.manager.wait(result.session_id)
    assert session.status.value == "completed", session.error


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Caches]:
    cache_dir = tmp_path_factory.mktemp("explorer-cache")
    dev_emulator = Emulator(scale="small")
    with dev_emulator as dev_url, Emulator(scale="small", version=2) as prod_url:
        dev = connect(base_url=dev_url, cache_dir=cache_dir)
        prod = connect(base_url=prod_url, cache_dir=cache_dir)
        try:
            asyncio.run(_sync(dev, "full"))
            dev_emulator.configure(version=2)  # the environment's upgrade
            asyncio.run(_sync(dev, "incremental"))
            asyncio.run(_sync(prod, "full"))
            prod_file = Path(prod.manager.store.path)
        finally:
            dev.close()
            prod.close()
        yield Caches(cache_dir, dev_url, prod_url, prod_file)


@pytest.fixture
def dev(caches: Caches) -> Iterator[Connection]:
    with connect(base_url=caches.dev_url, cache_dir=caches.cache_dir) as conn:
        yield conn


@pytest.fixture
def explorer(dev: Connection) -> MetadataExplorer:
    return dev.manager.explorer


def label_text(label_id: str | None) -> str | None:
    """The cached text: dev's upgrade was an incremental sync, which keeps the texts it had
    (release 1's) and fetches only the new ids."""
    if not label_id:
        return None
    return V1.labels[label_id] if label_id in V1.labels else V2.labels.get(label_id)


def _changes(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    keys = ("kind", "parent", "name", "change", "attribute", "before", "after")
    return sorted(tuple(json.dumps(r[k]) for k in keys) for r in rows)


# -- diff ---------------------------------------------------------------------------------------
def test_diff_of_two_versions_is_exactly_the_emulators_changes(explorer: MetadataExplorer) -> None:
    assert V2.changes, "the emulator's next version must change something"
    diff = explorer.diff()
    assert (diff.from_version["id"], diff.to_version["id"]) == (1, 2)
    assert diff.to_version["application_version"] == V2.application_version
    assert _changes(diff.changes) == _changes(STRUCTURAL)
    kinds = {c["kind"] for c in diff.changes}
    assert kinds == {"entity", "data_entity", "field", "navigation", "action", "enumeration",
                     "member"}  # fmt: skip
    # counts per kind and change, an item with two changed attributes counted once
    for kind, counts in diff.summary.items():
        for change in ("added", "removed"):
            assert counts[change] == sum(
                1 for c in STRUCTURAL if c["kind"] == kind and c["change"] == change
            )
        changed = {(c["parent"], c["name"]) for c in STRUCTURAL
                   if c["kind"] == kind and c["change"] == "changed"}  # fmt: skip
        assert counts["changed"] == len(changed)
    text = diff.summary_text
    assert text.startswith(f"+{diff.summary['entity']['added']} entities")
    assert "fields" in text and "enumerations" in text
    # the reverse diff swaps added and removed
    back = explorer.diff("2", "1")
    assert {c["name"] for c in back.changes if c["change"] == "added"} == {
        c["name"] for c in diff.changes if c["change"] == "removed"
    }


def test_diff_names_versions_by_id_or_application_version(explorer: MetadataExplorer) -> None:
    by_app = explorer.diff(V1.application_version, "10.0.42")
    assert (by_app.from_version["id"], by_app.to_version["id"]) == (1, 2)
    with pytest.raises(ConfigurationError, match="same version"):
        explorer.diff(1, 1)
    with pytest.raises(NotInCacheError) as unknown:
        explorer.diff("7", "2")
    message = str(unknown.value)
    assert "No version '7'" in message and V1.application_version in message
    assert V2.application_version in message
    with pytest.raises(NotInCacheError, match=r"No version '9\.9'"):
        explorer.diff(None, "9.9")


def test_diff_against_another_environment(explorer: MetadataExplorer, caches: Caches) -> None:
    """dev's current version (release 2) against prod (release 2): only the label texts dev
    kept from release 1 (its upgrade was incremental); dev's release 1 against prod: exactly
    the emulator's changes (en-us)."""
    same = explorer.diff_against(caches.prod_file)
    assert _changes(same.changes) == _changes(EN_LABELS)
    assert same.summary_text == f"{len(EN_LABELS)} label texts changed"
    older = explorer.diff_against(caches.prod_file, version=1)
    assert _changes(older.changes) == _changes(STRUCTURAL + EN_LABELS)
    assert older.to_version["environment"] == caches.prod_file.stem
    assert older.title.startswith("version 1 (") and caches.prod_file.stem in older.title


def test_a_diff_needs_two_versions(tmp_path: Path) -> None:
    with Emulator(scale="small") as url, connect(base_url=url, cache_dir=tmp_path) as conn:
        with pytest.raises(NotInCacheError, match="No synced metadata in this cache"):
            conn.manager.explorer.entities()
        asyncio.run(_sync(conn, "full"))
        with pytest.raises(NotInCacheError, match="needs two synced versions; this cache has 1"):
            conn.manager.explorer.diff()


# -- tables -------------------------------------------------------------------------------------
def test_entities_table_and_filters(explorer: MetadataExplorer) -> None:
    table = explorer.entities()
    names = [r["data_entity"] for r in table.records()]
    assert names == sorted(d["Name"] for d in V2.data_entities)
    publics = {p["Name"]: p for p in V2.public_entities}
    for row in table.records():
        source = next(d for d in V2.data_entities if d["Name"] == row["data_entity"])
        assert row["category"] == source["EntityCategory"]
        assert row["is_read_only"] is source["IsReadOnly"]
        pe = publics.get(source["PublicEntityName"])
        assert row["fields"] == (len(pe["Properties"]) if pe else None)
        assert row["label"] == label_text(source["LabelId"])
    some = V2.public_entities[3]["Name"]
    needle = some[2:8].lower()
    found = explorer.entities(needle).records()
    assert found and all(
        needle
        in " ".join(filter(None, (r["data_entity"], r["public_entity"], r["collection"]))).lower()
        for r in found
    )
    glob = explorer.entities(some[:4] + "*").records()
    assert glob and all(
        any(n and fnmatch.fnmatchcase(n.lower(), some[:4].lower() + "*")
            for n in (r["data_entity"], r["public_entity"], r["collection"]))
        for r in glob
    )  # fmt: skip
    master = explorer.entities(category="master").records()
    assert len(master) == sum(1 for d in V2.data_entities if d["EntityCategory"] == "Master")
    with pytest.raises(NotInCacheError, match=r"No entity category 'Mastr'.*Master"):
        explorer.entities(category="Mastr")
    assert len(explorer.entities(version=1)) == len(V1.data_entities)


def test_fields_by_any_name_with_labels_and_enums(explorer: MetadataExplorer) -> None:
    pe = V2.public_entities[0]
    de = next(d for d in V2.data_entities if d["PublicEntityName"] == pe["Name"])
    for name in (pe["Name"], pe["EntitySetName"], de["Name"], pe["Name"].upper()):
        table = explorer.fields(name)
        assert [r["name"] for r in table.records()] == [p["Name"] for p in pe["Properties"]]
    for row, prop in zip(table.records(), pe["Properties"], strict=True):
        assert row["type_name"] == prop["TypeName"] and row["data_type"] == prop["DataType"]
        assert row["is_key"] is prop["IsKey"] and row["is_mandatory"] is prop["IsMandatory"]
        assert row["label"] == label_text(prop["LabelId"])
        if prop["DataType"] == "Enum":
            assert row["enum"] == prop["TypeName"].rsplit(".", 1)[-1]
        else:
            assert row["enum"] is None
    assert any(r["enum"] for r in explorer.fields(pe["Name"]).records())


def test_unknown_names_give_close_matches(explorer: MetadataExplorer) -> None:
    name = V2.public_entities[1]["Name"]
    typo = name[:3] + name[4:]  # one letter dropped
    with pytest.raises(NotInCacheError) as exc:
        explorer.fields(typo)
    assert f"No entity {typo!r} in version 2" in str(exc.value)
    assert "close matches:" in str(exc.value) and name in str(exc.value)
    schemaless = next(d for d in V2.data_entities if not d["DataServiceEnabled"])
    with pytest.raises(NotInCacheError, match="without a public schema"):
        explorer.relations(schemaless["Name"])
    with pytest.raises(NotInCacheError, match=r"No enumeration 'NoYess'.*NoYes"):
        explorer.members("NoYess")
    with pytest.raises(ConfigurationError, match="Give an entity"):
        explorer.fields("  ")


def test_relations_enums_members_labels(explorer: MetadataExplorer) -> None:
    pe = V2.public_entities[0]  # built with every kind of navigation and constraint
    rows = explorer.relations(pe["Name"]).records()
    assert [r["name"] for r in rows] == [n["Name"] for n in pe["NavigationProperties"]]
    for row, nav in zip(rows, pe["NavigationProperties"], strict=True):
        assert row["related_entity"] == nav["RelatedEntity"]
        assert row["cardinality"] == nav["Cardinality"]
        expected = []
        for c in nav["Constraints"]:
            kind = c["@odata.type"].rsplit(".", 1)[-1]
            if kind == "ReferentialConstraint":
                expected.append(f"{c['Property']} = {c['ReferencedProperty']}")
            elif kind == "FixedConstraint":
                expected.append(f"{c['Property']} = '{c['ValueStr']}'")
            else:
                expected.append(f"related.{c['RelatedProperty']} = '{c['ValueStr']}'")
        assert row["constraints"] == ("; ".join(expected) or None)
    enums = explorer.enums().records()
    assert [e["name"] for e in enums] == sorted(e["Name"] for e in V2.enumerations)
    assert all(
        e["members"] == len(next(x for x in V2.enumerations if x["Name"] == e["name"])["Members"])
        for e in enums
    )
    noyes = explorer.members("noyes").records()
    assert [(m["name"], m["value"], m["label"]) for m in noyes] == [
        ("No", 0, label_text(V2.enumerations[0]["Members"][0]["LabelId"])),
        ("Yes", 1, label_text(V2.enumerations[0]["Members"][1]["LabelId"])),
    ]
    referenced = V2.label_ids_referenced()
    labels = explorer.labels().records()
    assert {r["label_id"] for r in labels} == referenced
    missing = explorer.labels(missing=True).records()
    assert {r["label_id"] for r in missing} == {i for i in referenced if not label_text(i)}
    assert {r["status"] for r in missing} == {"missing", "empty"}
    quote = explorer.labels("o'brien").records()
    assert [r["label_id"] for r in quote] == ["@SYS:O'Brien"]


# -- export -------------------------------------------------------------------------------------
def test_export_csv_and_parquet_read_back(explorer: MetadataExplorer, tmp_path: Path) -> None:
    want = {"entities": len(V2.data_entities), "enums": len(V2.enumerations),
            "fields": sum(len(p["Properties"]) for p in V2.public_entities),
            "members": sum(len(e["Members"]) for e in V2.enumerations),
            "labels": len(V2.label_ids_referenced())}  # fmt: skip
    for fmt, read in (("csv", pd.read_csv), ("parquet", pd.read_parquet)):
        written = explorer.export(tmp_path / fmt, fmt)
        assert [w["table"] for w in written] == [
            "entities", "fields", "relations", "actions", "enums", "members", "labels"
        ]  # fmt: skip
        for w in written:
            frame = read(w["path"])
            assert len(frame) == w["rows"], w
            if w["table"] in want:
                assert w["rows"] == want[w["table"]], w
        assert sorted(p.name for p in (tmp_path / fmt).iterdir()) == sorted(
            f"{w['table']}.{fmt}" for w in written
        )  # no partial files left
    fields = pd.read_parquet(tmp_path / "parquet" / "fields.parquet")
    assert fields["is_key"].dtype == bool and fields.columns[0] == "entity"
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(CacheError, match="Cannot create the export directory") as exc:
        explorer.export(blocker / "out", "csv")
    assert "\n" not in str(exc.value)
    with pytest.raises(ConfigurationError, match="Unknown export format 'xlsx'"):
        explorer.export(tmp_path / "x", "xlsx")


# -- CLI ----------------------------------------------------------------------------------------
def cli(caches: Caches, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "d365sync_nb", *args]
    command += ["--base-url", caches.dev_url, "--cache-dir", str(caches.cache_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_cli_tables_json_csv_and_text(caches: Caches) -> None:
    pe = V2.public_entities[0]
    entities = cli(caches, "entities", "--json")
    assert entities.returncode == 0, entities.stderr
    assert len(json.loads(entities.stdout)) == len(V2.data_entities)
    fields = cli(caches, "fields", pe["EntitySetName"], "--csv")
    assert fields.returncode == 0, fields.stderr
    lines = fields.stdout.splitlines()
    assert lines[0].startswith("name,data_type,type_name,is_key,is_mandatory")
    assert len(lines) == 1 + len(pe["Properties"])
    text = cli(caches, "members", "NoYes", "--version", "1")
    assert text.returncode == 0 and "members of NoYes (version 1" in text.stderr
    assert text.stdout.splitlines()[0].split()[:2] == ["name", "value"]


def test_cli_diff_json_csv_and_against(caches: Caches) -> None:
    result = cli(caches, "diff", "--from", "1", "--to", "2", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert (answer["from"], answer["to"]) == (1, 2)
    assert _changes(answer["changes"]) == _changes(STRUCTURAL)
    assert answer["summary"]["field"]["removed"] == sum(
        1 for c in V2.changes if c["kind"] == "field" and c["change"] == "removed"
    )
    csv_out = cli(caches, "diff", "--csv")
    assert csv_out.stdout.splitlines()[0] == "kind,parent,name,change,attribute,before,after"
    assert len(csv_out.stdout.splitlines()) == 1 + len(STRUCTURAL)
    text = cli(caches, "diff")
    assert text.stdout.splitlines()[0].startswith("version 1 (10.0.41")
    for against in (caches.prod_url, str(caches.prod_file), caches.prod_file.stem):
        other = cli(caches, "diff", "--against", against, "--from", "1", "--json")
        assert other.returncode == 0, (against, other.stderr)
        assert _changes(json.loads(other.stdout)["changes"]) == _changes(STRUCTURAL + EN_LABELS)


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("fields", "NoSuchEntity"), 1, "No entity 'NoSuchEntity' in version 2"),
        (("entities", "--category", "Nope"), 1, "No entity category 'Nope'"),
        (("diff", "--against", ""), 2, "Name the other environment"),
        (("diff", "--to", "1"), 1, "No synced version before version 1"),
        (("entities", "--version", "12"), 1, "No version '12'"),
        (("diff", "--against", "elsewhere"), 2, "No environment 'elsewhere'"),
        (("diff", "--against", "https://nothing.example.com"), 2, "No cache of"),
        (("export", "/dev/null/x"), 1, "Cannot create the export directory"),
        (("members",), 2, "the following arguments are required: enum"),
    ],
)
def test_cli_bad_input_is_one_line(caches: Caches, args: tuple[str, ...], code: int,
                                   needle: str) -> None:  # fmt: skip
    result = cli(caches, *args)
    assert result.returncode == code, result
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_parquet_without_pyarrow_says_how_to_get_it(caches: Caches, tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['pyarrow'] = None\n"  # as if it were not installed
        "from d365sync_nb.cli import main\n"
        f"sys.exit(main(['export', {str(tmp_path / 'out')!r}, '--format', 'parquet',"
        f" '--base-url', {caches.dev_url!r}, '--cache-dir', {str(caches.cache_dir)!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert "pip install 'd365sync_nb[parquet]'" in result.stderr
    assert not (tmp_path / "out").exists()  # nothing written


# -- tools --------------------------------------------------------------------------------------
async def test_metadata_tools(dev: Connection) -> None:
    pe = V2.public_entities[0]
    with default_connection(dev):
        found = await metadata_tools.d365fo_search_metadata("NoYes", limit=5)
        assert found["success"] and found["hits"][0]["name"] == "NoYes"
        assert found["version"].startswith("version 2")
        clamped = await metadata_tools.d365fo_search_metadata("a", limit=10_000)
        assert clamped["notice"].endswith("used 100 instead")
        assert len(clamped["hits"]) == 100 and clamped["more"] is True
        assert found["more"] is False and "there are more" in clamped["message"]

        described = await metadata_tools.d365fo_describe_entity(pe["EntitySetName"])
        assert described["success"] and described["entity"] == pe["Name"]
        assert described["keys"] == [p["Name"] for p in pe["Properties"] if p["IsKey"]]
        assert len(described["fields"]) == len(pe["Properties"])
        assert len(described["relations"]) == len(pe["NavigationProperties"])
        assert described["data_entity"]["collection"] == pe["EntitySetName"]

        diff = await metadata_tools.d365fo_diff_versions(limit=3)
        assert diff["success"] and (diff["from"], diff["to"]) == (1, 2)
        assert len(diff["changes"]) == 3 and diff["truncated"] == len(STRUCTURAL) - 3
        assert diff["total_count"] == len(STRUCTURAL)
        assert diff["message"].startswith("version 1 (10.0.41")

        unknown = await metadata_tools.d365fo_describe_entity("Custmer")
        assert not unknown["success"] and "No entity 'Custmer'" in unknown["error"]
        empty = await metadata_tools.d365fo_search_metadata("  ")
        assert not empty["success"] and "text must be" in empty["error"]
        bad = await metadata_tools.d365fo_diff_versions(from_version="3")
        assert not bad["success"] and "No version '3'" in bad["error"]


async def test_metadata_tools_before_any_sync(tmp_path: Path) -> None:
    with connect(demo=True, cache_dir=tmp_path) as conn, default_connection(conn):
        for answer in (
            await metadata_tools.d365fo_search_metadata("customer"),
            await metadata_tools.d365fo_describe_entity("Customers"),
            await metadata_tools.d365fo_diff_versions(),
        ):
            assert (
                not answer["success"] and "start a sync with d365fo_start_sync" in (answer["error"])
            )


# -- what a real service may send that the emulator does not --------------------------------------
def _prop(name: str, type_name: str = "Edm.String", data_type: str = "String") -> EntityProperty:
    return EntityProperty(name=name, type_name=type_name, data_type=data_type)


def crafted(path: Path, releases: list[list[PublicEntity]]) -> MetadataStore:
    """A cache with one complete version per release, written through the store's own API."""
    store = MetadataStore(path)
    for i, entities in enumerate(releases):
        env = EnvironmentVersion(
            modules=[InstalledModule(name="Crafted", version=f"1.{i}")],
            application_version=f"10.0.{40 + i}.1",
        )
        version_id = store.versions.upsert_version(env)
        build_id = store.builds.begin(version_id, f"session-{i}", "full")
        store.rows.write_public_entities(build_id, entities)
        store.rows.write_enumerations(
            build_id, [PublicEnumeration(name="Mode"), PublicEnumeration(name="MODE")]
        )
        store.builds.finalize(version_id, build_id, has_metadata=True, has_labels=False, counts={})
    return store


def test_names_differing_only_by_case_and_repeated_names(tmp_path: Path) -> None:
    old = [
        PublicEntity(name="Customers", properties=[_prop("Id"), _prop("Dup"),
                                                   _prop("Dup", "Edm.Int32", "Int")]),
        PublicEntity(name="CUSTOMERS", properties=[_prop("Other")]),
    ]  # fmt: skip
    new = [
        PublicEntity(name="Customers", properties=[_prop("Id", "Edm.Int64", "Int64"),
                                                   _prop("Dup", "Edm.Real", "Real"),
                                                   _prop("Dup", "Edm.Date", "Date")]),
        PublicEntity(name="CUSTOMERS", properties=[_prop("Other")]),
    ]  # fmt: skip
    store = crafted(tmp_path / "crafted.sqlite3", [old, new])
    try:
        explorer = MetadataExplorer(store)
        assert explorer.fields("Customers").records()[0]["type_name"] == "Edm.Int64"
        assert [r["name"] for r in explorer.fields("CUSTOMERS").records()] == ["Other"]
        with pytest.raises(NotInCacheError, match="differ only by case: CUSTOMERS, Customers"):
            explorer.fields("customers")
        assert explorer.members("MODE").records() == []  # the exact name, not 'Mode'
        with pytest.raises(NotInCacheError, match="enumerations that differ only by case"):
            explorer.members("mode")

        changes = explorer.diff().changes
        dup = [c for c in changes if c["name"] == "Dup"]
        # two rows named Dup on each side: nothing is paired by guess, nothing is lost
        assert sorted((c["change"], json.dumps(c["before"] or c["after"])) for c in dup) == sorted(
            [("removed", json.dumps({**_whole("Edm.Int32", "Int")})),
             ("removed", json.dumps({**_whole("Edm.String", "String")})),
             ("added", json.dumps({**_whole("Edm.Real", "Real")})),
             ("added", json.dumps({**_whole("Edm.Date", "Date")}))]
        )  # fmt: skip
        single = [(c["name"], c["attribute"], c["before"], c["after"]) for c in changes
                  if c["name"] == "Id"]  # fmt: skip
        assert single == [("Id", "data_type", "String", "Int64"),
                          ("Id", "type_name", "Edm.String", "Edm.Int64")]  # fmt: skip
        assert len(changes) == 6
    finally:
        store.close()


def _whole(type_name: str, data_type: str) -> dict[str, Any]:
    """A field's compared attributes, as a repeated name's row carries them."""
    return {
        "type_name": type_name, "data_type": data_type, "label_id": None, "is_key": False,
        "is_mandatory": False, "configuration_enabled": False, "allow_edit": False,
        "allow_edit_on_create": False, "is_dimension": False, "dimension_relation": None,
        "is_dynamic_dimension": False, "dimension_legal_entity_property": None,
        "dimension_type_property": None,
    }  # fmt: skip


def test_against_a_cache_that_cannot_be_compared(explorer: MetadataExplorer,
                                                 tmp_path: Path) -> None:  # fmt: skip
    other = tmp_path / "old-schema.sqlite3"
    store = crafted(other, [[PublicEntity(name="X", properties=[_prop("A")])]])
    store.close()
    with sqlite3.connect(other) as conn:
        conn.execute("ALTER TABLE entity_properties DROP COLUMN is_dimension")
    with pytest.raises(CacheError) as exc:
        explorer.diff_against(other)
    assert str(exc.value) == (
        f"The cache {other} cannot be compared: its entity_properties table has no "
        "is_dimension (written by another version of d365sync_nb?)"
    )
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(CacheError, match=f"{garbage} is not a usable d365sync cache"):
        explorer.diff_against(garbage)


def test_one_sided_diff_and_a_partial_version(tmp_path: Path) -> None:
    emulator = Emulator(scale="small")
    with emulator as url, connect(base_url=url, cache_dir=tmp_path) as conn:
        asyncio.run(_sync(conn, "full"))
        emulator.configure(version=2)
        asyncio.run(_sync(conn, "entities_only"))  # release 2: data entities, no schemas
        explorer = conn.manager.explorer
        # tables default to the current complete version; the partial one says what it lacks
        pe = V1.public_entities[0]
        assert explorer.fields(pe["Name"]).title.startswith(f"fields of {pe['Name']} (version 1")
        partial_message = r"version 2 \(10\.0\.42\.2150\) was synced without entity schemas"
        with pytest.raises(NotInCacheError, match=partial_message):
            explorer.fields(pe["Name"], version=2)
        with pytest.raises(NotInCacheError, match="without enumerations"):
            explorer.enums(version="10.0.42")
        partial = explorer.entities(version=2).records()
        assert len(partial) == len(V2.data_entities) and all(r["fields"] is None for r in partial)
        with pytest.raises(NotInCacheError, match="no complete metadata"):
            explorer.export(tmp_path / "out", version=2)
        with pytest.raises(NotInCacheError, match="needs two synced versions; this cache has 1"):
            explorer.diff()
        asyncio.run(_sync(conn, "full_without_labels"))  # now release 2 is complete
        # (without labels: no label texts of release 2 to compare)
        assert _changes(explorer.diff(to_version=2).changes) == _changes(STRUCTURAL)
        assert _changes(explorer.diff(from_version="10.0.41").changes) == _changes(STRUCTURAL)
        with pytest.raises(NotInCacheError, match="No synced version after version 2"):
            explorer.diff(from_version=2)
        with pytest.raises(NotInCacheError, match=r"No version '10\.0\.4'"):  # whole parts only
            explorer.entities(version="10.0.4")


def test_patterns_with_special_characters(explorer: MetadataExplorer) -> None:
    assert explorer.entities("%").records() == []  # no SQL LIKE semantics
    assert explorer.entities("(").records() == []
    assert explorer.labels("o'brien").records()[0]["label_id"] == "@SYS:O'Brien"
    percent = explorer.labels("(100%)").records()
    assert [r["label_id"] for r in percent] == ["@FieldDescriptions:Rate (100%)"]
    bracket = explorer.entities("[ab]*").records()
    assert bracket and all(r["data_entity"][0] in "AB" or r["public_entity"][0] in "AB"
                           or (r["collection"] or " ")[0] in "AB" for r in bracket)  # fmt: skip
