"""SQLite schema of the metadata cache (one file per environment).

Metadata rows carry a ``build_id``: a sync writes a new build beside the current one, and
``versions.current_build_id`` switches to it in one transaction at finalize. Readers always
join through ``current_build_id``, so a failed, cancelled or killed sync is never visible.
Labels are a dictionary shared across versions (keyed by id and language); a build stages
the labels it fetches and merges them in at finalize, so they too appear all at once or never.
A finalized build also records which text of each label (per language) it was synced with
(``build_labels``): the texts themselves are kept once per distinct text (``label_texts``,
revisions of a label), so two versions with the same texts share them.

``SCHEMA`` is the current schema (new files get it as is); ``MIGRATIONS[v]`` lists the SQL steps
that bring a file of version ``v - 1`` to ``v``. To add version 7: change ``SCHEMA``, append the
steps as ``MIGRATIONS[7]`` and set ``SCHEMA_VERSION = 7``.
"""

SCHEMA_VERSION = 6

# One row per attempt sent (the request log), kept for the most recent sessions only; its
# columns are d365/request_log.py's STORED_REQUEST_COLUMNS.
REQUESTS_TABLE = """
CREATE TABLE IF NOT EXISTS requests (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    started_at REAL NOT NULL,
    phase TEXT,
    endpoint TEXT NOT NULL,
    status INTEGER,
    error TEXT,
    attempt INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    bytes INTEGER NOT NULL,
    retry_cause TEXT,
    request_id TEXT NOT NULL,
    activity_id TEXT,
    language TEXT,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
"""
# The table as version 3 created it (its migration must not change).
_REQUESTS_TABLE_V3 = REQUESTS_TABLE.replace("    language TEXT,\n", "")

# Label texts per version (issue 23).
LABEL_VERSION_TABLES = """
-- Each distinct text a label had in a language (its revisions), value '' when it has none.
CREATE TABLE IF NOT EXISTS label_texts (
    label_id TEXT NOT NULL,
    language TEXT NOT NULL,
    rev INTEGER NOT NULL,
    value TEXT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (label_id, language, rev)
) WITHOUT ROWID;

-- Which revision of each label a finalized build was synced with, per language.
CREATE TABLE IF NOT EXISTS build_labels (
    build_id INTEGER NOT NULL,
    label_id TEXT NOT NULL,
    language TEXT NOT NULL,
    rev INTEGER NOT NULL,
    PRIMARY KEY (build_id, language, label_id)
) WITHOUT ROWID;
"""

SCHEMA = """
PRAGMA journal_mode = WAL;

CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);

CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    modules_hash TEXT NOT NULL UNIQUE,
    modules_json TEXT NOT NULL,
    module_count INTEGER NOT NULL,
    application_version TEXT,
    platform_version TEXT,
    first_seen TEXT NOT NULL,
    last_detected TEXT NOT NULL,
    current_build_id INTEGER,
    synced_at TEXT,
    has_metadata INTEGER NOT NULL DEFAULT 0,
    has_labels INTEGER NOT NULL DEFAULT 0,
    counts_json TEXT
);

CREATE TABLE IF NOT EXISTS builds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    version_id INTEGER NOT NULL REFERENCES versions(id),
    session_id TEXT NOT NULL,
    strategy TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS data_entities (
    build_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    public_entity_name TEXT,
    public_collection_name TEXT,
    label_id TEXT,
    data_service_enabled INTEGER,
    data_management_enabled INTEGER,
    entity_category TEXT,
    is_read_only INTEGER,
    PRIMARY KEY (build_id, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS public_entities (
    build_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    entity_set_name TEXT,
    label_id TEXT,
    is_read_only INTEGER,
    configuration_enabled INTEGER,
    PRIMARY KEY (build_id, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS entity_properties (
    build_id INTEGER NOT NULL,
    entity_name TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    name TEXT NOT NULL,
    type_name TEXT,
    data_type TEXT,
    label_id TEXT,
    is_key INTEGER,
    is_mandatory INTEGER,
    configuration_enabled INTEGER,
    allow_edit INTEGER,
    allow_edit_on_create INTEGER,
    is_dimension INTEGER,
    dimension_relation TEXT,
    is_dynamic_dimension INTEGER,
    dimension_legal_entity_property TEXT,
    dimension_type_property TEXT,
    PRIMARY KEY (build_id, entity_name, ordinal)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS navigation_properties (
    build_id INTEGER NOT NULL,
    entity_name TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    name TEXT NOT NULL,
    related_entity TEXT,
    related_relation_name TEXT,
    cardinality TEXT,
    constraints_json TEXT,
    PRIMARY KEY (build_id, entity_name, ordinal)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS property_groups (
    build_id INTEGER NOT NULL,
    entity_name TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    name TEXT NOT NULL,
    properties_json TEXT,
    PRIMARY KEY (build_id, entity_name, ordinal)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS entity_actions (
    build_id INTEGER NOT NULL,
    entity_name TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    name TEXT NOT NULL,
    binding_kind TEXT,
    field_lookup TEXT,
    parameters_json TEXT,
    return_type_name TEXT,
    return_is_collection INTEGER,
    PRIMARY KEY (build_id, entity_name, ordinal)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS enumerations (
    build_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    label_id TEXT,
    PRIMARY KEY (build_id, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS enumeration_members (
    build_id INTEGER NOT NULL,
    enum_name TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    name TEXT NOT NULL,
    value INTEGER,
    label_id TEXT,
    configuration_enabled INTEGER,
    PRIMARY KEY (build_id, enum_name, ordinal)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS labels (
    label_id TEXT NOT NULL,
    language TEXT NOT NULL,
    value TEXT,
    status TEXT NOT NULL,
    fetched_at TEXT NOT NULL,
    PRIMARY KEY (label_id, language)
) WITHOUT ROWID;

-- Labels fetched by a build, merged into ``labels`` only when the build is finalized.
CREATE TABLE IF NOT EXISTS staged_labels (
    build_id INTEGER NOT NULL,
    label_id TEXT NOT NULL,
    language TEXT NOT NULL,
    value TEXT,
    status TEXT NOT NULL,
    fetched_at TEXT NOT NULL,
    PRIMARY KEY (build_id, label_id, language)
) WITHOUT ROWID;

CREATE VIRTUAL TABLE IF NOT EXISTS search_index USING fts5(
    kind, name, label, parent, build_id UNINDEXED, tokenize = 'unicode61'
);

CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    environment TEXT NOT NULL,
    strategy TEXT NOT NULL,
    status TEXT NOT NULL,
    global_version_id INTEGER,
    initiated_by TEXT,
    started_at TEXT NOT NULL,
    completed_at TEXT,
    error TEXT,
    message TEXT,
    counts_json TEXT,
    requests INTEGER,
    pid INTEGER,
    host TEXT,
    http_json TEXT,
    -- 1 once the session's request log was deleted (only the most recent sessions keep one)
    request_log_pruned INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions(started_at);

CREATE TABLE IF NOT EXISTS session_phases (
    session_id TEXT NOT NULL REFERENCES sessions(session_id),
    phase TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    status TEXT NOT NULL,
    items_processed INTEGER NOT NULL,
    items_total INTEGER,
    current_item TEXT,
    started_at TEXT,
    completed_at TEXT,
    error TEXT,
    weight REAL,
    note TEXT,
    PRIMARY KEY (session_id, phase)
) WITHOUT ROWID;
"""
SCHEMA += REQUESTS_TABLE + LABEL_VERSION_TABLES

