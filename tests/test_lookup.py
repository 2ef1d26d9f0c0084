"""What a user typed, parsed once: session ids and prefixes, global version ids, dates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from d365sync_nb.errors import ConfigurationError, SessionNotFoundError
from d365sync_nb.sync.lookup import (
    as_status,
    as_time,
    as_version_id,
    check_phase,
    session_id_from_prefix,
)

A = "0a1b2c3d-0000-4000-8000-000000000001"
B = "0a1b9999-0000-4000-8000-000000000002"


def ids(*known: str):
    return lambda prefix: [i for i in known if i.startswith(prefix)]


def test_a_prefix_names_one_session_or_says_why_not() -> None:
    assert session_id_from_prefix("0a1b2", ids(A, B)) == A
    assert session_id_from_prefix(A.upper(), ids()) == A  # a full id needs no look-up
    with pytest.raises(SessionNotFoundError, match="matches 2 sessions"):
        session_id_from_prefix("0a1b", ids(A, B))
    with pytest.raises(SessionNotFoundError, match="4\\+ characters"):
        session_id_from_prefix("0a1", ids(A, B))
    with pytest.raises(SessionNotFoundError, match="No sync session with id 'ffff'"):
        session_id_from_prefix("ffff", ids(A, B))


def test_a_look_up_that_returns_other_ids_does_not_widen_the_match() -> None:
    assert session_id_from_prefix("0a1b2", lambda prefix: [A, B]) == A


def test_versions_dates_statuses_and_phases() -> None:
    assert as_version_id("7") == 7
    with pytest.raises(ConfigurationError, match="must be an integer"):
        as_version_id("v7")
    with pytest.raises(ConfigurationError, match="between 1 and"):
        as_version_id(0)
    assert as_time("2026-11-30", "since") == datetime(2026, 11, 30, tzinfo=UTC)
    with pytest.raises(ConfigurationError, match="since must be a date"):
        as_time("yesterday", "since")
    assert as_status(" Completed ") == "completed" and as_status(None) is None
    with pytest.raises(ConfigurationError, match="Unknown status 'done'"):
        as_status("done")
    check_phase("labels")
    with pytest.raises(ConfigurationError, match="Unknown phase 'label'"):
        check_phase("label")
