"""The metadata explorer's magics and functions in a real IPython shell: DataFrames with their
dtypes, the diff after the emulator's upgrade with its summary line and chart, export, errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from matplotlib.figure import Figure

from d365sync_nb import notebook as nb
from d365sync_nb.emulator import build_dataset

V2 = build_dataset("small", 2)


def test_tables_diff_chart_and_export(connected: InteractiveShell, capsys, tmp_path: Path) -> None:
    connected.run_cell("%d365sync start --wait")
    entities = connected.run_line_magic("d365sync", "entities --category Master")
    assert isinstance(entities, pd.DataFrame) and len(entities) > 0
    assert set(entities["category"]) == {"Master"}
    assert str(entities["is_read_only"].dtype) == "boolean"
    assert str(entities["fields"].dtype) == "Int64" and entities["fields"].isna().any()
    pe = V2.public_entities[0]
    fields = nb.fields(pe["EntitySetName"])
    assert list(fields["name"]) == [p["Name"] for p in pe["Properties"]]
    assert fields.attrs["title"].startswith(f"fields of {pe['Name']} (version 1")
    members = connected.run_line_magic("d365sync", "members NoYes")
    assert list(members["value"]) == [0, 1] and str(members["value"].dtype) == "Int64"
    assert list(nb.relations(pe["Name"])["name"]) == [n["Name"] for n in pe["NavigationProperties"]]
    assert nb.enums("noyes")["name"].tolist() == ["NoYes"]
    missing = nb.labels(missing=True)
    assert len(missing) > 0 and set(missing["status"]) == {"missing", "empty"}
    assert missing["text"].isna().sum() == (missing["status"] == "missing").sum()

    nb.get_connection().emulator.configure(version=2)  # the environment is upgraded
    connected.run_cell("%d365sync start --wait --strategy incremental")
    capsys.readouterr()
    diff = connected.run_line_magic("d365sync", "diff")
    summary_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary_line.startswith("version 1 (10.0.41") and "→ version 2 (" in summary_line
    assert summary_line.endswith(diff.attrs["summary_text"])
    # an incremental upgrade keeps the label texts it had: no label change, the rest exactly
    assert len(diff) == len([c for c in V2.changes if c["kind"] != "label"])
    assert list(diff["kind"].cat.categories)[:2] == ["entity", "data_entity"]
    changed = diff[diff["change"] == "changed"]
    assert changed["attribute"].notna().all() and changed["before"].notna().all()
    retyped = changed[changed["attribute"] == "type_name"]
    assert list(zip(retyped["before"], retyped["after"], strict=True)) == [
        (c["before"], c["after"]) for c in V2.changes if c["attribute"] == "type_name"
    ]
    figure = nb.charts.changes_by_kind(diff)
    assert isinstance(figure, Figure)
    bars = [a for a in figure.axes[0].patches if a.get_gid() == "diff-removed"]
    assert sum(b.get_width() for b in bars) == sum(
        1 for c in V2.changes if c["change"] == "removed"
    )
    files = connected.run_line_magic("d365sync", f"export {tmp_path / 'out'} --version 1")
    assert list(files["table"])[:2] == ["entities", "fields"]
    assert (tmp_path / "out" / "entities.csv").is_file()


def test_languages_untranslated_coverage_and_label_changes(
    connected: InteractiveShell, capsys
) -> None:
    """Two languages synced from the magic; the tables and the label diff from the magic and
    the Python functions, exact against the emulator's record."""
    v1 = build_dataset("small", 1)
    connected.run_cell("%d365sync start --wait --languages en-us,de")
    coverage = connected.run_line_magic("d365sync", "coverage")
    assert list(coverage["language"]) == ["de", "en-us"]
    for row in coverage.to_dict("records"):
        expected = v1.expected_label_counts(row["language"])
        assert {k: row[k] for k in expected} == expected
    assert str(coverage["found"].dtype) == "Int64"
    figure = nb.charts.label_coverage(coverage)
    bars = [p for p in figure.axes[0].patches if p.get_gid() == "coverage-missing"]
    assert [b.get_width() for b in bars] == [
        v1.expected_label_counts(lang)["missing"] for lang in ("de", "en-us")
    ]
    untranslated = connected.run_line_magic("d365sync", "labels --untranslated --language de")
    assert list(untranslated["label_id"]) == sorted(v1.untranslated("de"))
    assert nb.labels(language="de", untranslated=True)["label_id"].tolist() == sorted(
        v1.untranslated("de")
    )
    pe = v1.public_entities[0]
    fields = connected.run_line_magic(
        "d365sync", f"fields {pe['Name']} --language en-us --language de"
    )
    assert fields["label_de"].tolist() == [
        v1.label_text(p["LabelId"], "de") if p["LabelId"] else None for p in pe["Properties"]
    ]
    assert nb.fields(pe["Name"], language=["en-us", "de"]).equals(fields)

    nb.get_connection().emulator.configure(version=2)
    connected.run_cell("%d365sync start --wait --languages en-us,de")
    capsys.readouterr()
    diff = connected.run_line_magic("d365sync", "diff")
    labels = diff[diff["kind"] == "label"]
    expected = [c for c in V2.changes if c["kind"] == "label" and c["attribute"] != "da"]
    assert labels[["name", "attribute", "before", "after"]].to_dict("records") == [
        {k: c[k] for k in ("name", "attribute", "before", "after")} for c in expected
    ]
    assert diff.attrs["summary_text"].endswith(f"{len(expected)} label texts changed")
    assert nb.diff()["kind"].eq("label").sum() == len(expected)


def test_explorer_errors_are_one_line(connected: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="No synced metadata in this cache yet"):
        connected.run_line_magic("d365sync", "entities")
    connected.run_cell("%d365sync start --wait")
    with pytest.raises(UsageError, match="needs two synced versions"):
        connected.run_line_magic("d365sync", "diff")
    with pytest.raises(UsageError, match="No entity 'Nope' in version 1"):
        connected.run_line_magic("d365sync", "fields Nope")
    with pytest.raises(UsageError, match="--format: one of csv, parquet, not 'xlsx'"):
        connected.run_line_magic("d365sync", "export out --format xlsx")
    with pytest.raises(UsageError, match="No environment 'prod'"):
        connected.run_line_magic("d365sync", "diff --against prod")
