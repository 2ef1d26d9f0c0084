"""The request log's record: one row per attempt a client sent, and the words it uses.

:class:`RequestRow` is the one shape of a row: the client records it (:mod:`.stats`), the store
writes it (``requests`` table: ``session_id`` and :data:`REQUEST_COLUMNS`), and every surface
reads it back as a dict with :data:`REQUEST_COLUMNS` as keys (``seq`` numbers the attempts of a
session in the order sent; ``started_at`` becomes an ISO time).
"""

from __future__ import annotations

from typing import NamedTuple

# An attempt without a complete, usable answer, by kind: a dropped connection, a stalled read,
# a connection refused or reset, a body cut short or undecodable.
TRANSPORT_ERRORS: tuple[str, ...] = ("dropped", "timeout", "connect", "garbled")
# Every ``error`` a row may carry: the transport errors, an answer that is not JSON, a cancel.
REQUEST_ERRORS: tuple[str, ...] = (*TRANSPORT_ERRORS, "not_json", "cancelled")


class RequestRow(NamedTuple):
    """One attempt, as the request log stores it."""

    started_at: float  # seconds since the epoch
    phase: str | None
    endpoint: str
    status: int | None  # None: no complete answer
    error: str | None  # one of REQUEST_ERRORS, or None
    attempt: int  # 1 for the first try of a request, 2 for its first retry, ...
    latency_ms: float
    bytes: int
    retry_cause: str | None  # why this attempt was retried (e.g. "429"), None if it was not
    request_id: str
    activity_id: str | None
    language: str | None = None  # a label request's language (as asked, lower case)


# The columns of a request-log row as read back (``manager.get_request_log``), in order.
REQUEST_COLUMNS: tuple[str, ...] = ("seq", *RequestRow._fields)
# The columns of the ``requests`` table (store/schema.py), in order.
STORED_REQUEST_COLUMNS: tuple[str, ...] = ("session_id", *REQUEST_COLUMNS)
