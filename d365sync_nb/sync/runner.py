"""Runs one session's phases: fetch, write in batches, index, then finalize atomically."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from d365sync_nb.d365.client import D365MetadataClient
from d365sync_nb.metadata import Label
from d365sync_nb.models import SyncPhase, SyncSession
from d365sync_nb.store.schema import ENUM_TABLES, SCHEMA_TABLES
from d365sync_nb.sync.plan import SyncPlan
from d365sync_nb.sync.progress import ProgressReporter

if TYPE_CHECKING:
    from d365sync_nb.store.cache import MetadataStore

LABEL_BATCH = 1000
LABEL_FLUSH_SECONDS = 0.5
PHASE_TABLES = {
    SyncPhase.ENTITIES: ("data_entities",),
    SyncPhase.SCHEMAS: SCHEMA_TABLES,
    SyncPhase.ENUMERATIONS: ENUM_TABLES,
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
        version_id: int,
        module_count: int,
        language: str = "en-us",
    ) -> None:
        self.session = session
        self.plan = plan
        self.client = client
        self.store = store
        self.reporter = reporter
        self.version_id = version_id
        self.module_count = module_count
        self.language = language
        self.build_id: int | None = None
        self.finalized = False
        self._expected_public: int | None = None

    async def run(self) -> None:
        r = self.reporter
        r.begin(SyncPhase.INITIALIZING, total=1)
        self.build_id = await self.store.run(
            self.store.begin_build,
            self.version_id,
            self.session.session_id,
            self.session.strategy.value,
        )
        r.advance(SyncPhase.INITIALIZING)
        r.end(SyncPhase.INITIALIZING)

        r.begin(SyncPhase.VERSION_CHECK, total=self.module_count, item=f"version {self.version_id}")
        r.advance(SyncPhase.VERSION_CHECK, self.module_count)
        r.end(SyncPhase.VERSION_CHECK)

        if self.plan.sharing is not None:
            await self._share()
        else:
            for phase, fetch in (
                (SyncPhase.ENTITIES, self._fetch_entities),
                (SyncPhase.SCHEMAS, self._fetch_schemas),
                (SyncPhase.ENUMERATIONS, self._fetch_enumerations),
            ):
                action = self.plan.metadata.get(phase, "skip")
                if action == "fetch":
                    await fetch()
                elif action == "copy" and self.plan.previous_build is not None:
                    await self._copy(phase)
                else:
                    r.skip(phase)

        if self.plan.labels == "skip":
            r.skip(SyncPhase.LABELS)
        else:
            await self._fetch_labels(missing_only=self.plan.labels == "missing")

        r.begin(SyncPhase.INDEXING)
        rows = await self.store.run(self.store.build_search_index, self.build_id, self.language)
        r.advance(SyncPhase.INDEXING, rows)
        r.end(SyncPhase.INDEXING)

        r.begin(SyncPhase.FINALIZING, total=1)
        counts = await self.store.run(self.store.build_counts, self.build_id, self.language)
        self.session.counts = counts
        build_id = self.build_id
        finalize = asyncio.ensure_future(
            self.store.run(
                lambda: self.store.finalize_build(
                    self.version_id,
                    build_id,
                    has_metadata=self.plan.has_metadata_after,
                    has_labels=self.plan.has_labels_after,
                    counts=counts,
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
        r.advance(SyncPhase.FINALIZING)
        r.end(SyncPhase.FINALIZING)

    async def discard(self) -> None:
        """Drop the unfinished build (the previous visible one stays exactly as it was)."""
        if self.build_id is not None and not self.finalized:
            await self.store.run(self.store.discard_build, self.build_id)

    # -- metadata phases ---------------------------------------------------------------
    async def _fetch_entities(self) -> None:
        r, phase = self.reporter, SyncPhase.ENTITIES
        r.begin(phase, item="DataEntities")
        entities = await self.client.get_data_entities()
        r.total(phase, len(entities))
        await self.store.run(self.store.write_data_entities, self.build_id, entities)
        self._expected_public = len(
            {e.public_entity_name for e in entities if e.public_entity_name}
        )
        r.advance(phase, len(entities), item=entities[-1].name if entities else None)
        r.end(phase)

    async def _fetch_schemas(self) -> None:
        r, phase = self.reporter, SyncPhase.SCHEMAS
        r.begin(phase, total=self._expected_public, item="PublicEntities")
        pending: asyncio.Future[None] | None = None
        seen = 0
        async for chunk in self.client.iter_public_entities():
            if pending is not None:
                await pending  # one write in flight while the next chunk downloads
            pending = asyncio.ensure_future(
                self.store.run(self.store.write_public_entities, self.build_id, chunk)
            )
            seen += len(chunk)
            phase_state = self.session.phases[phase]
            if phase_state.items_total is not None and seen > phase_state.items_total:
                phase_state.items_total = None  # the estimate was low: show a plain count
            r.advance(phase, len(chunk), item=chunk[-1].name)
        if pending is not None:
            await pending
        self.session.phases[phase].items_total = seen
        r.end(phase)

    async def _fetch_enumerations(self) -> None:
        r, phase = self.reporter, SyncPhase.ENUMERATIONS
        r.begin(phase, item="PublicEnumerations")
        enums = await self.client.get_enumerations()
        r.total(phase, len(enums))
        await self.store.run(self.store.write_enumerations, self.build_id, enums)
        r.advance(phase, len(enums), item=enums[-1].name if enums else None)
        r.end(phase)

    async def _copy(self, phase: SyncPhase) -> None:
        r = self.reporter
        r.begin(phase, total=1, item=f"cached build {self.plan.previous_build}")
        await self.store.run(
            self.store.copy_build, self.plan.previous_build, self.build_id, PHASE_TABLES[phase]
        )
        r.advance(phase)
        r.end(phase)

    async def _share(self) -> None:
        source = self.plan.sharing
        assert source is not None
        r = self.reporter
        r.begin(SyncPhase.ENTITIES, total=1, item=f"{source.environment} (shared cache)")
        await self.store.run(
            lambda: self.store.copy_build_from_file(
                source.path,
                source.build_id,
                self.build_id,
                language=self.language,  # type: ignore[arg-type]
            )
        )
        r.advance(SyncPhase.ENTITIES)
        r.end(SyncPhase.ENTITIES)
        for phase in (SyncPhase.SCHEMAS, SyncPhase.ENUMERATIONS):
            r.begin(phase, total=1, item=f"{source.environment} (shared cache)")
            r.advance(phase)
            r.end(phase)

    # -- labels ------------------------------------------------------------------------
    async def _fetch_labels(self, *, missing_only: bool) -> None:
        r, phase = self.reporter, SyncPhase.LABELS
        r.begin(phase, item="collecting label ids")
        ids = await self.store.run(self.store.build_label_ids, self.build_id)
        if missing_only:
            cached = await self.store.run(self.store.cached_label_ids, self.language)
            ids = ids - cached
        ordered = sorted(ids)
        r.total(phase, len(ordered))
        batch: list[Label] = []
        writes: list[asyncio.Future[None]] = []
        last_flush = time.monotonic()

        def flush() -> None:
            nonlocal batch, last_flush
            if batch:
                writes.append(
                    asyncio.ensure_future(
                        self.store.run(self.store.write_labels, self.build_id, batch)
                    )
                )
                batch = []
            last_flush = time.monotonic()

        def on_label(label: Label) -> None:
            batch.append(label)
            r.advance(phase, item=label.id)
            if len(batch) >= LABEL_BATCH or time.monotonic() - last_flush > LABEL_FLUSH_SECONDS:
                flush()

        try:
            await self.client.fetch_labels(ordered, on_label, self.language)
        finally:
            flush()
            if writes:
                await asyncio.shield(asyncio.gather(*writes))
        r.end(phase)
