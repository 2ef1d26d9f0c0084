"""Global versions: a set of installed modules (keyed by their hash), the same across
environments, and which build of it is visible (``current_build_id``)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from d365sync_nb.metadata import EnvironmentVersion
from d365sync_nb.store.database import Database, now_iso


class Versions:
    """The global versions recorded in one cache file."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def upsert_version(self, env: EnvironmentVersion) -> int:
        """The id of the global version with these modules (created when first seen)."""
        modules = json.dumps([m.model_dump() for m in env.modules])
        now = now_iso()
        with self.db.write() as conn:
            # update first: an upsert that conflicts would still use up an AUTOINCREMENT id,
            # and version ids are what users type (--version 2)
            seen = conn.execute(
                "UPDATE versions SET last_detected = ?, application_version = ?,"
                " platform_version = ? WHERE modules_hash = ?",
                (now, env.application_version, env.platform_version, env.modules_hash),
            ).rowcount
            if not seen:
                conn.execute(
                    "INSERT INTO versions(modules_hash, modules_json, module_count,"
                    " application_version, platform_version, first_seen, last_detected)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (
                        env.modules_hash,
                        modules,
                        len(env.modules),
                        env.application_version,
                        env.platform_version,
                        now,
                        now,
                    ),
                )
            row = conn.execute(
                "SELECT id FROM versions WHERE modules_hash = ?", (env.modules_hash,)
            ).fetchone()
        return int(row["id"])

    def get_version(self, version_id: int) -> dict[str, Any] | None:
        rows = self.db.rows("SELECT * FROM versions WHERE id = ?", (version_id,))
        return _version_dict(rows[0]) if rows else None

    def list_versions(self) -> list[dict[str, Any]]:
        return [_version_dict(r) for r in self.db.rows("SELECT * FROM versions ORDER BY id")]

    def latest_synced_version(self) -> dict[str, Any] | None:
        rows = self.db.rows(
            "SELECT * FROM versions WHERE current_build_id IS NOT NULL"
            " ORDER BY julianday(synced_at) DESC, id DESC LIMIT 1"
        )
        return _version_dict(rows[0]) if rows else None

    def summaries(self) -> list[dict[str, Any]]:
        """Every version as answers name it: ``global_version_id``, ``modules`` (how many),
        application and platform version, when synced, what it holds, its counts."""
        return [
            {
                "global_version_id": v["id"],
                "modules": v["module_count"],
                "application_version": v["application_version"],
                "platform_version": v["platform_version"],
                "synced_at": v["synced_at"],
                "has_metadata": v["has_metadata"],
                "has_labels": v["has_labels"],
                "counts": v["counts"],
            }
            for v in self.list_versions()
        ]


def _version_dict(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    data["modules"] = json.loads(data.pop("modules_json"))
    data["counts"] = json.loads(data.pop("counts_json") or "{}")
    data["has_metadata"] = bool(data["has_metadata"])
    data["has_labels"] = bool(data["has_labels"])
    return data
