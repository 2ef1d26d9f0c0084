"""Runs one session after its version check: the data phases per plan, the search index, then
an atomic finalize; and settles the session's outcome (completed, failed or cancelled).

A data phase either fetches from the service, reuses rows already cached (this version's previous
build, or another environment's cache with identical modules: status ``reused`` with a note and
no request), or is skipped. Nothing is ever reported as done that did not happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable

from d365sync_nb.d365.client import D365MetadataClient
from d365sync_nb.errors import D365Error, D365SyncError, clean_message
from d365sync_nb.metadata import Label, is_label_id
from d365sync_nb.models import PhaseStatus, SyncPhase, SyncSession, SyncStatus, utcnow
from d365sync_nb.store import MetadataStore
from d365sync_nb.store.schema import ENUM_TABLES, SCHEMA_TABLES
from d365sync_nb.sync.plan import METADATA_PHASES, Action, SyncPlan
from d365sync_nb.sync.progress import ProgressReporter

log = logging.getLogger(__name__)

LABEL_BATCH = 1000
# Labels the service may refuse (kept as failed, the sync completes) before the sync fails:
# past this share a "completed" sync would hold a hollow label dictionary.
LABEL_FAILURE_SHARE = 0.05
LABEL_FAILURE_STREAK = 100  # refused in a row (no label between answered): the sync fails
LABELS_NAMED = 10  # failed labels a note names
LABEL_FLUSH_SECONDS = 0.5
PHASE_TABLES = {
    SyncPhase.ENTITIES: ("data_entities",),
    SyncPhase.SCHEMAS: SCHEMA_TABLES,
    SyncPhase.ENUMERATIONS: ENUM_TABLES,
}
# What the first table of each phase holds, for notes like "reused 4,512 data entities".
PHASE_ITEMS = {
    SyncPhase.ENTITIES: "data entities",
    SyncPhase.SCHEMAS: "public entities",
    SyncPhase.ENUMERATIONS: "enumerations",
}


class SessionRunner:
    """Executes a plan for one session against one client and one store."""

    def __init__(
        self,
        session: SyncSession,
        plan: SyncPlan,
        client: D365MetadataClient,
        store: MetadataStore,
        reporter: ProgressReporter,
        *,
        language: str = "en-us",
        languages: tuple[str, ...] = (),
        log_requests: bool = True,
    ) -> None:
        self.session = session
        self.plan = plan
        self.client = client
        self.store = store
        self.reporter = reporter
        self.languages = languages or (language,)  # labels are synced in each of these
        self.language = self.languages[0]  # the counts' and the search index's language
        self.log_requests = log_requests  # write the request log (else its rows are dropped)
        assert session.global_version_id is not None
        self.version_id: int = session.global_version_id
        self.build_id: int | None = None
        self.finalized = False
        self._expected_public: int | None = None
        self.failed_labels: list[Label] = []

    async def execute(self) -> None:
        """Run the plan and settle the outcome; a failure or cancel discards the new build.

        The outcome (status, error, end time, the phase's state) is set in one step, after the
        clean-up, so nobody reading the session sees a final status with a phase still running.
        """
        session, r = self.session, self.reporter
        try:
            try:
                async with self.client:
                    await self._run()
            finally:
                r.refresh_http()
            self._settle(SyncStatus.COMPLETED)
        except asyncio.CancelledError:
            if self.finalized:  # the cancel came after the new build was committed
                session.message = "Cancel arrived after the new version was committed; kept it"
                r.end(SyncPhase.FINALIZING)
                self._settle(SyncStatus.COMPLETED)
            else:
                await self._discard_despite_cancels()
                phase = session.current_phase
                self._settle(SyncStatus.CANCELLED)
                r.fail(phase, "cancelled", PhaseStatus.CANCELLED)
        except Exception as exc:
            error = (
                str(exc)
                if isinstance(exc, D365SyncError)
                else clean_message(f"{type(exc).__name__}: {exc}")
            )
            if not isinstance(exc, D365SyncError):  # a bug: its traceback only with --debug
                log.error("sync session %s failed: %s", session.session_id, error)
                log.debug("sync session %s failed", session.session_id, exc_info=exc)
            await self._discard_despite_cancels()
            phase = session.current_phase
            self._settle(SyncStatus.FAILED, error)
            r.fail(phase, error, PhaseStatus.FAILED)

    def cancelled_before_start(self) -> None:
        """The task was cancelled before its first step: nothing was fetched or written."""
        self._settle(SyncStatus.CANCELLED)
        self.reporter.fail(None, "cancelled", PhaseStatus.CANCELLED)

    async def _discard_despite_cancels(self) -> None:
        """Drop the unfinished build; a further cancel (a second click) must not cut it short,
        or the outcome would never be settled."""
        cleanup = asyncio.ensure_future(self.discard())
        while not cleanup.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(cleanup)
        cleanup.result()

    def _settle(self, status: SyncStatus, error: str | None = None) -> None:
        session = self.session
        session.status, session.error, session.completed_at = status, error, utcnow()
        if status == SyncStatus.COMPLETED:
            session.current_phase = None

    async def discard(self) -> None:
        """Drop the unfinished build (the previous visible one stays exactly as it was)."""
        if self.build_id is not None and not self.finalized:
            await self.store.run(self.store.builds.discard, self.build_id)

    async def _run(self) -> None:
        builds = self.store.builds
        self.build_id = await self.store.run(
            builds.begin, self.version_id, self.session.session_id, self.session.strategy.value
        )
        for phase in METADATA_PHASES:
            await self._metadata_phase(phase)
        await self._labels_phase()
        await self._index()
        await self._finalize()

    # -- metadata phases ---------------------------------------------------------------
    async def _metadata_phase(self, phase: SyncPhase) -> None:
        action = self.plan.action(phase)
        if action == Action.FETCH:
            fetch = {
                SyncPhase.ENTITIES: self._fetch_entities,
                SyncPhase.SCHEMAS: self._fetch_schemas,
                SyncPhase.ENUMERATIONS: self._fetch_enumerations,
            }[phase]
            await fetch()
        elif action == Action.REUSE:
            previous = self.plan.previous_build
            self.reporter.begin(phase, item=f"build {previous}")
            copied = await self.store.run(
                self.store.builds.copy, previous, self.build_id, PHASE_TABLES[phase]
            )
            rows = next(iter(copied.values()), 0)  # the phase's first table: its items
            self.reporter.reuse(
                phase, f"reused {rows:,} {PHASE_ITEMS[phase]} from build {previous}"
            )
        elif action == Action.SHARE:
            source = self.plan.sharing
            assert source is not None
            self.reporter.begin(phase, item=f"cache of {source.environment}")
            copied = await self.store.run(
                self.store.sharing.copy_from_file,
                source.path,
                source.build_id,
                self.build_id,
                PHASE_TABLES[phase],
            )
            rows = next(iter(copied.values()), 0)
            self.reporter.reuse(
                phase,
                f"copied {rows:,} {PHASE_ITEMS[phase]} from the cache of {source.environment}",
            )
        else:
            self.reporter.skip(phase, f"not part of '{self.session.strategy}'")

    async def _fetch_entities(self) -> None:
        r, phase = self.reporter, SyncPhase.ENTITIES
        r.begin(phase, item="DataEntities")
        entities = await self.client.get_data_entities()
        r.total(phase, len(entities))
        await self.store.run(self.store.rows.write_data_entities, self.build_id, entities)
        self._expected_public = len(
            {e.public_entity_name for e in entities if e.public_entity_name}
        )
        r.advance(phase, len(entities), item=entities[-1].name if entities else None)
        r.end(phase, note=duplicates_note((e.name for e in entities), "data entity"))

    async def _fetch_schemas(self) -> None:
        r, phase = self.reporter, SyncPhase.SCHEMAS
        r.begin(phase, total=self._expected_public, item="PublicEntities")
        pending: asyncio.Future[None] | None = None
        seen = 0
        names: list[str] = []
        async for chunk in self.client.iter_public_entities(expected=self._expected_public):
            names.extend(e.name for e in chunk)
            if pending is not None:
                await pending  # one write in flight while the next chunk downloads
            pending = asyncio.ensure_future(
                self.store.run(self.store.rows.write_public_entities, self.build_id, chunk)
            )
            seen += len(chunk)
            state = self.session.phases[phase]
            if state.items_total is not None and seen > state.items_total:
                state.items_total = None  # the estimate was low: show a plain count
            r.advance(phase, len(chunk), item=chunk[-1].name)
        if pending is not None:
            await pending
        self.session.phases[phase].items_total = seen
        r.end(phase, note=duplicates_note(names, "public entity"))

    async def _fetch_enumerations(self) -> None:
        r, phase = self.reporter, SyncPhase.ENUMERATIONS
        r.begin(phase, item="PublicEnumerations")
        enums = await self.client.get_enumerations()
        r.total(phase, len(enums))
        await self.store.run(self.store.rows.write_enumerations, self.build_id, enums)
        r.advance(phase, len(enums), item=enums[-1].name if enums else None)
        r.end(phase, note=duplicates_note((e.name for e in enums), "enumeration"))

    # -- labels ------------------------------------------------------------------------
    async def _labels_phase(self) -> None:
        r, phase, build_rows = self.reporter, SyncPhase.LABELS, self.store.rows
        action = self.plan.action(phase)
        if action == Action.SKIP:
            r.skip(phase, f"not part of '{self.session.strategy}'")
            return
        if action == Action.SHARE:
            source = self.plan.sharing
            assert source is not None
            r.begin(phase, item=f"cache of {source.environment}")
            copied = 0
            for language in self.languages:
                copied += await self.store.run(
                    self.store.sharing.copy_labels_from_file, source.path, self.build_id, language
                )
            r.reuse(phase, f"copied {copied:,} labels from the cache of {source.environment}")
            return
        r.begin(phase, item="collecting label ids")
        ids = await self.store.run(build_rows.label_ids, self.build_id)
        # a LabelId that is not of the label form holds the text itself: nothing to fetch
        texts = [i for i in ids if not is_label_id(i)]
        if texts:
            own = [Label(id=t, language=lang, value=t) for lang in self.languages for t in texts]
            await self.store.run(build_rows.write_labels, self.build_id, own)
            ids = ids - set(texts)
        wanted: dict[str, list[str]] = {}  # language -> the ids to fetch in it
        reused: dict[str, int] = {}
        for language in self.languages:
            todo = ids
            if action == Action.FETCH_MISSING:
                cached = await self.store.run(build_rows.cached_label_ids, language)
                reused[language] = len(ids & cached)
                todo = ids - cached
            if todo:
                wanted[language] = sorted(todo)
        if not wanted:
            r.reuse(phase, f"all {sum(reused.values()):,} labels reused from the cache"
                    + _per_language(reused, self.languages))  # fmt: skip
            return
        r.total(phase, sum(len(v) for v in wanted.values()))  # (id, language) pairs
        await self._fetch_labels(wanted)
        notes = []
        if len(self.languages) > 1:
            notes.append(
                "fetched " + ", ".join(f"{lang} {len(v):,}" for lang, v in wanted.items())
            )
        if any(reused.values()):
            notes.append(
                f"{sum(reused.values()):,} cached labels reused"
                + _per_language(reused, self.languages)
            )
        if self.failed_labels:
            notes.append(failed_labels_note(self.failed_labels))
        r.end(phase, note="; ".join(notes) or None)

    async def _fetch_labels(self, wanted: dict[str, list[str]]) -> None:
        """Fetch each language's ids in turn; the items count (id, language) pairs."""
        r, phase = self.reporter, SyncPhase.LABELS
        batch: list[Label] = []
        writes: list[asyncio.Future[None]] = []
        last_flush = time.monotonic()

        def flush() -> None:  # labels, and the request log so far (bounded memory)
            nonlocal batch, last_flush
            if batch:
                writes.append(
                    asyncio.ensure_future(
                        self.store.run(self.store.rows.write_labels, self.build_id, batch)
                    )
                )
                batch = []
            if (rows := self.client.stats.drain()) and self.log_requests:
                writes.append(
                    asyncio.ensure_future(
                        self.store.run(
                            self.store.history.write_requests, self.session.session_id, rows
                        )
                    )
                )
            last_flush = time.monotonic()

        pairs = sum(len(v) for v in wanted.values())
        allowed = int(LABEL_FAILURE_SHARE * pairs)
        language, done, of = "", 0, 0  # the language being fetched, its progress
        streak = 0  # refused labels in a row: a service refusing every label is not one label

        def on_label(label: Label) -> None:
            nonlocal streak, done
            streak = streak + 1 if label.error is not None else 0
            if label.error is not None:
                self.failed_labels.append(label)
                if len(self.failed_labels) > allowed or streak >= LABEL_FAILURE_STREAK:
                    share = f"{LABEL_FAILURE_SHARE:.0%} of {pairs:,}"
                    how = (
                        f"more than {share}"
                        if len(self.failed_labels) > allowed
                        else f"{streak} in a row (of {pairs:,})"
                    )
                    raise D365Error(
                        f"labels: {how} label requests failed "
                        f"({failed_labels_note(self.failed_labels, 3, kept=False)})"
                    )
            batch.append(label)
            done += 1
            r.advance(phase, item=f"{language} {done:,}/{of:,}: {label.id}" if many else label.id)
            if len(batch) >= LABEL_BATCH or time.monotonic() - last_flush > LABEL_FLUSH_SECONDS:
                flush()

        many = len(self.languages) > 1
        try:
            for language, ordered in wanted.items():
                done, of = 0, len(ordered)
                self.client.stats.language = language  # the request log's language column
                await self.client.fetch_labels(ordered, on_label, language)
        finally:
            self.client.stats.language = None
            flush()
            if writes:
                await asyncio.shield(asyncio.gather(*writes))

    # -- index and finalize ------------------------------------------------------------
    async def _index(self) -> None:
        r, phase = self.reporter, SyncPhase.INDEXING
        r.begin(phase, item="search index")
        rows = await self.store.run(self.store.index.build, self.build_id, self.language)
        r.advance(phase, rows)
        r.end(phase)

    async def _finalize(self) -> None:
        r, phase, builds = self.reporter, SyncPhase.FINALIZING, self.store.builds
        r.begin(phase, item="counts")
        build_id = self.build_id
        assert build_id is not None
        counts = await self.store.run(self.store.rows.counts, build_id, self.language)
        self.session.counts = counts
        finalize = asyncio.ensure_future(
            self.store.run(
                lambda: builds.finalize(
                    self.version_id,
                    build_id,
                    has_metadata=self.plan.has_metadata_after,
                    has_labels=self.plan.has_labels_after,
                    counts=counts,
                    languages=self.languages,
                )
            )
        )
        try:
            await asyncio.shield(finalize)
        except asyncio.CancelledError:
            await finalize  # one transaction already under way: let it land, then report
            self.finalized = True
            raise
        self.finalized = True
        r.end(phase, note=f"version {self.version_id} now shows build {build_id}")


def _per_language(counts: dict[str, int], languages: tuple[str, ...]) -> str:
    """`` (en-us 899, de 899)`` when several languages were synced, else nothing."""
    if len(languages) < 2:
        return ""
    return " (" + ", ".join(f"{lang} {counts.get(lang, 0):,}" for lang in languages) + ")"


def failed_labels_note(labels: list[Label], named: int = LABELS_NAMED, *, kept: bool = True) -> str:
    """``3 labels failed, kept as missing (HTTP 500 x1, 403 x2): @A (500), ...`` (one line)."""
    causes = Counter(f"HTTP {lb.http_status}" if lb.http_status else "wrong shape" for lb in labels)
    why = ", ".join(f"{cause} x{n}" for cause, n in causes.most_common())
    names = ", ".join(f"{lb.id} ({lb.http_status or 'shape'})" for lb in labels[:named])
    more = f" and {len(labels) - named:,} more" if len(labels) > named else ""
    first = labels[0].error or ""
    return clean_message(
        f"{len(labels):,} label{'s' if len(labels) != 1 else ''} failed"
        f"{', kept as missing' if kept else ''} ({why}): "
        f"{names}{more}; "
        f"first error: {first}"
    )


def duplicates_note(names: Iterable[str], kind: str) -> str | None:
    """``2 duplicated data entity names, the last of each kept: A (x2), B (x3)``, or None."""
    repeated = [(n, c) for n, c in Counter(names).items() if c > 1]
    if not repeated:
        return None
    shown = ", ".join(f"{n} (x{c})" for n, c in repeated[:LABELS_NAMED])
    more = f" and {len(repeated) - LABELS_NAMED:,} more" if len(repeated) > LABELS_NAMED else ""
    return clean_message(
        f"the service sent {len(repeated):,} duplicated {kind} name(s); the last of each is "
        f"kept: {shown}{more}"
    )