# One row per version check of a watch (``d365sync watch``): what it saw and what it did
# (store/checks.py).
CHECKS_TABLE = """
CREATE TABLE IF NOT EXISTS checks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    checked_at TEXT NOT NULL,
    environment TEXT NOT NULL,
    action TEXT NOT NULL,
    global_version_id INTEGER,
    application_version TEXT,
    platform_version TEXT,
    previous_version_id INTEGER,
    reason TEXT,
    strategy TEXT,
    session_id TEXT,
    error TEXT,
    notified INTEGER NOT NULL DEFAULT 0,
    notify_failed INTEGER NOT NULL DEFAULT 0,
    seconds REAL
);
"""
CHECKS_INDEX = "CREATE INDEX IF NOT EXISTS checks_time ON checks(checked_at);"
SCHEMA += CHECKS_TABLE + CHECKS_INDEX + "\n"

# Steps from version v - 1 to v, run in one transaction (with the version bump) when a file opens.
MIGRATIONS: dict[int, list[str]] = {
    2: [
        "ALTER TABLE session_phases ADD COLUMN note TEXT",
        # SyncStatus.PENDING is gone; a 'pending' row was treated as running, so it is one
        "UPDATE sessions SET status = 'running' WHERE status = 'pending'",
    ],
    3: ["ALTER TABLE sessions ADD COLUMN http_json TEXT", _REQUESTS_TABLE_V3],
    4: [
        "ALTER TABLE sessions ADD COLUMN request_log_pruned INTEGER NOT NULL DEFAULT 0",
        # before, a session that sent requests but has no row left was taken as pruned
        "UPDATE sessions SET request_log_pruned = 1 WHERE coalesce(requests, 0) > 0"
        " AND session_id NOT IN (SELECT session_id FROM requests)",
    ],
    # issue 23, label texts per version: the dictionary's texts become revision 1, and each
    # version's visible build is recorded as synced with them
    5: [
        "ALTER TABLE requests ADD COLUMN language TEXT",  # a label request's language
        *(f"{statement.strip()};" for statement in LABEL_VERSION_TABLES.split(";")
          if statement.strip()),
        "INSERT INTO label_texts SELECT label_id, language, 1, coalesce(value, ''), status"
        " FROM labels",
        "INSERT OR IGNORE INTO build_labels SELECT v.current_build_id, l.label_id, l.language, 1"
        " FROM versions v JOIN labels l"
        " WHERE v.has_labels = 1 AND v.current_build_id IS NOT NULL AND l.label_id IN ("
        + " UNION ".join(
            f"SELECT label_id FROM {t} WHERE build_id = v.current_build_id"
            for t in ("data_entities", "public_entities", "entity_properties", "enumerations",
                      "enumeration_members")
        )
        + ")",
    ],
    # issue 18: one row per version check of a watch
    6: [CHECKS_TABLE, CHECKS_INDEX],
}

# Tables whose rows belong to a build.
BUILD_TABLES: tuple[str, ...] = (
    "data_entities",
    "public_entities",
    "entity_properties",
    "navigation_properties",
    "property_groups",
    "entity_actions",
    "enumerations",
    "enumeration_members",
)

SCHEMA_TABLES = (
    "public_entities",
    "entity_properties",
    "navigation_properties",
    "property_groups",
    "entity_actions",
)
ENUM_TABLES = ("enumerations", "enumeration_members")
