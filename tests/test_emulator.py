"""The embedded D365 F&O metadata service emulator, exercised over real loopback HTTP."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import fields
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest

from d365sync_nb.emulator import Dataset, Emulator, EmulatorOptions, build_dataset, serve
from d365sync_nb.emulator.dataset import (
    FIXED,
    PERCENT_LABEL_ID,
    QUOTE_LABEL_ID,
    REFERENTIAL,
    RELATED_FIXED,
    SPACE_LABEL_ID,
)
from d365sync_nb.emulator.faults import FaultGate
from d365sync_nb.emulator.odata import ODataError, parse_filter, parse_key, query_body

DE_FIELDS = {
    "Name",
    "PublicEntityName",
    "PublicCollectionName",
    "LabelId",
    "DataServiceEnabled",
    "DataManagementEnabled",
    "EntityCategory",
    "IsReadOnly",
}
PE_FIELDS = {
    "Name",
    "EntitySetName",
    "LabelId",
    "IsReadOnly",
    "ConfigurationEnabled",
    "Properties",
    "NavigationProperties",
    "PropertyGroups",
    "Actions",
}
PROP_FIELDS = {
    "Name",
    "TypeName",
    "DataType",
    "LabelId",
    "IsKey",
    "IsMandatory",
    "ConfigurationEnabled",
    "AllowEdit",
    "AllowEditOnCreate",
    "IsDimension",
    "DimensionRelation",
    "IsDynamicDimension",
    "DimensionLegalEntityProperty",
    "DimensionTypeProperty",
}
NAV_FIELDS = {"Name", "RelatedEntity", "RelatedRelationName", "Cardinality", "Constraints"}
ACTION_FIELDS = {"Name", "BindingKind", "FieldLookup", "Parameters", "ReturnType"}
ENUM_FIELDS = {"Name", "LabelId", "Members"}
MEMBER_FIELDS = {"Name", "Value", "LabelId", "ConfigurationEnabled"}
CONSTRAINT_FIELDS = {
    REFERENTIAL: {"@odata.type", "Property", "ReferencedProperty"},
    FIXED: {"@odata.type", "Property", "Value", "ValueStr"},
    RELATED_FIXED: {"@odata.type", "RelatedProperty", "Value", "ValueStr"},
}
MODULES = "/data/SystemNotifications/Microsoft.Dynamics.DataEntities.GetInstalledModules"
APP_VERSION = "/data/DataManagementEntities/Microsoft.Dynamics.DataEntities.GetApplicationVersion"
PLATFORM = "/data/DataManagementEntities/Microsoft.Dynamics.DataEntities.GetPlatformBuildVersion"
DEFAULTS = {f.name: f.default for f in fields(EmulatorOptions)}


def label_url(label_id: str, language: str = "en-us") -> str:
    """Label path with the OData literal quote-doubled and percent-encoded."""
    literal = quote(label_id.replace("'", "''"), safe="@:")
    return f"/Metadata/Labels(Id='{literal}',Language='{language}')"


def assert_odata_error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = Emulator(scale="small")
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def emu(emulator: Emulator) -> Iterator[Emulator]:
    """The shared emulator with default options and zeroed stats."""
    emulator.configure(**DEFAULTS)
    emulator.reset_stats()
    yield emulator
    emulator.configure(**DEFAULTS)


@pytest.fixture
def client(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, timeout=10) as c:
        yield c


# ------------------------------------------------------------------------------------------------
# Dataset
# ------------------------------------------------------------------------------------------------


def test_build_is_deterministic_and_validates_scale() -> None:
    a, b = build_dataset("small"), build_dataset("small")
    assert a == b
    assert orjson.dumps(a.public_entities) == orjson.dumps(b.public_entities)
    assert build_dataset("small", seed=1).data_entities != a.data_entities
    with pytest.raises(ValueError, match=r"unknown scale 'huge'.*small.*realistic"):
        build_dataset("huge")


def test_dataset_shape_and_label_semantics() -> None:
    ds = build_dataset("small")
    counts = ds.expected_counts()
    assert 80 <= counts["data_entities"] <= 120 and counts["public_entities"] >= 60
    assert all(set(de) == DE_FIELDS for de in ds.data_entities)
    assert len({de["Name"] for de in ds.data_entities}) == len(ds.data_entities)
    public = {de["PublicEntityName"] for de in ds.data_entities if de["DataServiceEnabled"]}
    assert public == {pe["Name"] for pe in ds.public_entities}
    constraint_types, binding_kinds, return_types = set(), set(), set()
    for pe in ds.public_entities:
        assert set(pe) == PE_FIELDS
        assert 5 <= len(pe["Properties"]) <= 41
        assert all(set(p) == PROP_FIELDS for p in pe["Properties"])
        for nav in pe["NavigationProperties"]:
            assert set(nav) == NAV_FIELDS and nav["Cardinality"] in ("Single", "Multiple")
            for c in nav["Constraints"]:
                assert set(c) == CONSTRAINT_FIELDS[c["@odata.type"]]
                constraint_types.add(c["@odata.type"])
        for action in pe["Actions"]:
            assert set(action) == ACTION_FIELDS
            binding_kinds.add(action["BindingKind"])
            return_types.add(type(action["ReturnType"]).__name__)
            assert all(set(p) == {"Name", "Type"} for p in action["Parameters"])
        for group in pe["PropertyGroups"]:
            assert set(group) == {"Name", "Properties"}
    assert constraint_types == set(CONSTRAINT_FIELDS)
    assert binding_kinds == {"BoundToEntityInstance", "BoundToEntitySet", "Unbound"}
    assert return_types == {"dict", "NoneType"}
    for en in ds.enumerations:
        assert set(en) == ENUM_FIELDS and 2 <= len(en["Members"]) <= 8
        assert all(set(m) == MEMBER_FIELDS for m in en["Members"])

    referenced = ds.label_ids_referenced()
    references = sum(
        1
        for coll in (ds.data_entities, ds.public_entities, ds.enumerations)
        for item in coll
        for sub in [item, *item.get("Properties", ()), *item.get("Members", ())]
        if sub["LabelId"]
    )
    assert 300 <= len(referenced) < references  # ids are shared
    assert any(de["LabelId"] is None for de in ds.data_entities)
    assert {QUOTE_LABEL_ID, SPACE_LABEL_ID, PERCENT_LABEL_ID} <= referenced
    assert all(ds.labels[i] for i in (QUOTE_LABEL_ID, SPACE_LABEL_ID, PERCENT_LABEL_ID))
    assert all(i.startswith("@") for i in referenced)
    assert counts["label_ids"] == len(referenced)
    assert counts["labels"] + counts["labels_missing"] + counts["labels_empty"] == len(referenced)
    assert counts["labels_missing"] >= 1 and counts["labels_empty"] >= 1
    assert counts["labels_missing"] == sum(1 for i in referenced if ds.labels.get(i) is None)
    assert counts["properties"] == sum(len(pe["Properties"]) for pe in ds.public_entities)
    assert 15 <= len(ds.modules) <= 25
    assert ds.modules[0] == (
        "Name: ApplicationSuite | Version: 10.0.2095.71 | Module: ApplicationSuite | "
        "Publisher: Microsoft Corporation | DisplayName: Application Suite"
    )


def test_version2_is_a_small_delta() -> None:
    v1, v2 = build_dataset("small", 1), build_dataset("small", 2)
    assert set(v2.modules) - set(v1.modules) and set(v1.modules) - set(v2.modules)
    assert len(v2.modules) == len(v1.modules) + 1
    touched = {r["parent"] or r["name"] for r in v2.changes}  # items named in a change
    for name in ("data_entities", "public_entities", "enumerations"):
        old, new = getattr(v1, name), getattr(v2, name)
        assert 0 < abs(len(new) - len(old)) <= 10
        old_by, new_by = {i["Name"]: i for i in old}, {i["Name"]: i for i in new}
        same = [n for n in old_by if n not in touched]
        assert len(same) > len(old) - 30
        assert all(old_by[n] == new_by[n] for n in same)  # everything else identical
        # items in both versions keep their order
        assert [n for n in new_by if n in old_by] == [n for n in old_by if n in new_by]
    new_ids = v2.label_ids_referenced() - v1.label_ids_referenced()
    assert new_ids and all(v2.labels[i] for i in new_ids)
    changed = [i for i, t in v1.labels.items() if v2.labels[i] != t]
    assert 1 <= len(changed) <= 20
    assert v2.application_version != v1.application_version


# ------------------------------------------------------------------------------------------------
# Collections
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("collection", "attr", "item_fields"),
    [
        ("DataEntities", "data_entities", DE_FIELDS),
        ("PublicEntities", "public_entities", PE_FIELDS),
        ("PublicEnumerations", "enumerations", ENUM_FIELDS),
    ],
)
def test_collection_shape(
    client: httpx.Client, emu: Emulator, collection: str, attr: str, item_fields: set[str]
) -> None:
    resp = client.get(f"/Metadata/{collection}")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    uuid.UUID(resp.headers["ms-dyn-aid"])
    assert resp.headers["server-timing"].startswith("app;dur=")
    body = resp.json()
    assert list(body) == ["@odata.context", "value"]
    assert body["@odata.context"] == f"{emu.base_url}/Metadata/$metadata#{collection}"
    assert body["value"] == getattr(emu.dataset, attr)
    assert all(set(item) == item_fields for item in body["value"])
    assert client.get(f"/Metadata/{collection}").content == resp.content  # cached body


def test_counts_match_expected(client: httpx.Client, emu: Emulator) -> None:
    pes = client.get("/Metadata/PublicEntities").json()["value"]
    enums = client.get("/Metadata/PublicEnumerations").json()["value"]
    des = client.get("/Metadata/DataEntities").json()["value"]
    expected = emu.dataset.expected_counts()
    assert len(des) == expected["data_entities"]
    assert len(pes) == expected["public_entities"]
    assert sum(len(p["Properties"]) for p in pes) == expected["properties"]
    assert sum(len(p["NavigationProperties"]) for p in pes) == expected["navigation_properties"]
    assert sum(len(p["Actions"]) for p in pes) == expected["actions"]
    assert len(enums) == expected["enumerations"]
    assert sum(len(e["Members"]) for e in enums) == expected["enumeration_members"]


def test_paging_returns_every_item_once(client: httpx.Client, emu: Emulator) -> None:
    emu.configure(page_size=7)
    items, pages, url = [], 0, "/Metadata/DataEntities"
    while url:
        body = client.get(url).json()
        assert len(body["value"]) <= 7
        items.extend(body["value"])
        pages += 1
        url = body.get("@odata.nextLink")
        if url:
            assert url.startswith(f"{emu.base_url}/Metadata/DataEntities?") and "$skiptoken=" in url
    assert items == emu.dataset.data_entities
    assert pages == -(-len(items) // 7)
    assert emu.stats()["requests_by_endpoint"]["DataEntities"] == pages

    # query options survive in the nextLink
    names, url = [], "/Metadata/DataEntities?$filter=DataServiceEnabled eq true&$select=Name"
    while url:
        body = client.get(url).json()
        assert all(set(v) == {"Name"} for v in body["value"])
        names += [v["Name"] for v in body["value"]]
        url = body.get("@odata.nextLink")
    assert names == [d["Name"] for d in emu.dataset.data_entities if d["DataServiceEnabled"]]


def test_top_skip_select_filter(client: httpx.Client, emu: Emulator) -> None:
    des = emu.dataset.data_entities
    body = client.get("/Metadata/DataEntities", params={"$top": "5", "$skip": "3"}).json()
    assert body["value"] == des[3:8]
    body = client.get("/Metadata/DataEntities", params={"$select": "Name,LabelId"}).json()
    assert body["value"] == [{"Name": d["Name"], "LabelId": d["LabelId"]} for d in des]
    assert body["@odata.context"].endswith("#DataEntities(Name,LabelId)")

    target = des[10]
    flt = f"Name eq '{target['Name']}'"
    assert client.get("/Metadata/DataEntities", params={"$filter": flt}).json()["value"] == [target]
    ro = client.get("/Metadata/DataEntities", params={"$filter": "IsReadOnly eq true"}).json()
    assert ro["value"] == [d for d in des if d["IsReadOnly"]]
    prefix = target["Name"][:4]
    flt = f"startswith(Name,'{prefix}') and DataServiceEnabled eq false"
    got = client.get("/Metadata/DataEntities", params={"$filter": flt}).json()["value"]
    assert got == [d for d in des if d["Name"].startswith(prefix) and not d["DataServiceEnabled"]]
    quoted = client.get(
        "/Metadata/PublicEntities",
        params={"$filter": "LabelId eq '@SYS:O''Brien'", "$select": "Name"},
    )
    assert len(quoted.json()["value"]) == 1

    assert_odata_error(client.get("/Metadata/DataEntities", params={"$filter": "Name gt 'A'"}), 400)
    assert_odata_error(client.get("/Metadata/DataEntities", params={"$filter": "Nope eq 1"}), 400)
    assert_odata_error(client.get("/Metadata/DataEntities", params={"$select": "Nope"}), 400)
    assert_odata_error(client.get("/Metadata/DataEntities", params={"$top": "-1"}), 400)


def test_single_items_and_404(client: httpx.Client, emu: Emulator) -> None:
    for collection, items in (
        ("DataEntities", emu.dataset.data_entities),
        ("PublicEntities", emu.dataset.public_entities),
        ("PublicEnumerations", emu.dataset.enumerations),
    ):
        item = items[-1]
        body = client.get(f"/Metadata/{collection}('{item['Name']}')").json()
        assert body.pop("@odata.context").endswith(f"#{collection}/$entity")
        assert body == item
        err = assert_odata_error(client.get(f"/Metadata/{collection}('NoSuchThing')"), 404)
        assert err["code"] == "NotFound"
    assert_odata_error(client.get("/Metadata/Nothing"), 404)
    assert_odata_error(client.post("/Metadata/DataEntities"), 405)


# ------------------------------------------------------------------------------------------------
# Labels and version detection
# ------------------------------------------------------------------------------------------------


def test_labels(client: httpx.Client, emu: Emulator) -> None:
    labels = emu.dataset.labels
    referenced = sorted(emu.dataset.label_ids_referenced())
    found = next(i for i in referenced if labels[i] and i.startswith("@SYS"))
    body = client.get(label_url(found)).json()
    assert body == {
        "@odata.context": f"{emu.base_url}/Metadata/$metadata#Labels/$entity",
        "Id": found,
        "Language": "en-US",  # the service's own casing of the language asked as en-us
        "Value": labels[found],
    }
    for special in (QUOTE_LABEL_ID, SPACE_LABEL_ID, PERCENT_LABEL_ID):
        resp = client.get(label_url(special))
        assert resp.status_code == 200, special
        assert resp.json()["Id"] == special and resp.json()["Value"] == labels[special]
    # every character percent-encoded, quote doubled
    encoded = quote("'@SYS:O''Brien'", safe="")
    assert "%27%27" in encoded
    resp = client.get(f"/Metadata/Labels(Id={encoded},Language=%27en-us%27)")
    assert resp.json()["Id"] == QUOTE_LABEL_ID

    missing = next(i for i in referenced if labels[i] is None)
    err = assert_odata_error(client.get(label_url(missing)), 404)
    assert missing in err["message"]
    empty = next(i for i in referenced if labels[i] == "")
    resp = client.get(label_url(empty))
    assert resp.status_code == 200 and resp.json()["Value"] == ""
    # other languages: German and Danish texts (German with gaps), any other the en-us text
    assert client.get(label_url(found, "da")).json() | {"@odata.context": None} == {
        "@odata.context": None, "Id": found, "Language": "da", "Value": f"{labels[found]} (da)"
    }
    assert client.get(label_url(found, "de-DE")).json()["Value"] == labels[found]
    assert client.get(label_url(found, "EN-GB")).json()["Language"] == "en-GB"
    bogus = client.get("/Metadata/Labels(Id='@SYS1',Bogus='x')")
    assert bogus.status_code == 400 and bogus.json()["error"]["innererror"]["message"]
    stats = emu.stats()
    assert stats["requests_by_endpoint"]["Labels"] == 11
    assert stats["responses_by_status"]["404"] == 1


def test_answers_shaped_like_the_service(client: httpx.Client, emu: Emulator) -> None:
    """Where public captures of the real service differ from a naive guess."""
    # a malformed label key: a generic message, the detail in innererror
    resp = client.get("/Metadata/Labels(Id=@SYS1)")
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["message"] == "The request is invalid."
    assert "not valid for resource" in error["innererror"]["message"]
    assert set(error["innererror"]) == {"message", "type", "stacktrace"}
    # the service document lists the endpoints
    doc = client.get("/Metadata/").json()
    assert {e["name"] for e in doc["value"]} == {
        "DataEntities",
        "Labels",
        "PublicEntities",
        "PublicEnumerations",
    }
    # a property that is not a dimension has null Dimension* fields, not ""
    props = [p for e in emu.dataset.public_entities for p in e["Properties"]]
    plain = next(p for p in props if not p["IsDimension"])
    assert plain["DimensionRelation"] is None and plain["DimensionTypeProperty"] is None
    assert all(p["DimensionRelation"] for p in props if p["IsDimension"])


def test_version_endpoints_and_version_switch(client: httpx.Client, emu: Emulator) -> None:
    v1_modules = client.post(MODULES, json={}).json()
    assert v1_modules["value"] == emu.dataset.modules
    assert v1_modules["@odata.context"].endswith("#Collection(Edm.String)")
    assert client.post(APP_VERSION, json={}).json()["value"].startswith("10.0.41")
    assert client.post(PLATFORM, json={}).json()["value"].startswith("7.0.7367")
    for path in (MODULES, APP_VERSION, PLATFORM):
        resp = client.get(path)
        assert_odata_error(resp, 405)
        assert resp.headers["allow"] == "POST"

    emu.configure(version=2)
    assert emu.dataset.version == 2
    v2_modules = client.post(MODULES, json={}).json()["value"]
    assert set(v2_modules) != set(v1_modules["value"])
    assert len(v2_modules) == len(v1_modules["value"]) + 1
    des = client.get("/Metadata/DataEntities").json()["value"]
    assert len(des) == len(build_dataset("small", 2).data_entities)


# ------------------------------------------------------------------------------------------------
# Auth, throttling, faults, corruption
# ------------------------------------------------------------------------------------------------


def test_token(client: httpx.Client, emu: Emulator) -> None:
    emu.configure(token="secret-1")
    resp = client.get("/Metadata/DataEntities")
    assert_odata_error(resp, 401)
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert "secret-1" not in resp.text
    wrong = client.get("/Metadata/DataEntities", headers={"Authorization": "Bearer nope"})
    assert_odata_error(wrong, 401)
    ok = client.get("/Metadata/DataEntities", headers={"Authorization": "Bearer secret-1"})
    assert ok.status_code == 200
    assert client.get("/_emulator/stats").status_code == 200  # admin needs no token
    assert client.get("/_emulator/config").json()["token"] == "***"
    emu.configure(token="secret-2")  # expiry
    expired = client.post(MODULES, json={}, headers={"Authorization": "Bearer secret-1"})
    assert_odata_error(expired, 401)
    assert emu.stats()["responses_by_status"]["401"] == 3


async def test_max_concurrency_answers_429(emu: Emulator) -> None:
    emu.configure(max_concurrency=2, latency_ms=150, retry_after="0.2")
    async with httpx.AsyncClient(base_url=emu.base_url, timeout=10) as c:
        resps = await asyncio.gather(*(c.get(label_url("@SYS13342")) for _ in range(12)))
    throttled = [r for r in resps if r.status_code == 429]
    assert throttled and sum(r.status_code == 200 for r in resps) >= 2
    assert all(r.headers["retry-after"] == "0.2" for r in throttled)
    assert_odata_error(throttled[0], 429)
    stats = emu.stats()
    assert stats["max_in_flight"] == 2
    assert stats["responses_by_status"]["429"] == len(throttled)
    emu.configure(retry_after=3, latency_ms=0)
    assert emu.options.retry_after == 3.0


def test_faults_give_503_and_dropped_connections(emu: Emulator) -> None:
    emu.configure(fault_rate=1.0)
    statuses: list[int] = []
    errors: list[httpx.TransportError] = []
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("uvicorn.error").addHandler(handler)
    try:
        with httpx.Client(base_url=emu.base_url, timeout=5) as c:
            for _ in range(16):
                try:
                    resp = c.get("/Metadata/PublicEnumerations")
                except httpx.TransportError as exc:
                    errors.append(exc)
                else:
                    assert_odata_error(resp, 503)
                    statuses.append(resp.status_code)
    finally:
        logging.getLogger("uvicorn.error").removeHandler(handler)
    assert len(statuses) >= 2 and len(errors) >= 2
    assert all(isinstance(e, httpx.RemoteProtocolError | httpx.ReadError) for e in errors)
    by_status = emu.stats()["responses_by_status"]
    assert by_status["dropped"] == len(errors) and by_status["503"] == len(statuses)
    assert by_status["200"] == 0
    assert not [r for r in records if "completing response" in r.getMessage()]
    emu.configure(fault_rate=0.0)
    assert httpx.get(f"{emu.base_url}/Metadata/PublicEnumerations").status_code == 200


def test_corrupt_modes(client: httpx.Client, emu: Emulator) -> None:
    full = client.get("/Metadata/PublicEntities").content
    emu.configure(corrupt="non_json")
    resp = client.get("/Metadata/PublicEntities")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    with pytest.raises(ValueError):
        resp.json()
    emu.configure(corrupt="truncated")
    resp = client.get("/Metadata/PublicEntities")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    assert int(resp.headers["content-length"]) == len(resp.content) == len(full) // 2
    assert full.startswith(resp.content)
    with pytest.raises(ValueError):
        orjson.loads(resp.content)
    assert client.get(label_url("@SYS13342")).status_code == 200  # labels unaffected


def test_latency(client: httpx.Client, emu: Emulator) -> None:
    emu.configure(latency_ms=80)
    t0 = time.perf_counter()
    assert client.get(label_url("@SYS13342")).status_code == 200
    assert time.perf_counter() - t0 >= 0.08


def test_odata_query_pieces_without_a_server() -> None:
    assert parse_key("('a''b')") == "a'b"
    assert parse_key("(Id='@SYS1', Language='de')") == {"Id": "@SYS1", "Language": "de"}
    with pytest.raises(ODataError, match="Bad key segment"):
        parse_key("(Id=1)")
    fields = frozenset({"Name", "IsReadOnly"})
    pred = parse_filter("startswith(Name,'Cu') and IsReadOnly ne true", fields)
    assert pred({"Name": "Cust", "IsReadOnly": False})
    assert not pred({"Name": "Cust", "IsReadOnly": True})
    with pytest.raises(ODataError, match="Could not find a property named 'Nope'"):
        parse_filter("Nope eq 1", fields)
    items = [{"Name": f"E{i}", "IsReadOnly": i % 2 == 0} for i in range(5)]
    body = orjson.loads(
        query_body("Things", items, fields, "$select=Name&$count=true", 2, "http://h", "/M/Things")
    )
    assert body == {
        "@odata.context": "http://h/Metadata/$metadata#Things(Name)",
        "@odata.count": 5,
        "value": [{"Name": "E0"}, {"Name": "E1"}],
        "@odata.nextLink": "http://h/M/Things?$select=Name&$count=true&$skiptoken=2",
    }
    with pytest.raises(ODataError) as err:
        query_body("Things", items, fields, "$top=-1", None, "http://h", "/M/Things")
    assert err.value.status == 400


def test_fault_gate_checks_auth_before_the_slot() -> None:
    gate = FaultGate(fault_seed=1)
    options = EmulatorOptions(token="t", max_concurrency=1, retry_after=0.5)
    with pytest.raises(ODataError) as err:
        gate.admit(options, b"Bearer wrong")
    assert err.value.status == 401 and gate.in_flight == 0
    gate.admit(options, b"Bearer t")
    with pytest.raises(ODataError) as err:
        gate.admit(options, b"Bearer t")
    assert err.value.status == 429 and (b"retry-after", b"0.5") in err.value.headers
    assert (gate.in_flight, gate.max_in_flight) == (1, 1)
    gate.release()
    assert gate.in_flight == 0
    faulty = EmulatorOptions(fault_rate=0.5)

    def outcomes() -> list[str]:
        out = []
        for _ in range(50):
            try:
                out.append("drop" if gate.fault(faulty) else "ok")
            except ODataError as exc:
                out.append(str(exc.status))
        return out

    gate.reseed(7)
    first = outcomes()
    gate.reseed(7)
    assert outcomes() == first and {"ok", "drop", "503"} == set(first)
    assert not gate.fault(EmulatorOptions())


# ------------------------------------------------------------------------------------------------
# Stats, admin API, lifecycle
# ------------------------------------------------------------------------------------------------


def test_stats_and_request_log(client: httpx.Client, emu: Emulator) -> None:
    t0 = time.time()
    client.get("/Metadata/DataEntities")
    client.get("/Metadata/PublicEnumerations")
    client.get(label_url("@SYS13342"))
    client.get("/Metadata/DataEntities('Nope')")
    client.post(APP_VERSION, json={})
    client.post(PLATFORM, json={})
    t1 = time.time()
    for _ in range(3):
        assert client.get("/_emulator/stats").status_code == 200  # not counted
    stats = client.get("/_emulator/stats").json()
    assert stats == emu.stats()
    assert stats["total_requests"] == 6
    by_endpoint = stats["requests_by_endpoint"]
    assert by_endpoint["DataEntities"] == 1 and by_endpoint["PublicEnumerations"] == 1
    assert by_endpoint["Labels"] == 1 and by_endpoint["PublicEntities"] == 0
    assert by_endpoint["GetApplicationVersion"] == 1 and by_endpoint["GetPlatformBuildVersion"] == 1
    assert stats["responses_by_status"]["200"] == 5 and stats["responses_by_status"]["404"] == 1
    assert stats["in_flight"] == 0 and stats["max_in_flight"] >= 1
    log = emu.request_log()
    assert [e for _, e in log][:3] == ["DataEntities", "PublicEnumerations", "Labels"]
    assert all(t0 <= t <= t1 for t, _ in log) and len(log) == 6
    assert stats["last_request_started_at"] == log[-1][0]

    assert client.post("/_emulator/reset-stats").status_code == 200
    assert emu.stats()["total_requests"] == 0 and emu.request_log() == []

    resp = client.post("/_emulator/config", json={"page_size": 3, "retry_after": "0.5"})
    assert resp.status_code == 200 and resp.json()["page_size"] == 3
    assert emu.options.page_size == 3 and emu.options.retry_after == 0.5
    assert len(client.get("/Metadata/DataEntities").json()["value"]) == 3
    assert client.post("/_emulator/config", json={"bogus": 1}).status_code == 400
    assert client.post("/_emulator/config", json={"corrupt": "weird"}).status_code == 400
    assert emu.options.corrupt is None


def test_emulator_lifecycle_and_validation() -> None:
    with pytest.raises(ValueError, match="loopback"):
        Emulator(host="0.0.0.0")
    with pytest.raises(ValueError, match="loopback"):
        Emulator(host="example.com")
    with pytest.raises(ValueError, match="unknown emulator option"):
        Emulator(colour="blue")
    with pytest.raises(ValueError, match="scale"):
        Emulator(scale="huge")
    emu = Emulator(scale="small", version=2, token="t")
    with emu as base_url:
        assert base_url == emu.base_url and base_url.startswith("http://127.0.0.1:")
        assert not base_url.endswith("/")
        assert isinstance(emu.dataset, Dataset) and emu.dataset.version == 2
        resp = httpx.post(base_url + MODULES, json={}, headers={"Authorization": "Bearer t"})
        assert resp.json()["value"] == build_dataset("small", 2).modules
    with pytest.raises(httpx.ConnectError):
        httpx.get(base_url + "/Metadata/DataEntities", timeout=2)


def test_serve_blocking_until_interrupt() -> None:
    assert callable(serve)
    code = (
        "from d365sync_nb.emulator import EmulatorOptions, serve\n"
        "serve(EmulatorOptions(page_size=5), on_ready=lambda url: print(url, flush=True))\n"
        "print('stopped', flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        body = httpx.get(base_url + "/Metadata/DataEntities", timeout=5).json()
        assert len(body["value"]) == 5 and "@odata.nextLink" in body
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read().strip() == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()


# ------------------------------------------------------------------------------------------------
# Version 2, the next release: every change it makes is recorded in Dataset.changes
# ------------------------------------------------------------------------------------------------

V2_COUNTS = {
    ("data_entity", "added"): 6,
    ("data_entity", "removed"): 5,
    ("data_entity", "changed"): 3,
    ("entity", "added"): 4,
    ("entity", "removed"): 3,
    ("entity", "changed"): 1,  # IsReadOnly, with its data entity's
    ("field", "added"): 5,
    ("field", "removed"): 5,
    ("field", "changed"): 6,  # 5 fields; the type change is two rows (type_name, data_type)
    ("navigation", "added"): 1,
    ("navigation", "removed"): 1,
    ("action", "added"): 1,
    ("action", "removed"): 1,
    ("enumeration", "added"): 3,
    ("enumeration", "removed"): 5,
    ("member", "added"): 5,
    ("member", "removed"): 2,
    ("member", "changed"): 2,  # one Value, one LabelId
}
CHANGE_KEYS = {"kind", "parent", "name", "change", "attribute", "before", "after"}


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _by_key(pairs: list[tuple[tuple[str | None, str], dict[str, Any]]]) -> dict[Any, Any]:
    """Items keyed by (parent, name); names are unique within their parent."""
    out = dict(pairs)
    assert len(out) == len(pairs), "duplicate names"
    return out


def structural_diff(v1: Dataset, v2: Dataset) -> list[dict[str, Any]]:
    """What changed from v1 to v2, found by comparing the two datasets item by item."""
    rows: list[dict[str, Any]] = []

    def compare(kind: str, old: dict[Any, Any], new: dict[Any, Any], attrs: Any) -> None:
        for parent, name in old.keys() - new.keys():
            rows.append(
                dict.fromkeys(CHANGE_KEYS)
                | {"kind": kind, "parent": parent, "name": name, "change": "removed"}
            )
        for parent, name in new.keys() - old.keys():
            rows.append(
                dict.fromkeys(CHANGE_KEYS)
                | {"kind": kind, "parent": parent, "name": name, "change": "added"}
            )
        for key in old.keys() & new.keys():
            a, b = old[key], new[key]
            if a == b:
                continue
            scalars = sorted(k for k, v in a.items() if not isinstance(v, (list, dict)))
            names = scalars if attrs is None else attrs
            if attrs is None:  # every scalar key, on both sides
                assert names == sorted(k for k, v in b.items() if not isinstance(v, (list, dict)))
            for attr in names:
                if a[attr] != b[attr]:
                    rows.append(
                        {
                            "kind": kind,
                            "parent": key[0],
                            "name": key[1],
                            "change": "changed",
                            "attribute": _snake(attr),
                            "before": a[attr],
                            "after": b[attr],
                        }
                    )

    def top(items: list[dict[str, Any]]) -> dict[Any, Any]:
        return _by_key([((None, i["Name"]), i) for i in items])

    def differing(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> set[str]:
        """Names in both versions whose items differ (equal items have equal sub-items)."""
        new_by = {i["Name"]: i for i in new}
        return {i["Name"] for i in old if i["Name"] in new_by and i != new_by[i["Name"]]}

    def nested(items: list[dict[str, Any]], sub: str, keep: set[str]) -> dict[Any, Any]:
        return _by_key(
            [((i["Name"], s["Name"]), s) for i in items if i["Name"] in keep for s in i[sub]]
        )

    compare("data_entity", top(v1.data_entities), top(v2.data_entities), None)
    compare("entity", top(v1.public_entities), top(v2.public_entities), None)
    both = differing(v1.public_entities, v2.public_entities)
    for kind, sub, attrs in (
        ("field", "Properties", None),
        ("navigation", "NavigationProperties", []),  # added/removed only
        ("action", "Actions", []),
    ):
        old = nested(v1.public_entities, sub, both)
        new = nested(v2.public_entities, sub, both)
        compare(kind, old, new, attrs)
    compare("enumeration", top(v1.enumerations), top(v2.enumerations), None)
    both = differing(v1.enumerations, v2.enumerations)
    compare(
        "member",
        nested(v1.enumerations, "Members", both),
        nested(v2.enumerations, "Members", both),
        ["Value", "LabelId", "ConfigurationEnabled"],
    )
    return sorted(
        rows,
        key=lambda r: (r["kind"], r["parent"] or "", r["name"], r["change"], r["attribute"] or ""),
    )


def label_text_diff(v1: Dataset, v2: Dataset) -> list[dict[str, Any]]:
    """Label texts served differently by the two releases, per language, for the ids both
    reference: what the emulator records as kind ``label``."""
    both = v1.label_ids_referenced() & v2.label_ids_referenced()
    return [
        {
            "kind": "label",
            "parent": None,
            "name": i,
            "change": "changed",
            "attribute": lang,
            "before": v1.label_text(i, lang),
            "after": v2.label_text(i, lang),
        }
        for i in sorted(both)
        for lang in ("da", "de", "en-us")
        if v1.label_text(i, lang) != v2.label_text(i, lang)
    ]


@pytest.mark.parametrize("scale", ["small", "realistic"])  # realistic: ~0.75 s per version
def test_version2_changes_are_exactly_the_structural_diff(scale: str) -> None:
    v1, v2 = build_dataset(scale, 1), build_dataset(scale, 2)
    assert v1.changes == []
    assert all(set(r) == CHANGE_KEYS for r in v2.changes)
    structural = [r for r in v2.changes if r["kind"] != "label"]
    assert structural_diff(v1, v2) == structural  # exact, in order
    assert v2.changes == sorted(v2.changes, key=lambda r: (
        r["kind"], r["parent"] or "", r["name"], r["change"], r["attribute"] or ""))  # fmt: skip
    assert [r for r in v2.changes if r["kind"] == "label"] == label_text_diff(v1, v2)
    counts: dict[tuple[str, str], int] = {}
    for r in structural:
        counts[r["kind"], r["change"]] = counts.get((r["kind"], r["change"]), 0) + 1
    assert counts == V2_COUNTS
    assert all((r["attribute"] is None) == (r["change"] != "changed") for r in v2.changes)
    assert all(r["before"] is None is r["after"] for r in v2.changes if r["change"] != "changed")
    assert all(r["before"] != r["after"] for r in v2.changes if r["change"] == "changed")
    nested_kinds = {"field", "navigation", "action", "member"}
    assert all((r["parent"] is not None) == (r["kind"] in nested_kinds) for r in v2.changes)

    def find(kind: str, attribute: str) -> list[dict[str, Any]]:
        return [r for r in v2.changes if r["kind"] == kind and r["attribute"] == attribute]

    # the kinds of change asked for
    (type_name,) = find("field", "type_name")
    (data_type,) = find("field", "data_type")
    assert (type_name["before"], type_name["after"]) == ("Edm.String", "Edm.Int64")
    assert (data_type["before"], data_type["after"]) == ("String", "Int64")
    assert (type_name["parent"], type_name["name"]) == (data_type["parent"], data_type["name"])
    assert len(find("field", "is_mandatory")) == 1
    (field_label,) = find("field", "label_id")
    assert field_label["after"] not in v1.label_ids_referenced() and v2.labels[field_label["after"]]
    fields_changed = {
        (r["parent"], r["name"])
        for r in v2.changes
        if r["kind"] == "field" and r["change"] == "changed"
    }
    assert len(fields_changed) == 5
    (value,) = find("member", "value")
    assert isinstance(value["before"], int) and isinstance(value["after"], int)
    (member_label,) = find("member", "label_id")
    assert v2.labels[member_label["after"]]
    (de_ro,) = find("data_entity", "is_read_only")
    (pe_ro,) = find("entity", "is_read_only")
    de = next(d for d in v2.data_entities if d["Name"] == de_ro["name"])
    assert de["PublicEntityName"] == pe_ro["name"] and de_ro["after"] == pe_ro["after"]
    assert len(find("data_entity", "entity_category")) == 1
    assert len(find("data_entity", "data_management_enabled")) == 1
    # a removed data entity with a public entity takes it along; the others had none
    removed_des = {
        r["name"] for r in v2.changes if r["kind"] == "data_entity" and r["change"] == "removed"
    }
    removed_pes = {
        r["name"] for r in v2.changes if r["kind"] == "entity" and r["change"] == "removed"
    }
    v1_des = {d["Name"]: d for d in v1.data_entities}
    assert {
        v1_des[n]["PublicEntityName"] for n in removed_des if v1_des[n]["DataServiceEnabled"]
    } == removed_pes
    # removed fields were never keys
    v1_props = {(pe["Name"], p["Name"]): p for pe in v1.public_entities for p in pe["Properties"]}
    for r in v2.changes:
        if r["kind"] == "field" and r["change"] == "removed":
            assert not v1_props[r["parent"], r["name"]]["IsKey"]

    # never removed or changed
    assert v2.public_entities[0] == v1.public_entities[0]
    assert v2.data_entities[0] == v1.data_entities[0]
    assert v2.enumerations[:2] == v1.enumerations[:2] and v2.enumerations[0]["Name"] == "NoYes"
    for special in (QUOTE_LABEL_ID, SPACE_LABEL_ID, PERCENT_LABEL_ID):
        for ds_items in (
            (v1.data_entities, v2.data_entities),
            (v1.public_entities, v2.public_entities),
            (v1.enumerations, v2.enumerations),
        ):
            carriers = [
                [
                    i
                    for i in items
                    if i["LabelId"] == special
                    or any(s["LabelId"] == special for s in i.get("Properties", ()))
                ]
                for items in ds_items
            ]
            assert carriers[0] == carriers[1]
    # version 2 is consistent in itself
    enum_names = {e["Name"] for e in v2.enumerations}
    public_names = {p["Name"] for p in v2.public_entities}
    for pe in v2.public_entities:
        for p in pe["Properties"]:
            if p["DataType"] == "Enum":
                assert p["TypeName"].rsplit(".", 1)[-1] in enum_names
        assert all(n["RelatedEntity"] in public_names for n in pe["NavigationProperties"])
    assert v2.label_ids_referenced() <= set(v2.labels)
    new_ids = v2.label_ids_referenced() - v1.label_ids_referenced()
    assert new_ids and all(v2.labels[i] for i in new_ids)
    assert v2.application_version.startswith("10.0.42.")
    assert v1.application_version.startswith("10.0.41.")


def test_version2_is_deterministic() -> None:
    first, again = build_dataset("small", 2), build_dataset("small", 2)
    assert first.changes and first.changes == again.changes
    assert first == again  # data, labels, modules and versions too
    assert build_dataset("small", 2, seed=7).changes != first.changes  # the seed decides


def test_version1_records_no_changes() -> None:
    assert build_dataset("small", 1).changes == []
    assert build_dataset("small").changes == []


# ------------------------------------------------------------------------------------------------
# Releases while running (a watch finds the upgrade)
# ------------------------------------------------------------------------------------------------
def test_release_after_moves_to_the_next_release_at_the_first_request_due() -> None:
    with Emulator(scale="small", release_after=0) as base_url, httpx.Client(base_url=base_url) as c:
        assert c.post(APP_VERSION, json={}).json()["value"].startswith("10.0.42")
        assert c.get("/_emulator/config").json()["version"] == 2


def test_release_after_is_a_runtime_option_and_waits_its_time() -> None:
    with Emulator(scale="small") as base_url, httpx.Client(base_url=base_url) as c:
        assert c.post("/_emulator/config", json={"release_after": 3600}).status_code == 200
        assert c.post(APP_VERSION, json={}).json()["value"].startswith("10.0.41")
        bad = c.post("/_emulator/config", json={"release_after": -1})
        assert bad.status_code == 400 and "release_after" in bad.json()["error"]["message"]


def test_the_release_endpoint_upgrades_at_once_then_refuses_at_the_last_release() -> None:
    with Emulator(scale="small") as base_url, httpx.Client(base_url=base_url) as c:
        moved = c.post("/_emulator/release")
        assert moved.status_code == 200 and moved.json()["version"] == 2
        assert c.post(APP_VERSION, json={}).json()["value"].startswith("10.0.42")
        last = c.post("/_emulator/release")
        assert last.status_code == 409 and "last release" in last.json()["error"]["message"]
