"""Collections of the metadata service: pages (``@odata.nextLink``) and chunks (``$top``/``$skip``).

Paging is bounded: a next link must be a string under the environment's base URL, never seen
before in this collection, and the pages are at most what ``@odata.count`` implies (when the
service sends it) or ``max_pages``. A service that pages forever ends in one line.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx

from d365sync_nb.d365.shapes import describe
from d365sync_nb.errors import D365ResponseError
from d365sync_nb.text import service_text

if TYPE_CHECKING:
    from d365sync_nb.d365.client import D365MetadataClient

MAX_PAGES = 1000  # pages of one collection when the service gives no @odata.count
MAX_COUNTED_PAGES = 100_000


def collection_value(data: Any, where: str) -> list[Any]:
    """The ``value`` list of an OData collection answer, or a one-line error."""
    if not isinstance(data, dict) or not isinstance(data.get("value"), list):
        got = describe(data.get("value") if isinstance(data, dict) else data)
        raise D365ResponseError(
            f"{where}: expected an OData collection with a 'value' list, got {got}",
            transient=False,
        )
    return data["value"]


def page_bound(data: Any, page_size: int, max_pages: int) -> int:
    """How many pages a collection may take: twice what ``@odata.count`` implies (pages vary),
    or ``max_pages`` without a count."""
    count = data.get("@odata.count") if isinstance(data, dict) else None
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0 and page_size:
        return min(MAX_COUNTED_PAGES, 2 * math.ceil(count / page_size) + 2)
    return max_pages


async def iter_pages(
    client: D365MetadataClient, collection: str, params: dict[str, str] | None = None
) -> AsyncIterator[list[Any]]:
    """Pages of ``/Metadata/<collection>``, following ``@odata.nextLink`` to the end."""
    url: str | None = f"Metadata/{collection}"
    seen: set[str] = set()
    pages, bound = 0, client.max_pages
    while url is not None:
        data = await client.request_json("GET", url, params=params)
        page = collection_value(data, collection)
        pages += 1
        if pages == 1:
            bound = page_bound(data, len(page), client.max_pages)
        yield page
        next_link = data.get("@odata.nextLink")
        if next_link is not None:
            if not isinstance(next_link, str):
                raise D365ResponseError(
                    f"{collection}: @odata.nextLink must be a string, got {describe(next_link)}",
                    transient=False,
                )
            if pages >= bound:
                raise D365ResponseError(
                    f"{collection}: still paging after {pages:,} pages (@odata.nextLink never "
                    f"ends; the bound is {bound:,} pages)",
                    transient=False,
                )
            try:
                target = httpx.URL(client.base_url).join(next_link)
            except (httpx.InvalidURL, ValueError, TypeError):
                raise D365ResponseError(
                    f"{collection}: @odata.nextLink is not a URL ({service_text(next_link, 80)})",
                    transient=False,
                ) from None
            if not str(target).startswith(client.base_url + "/"):
                host = service_text(target.host, 80)
                raise D365ResponseError(
                    f"@odata.nextLink points outside the environment ({host}); "
                    "not following it with this environment's token"
                )
            if next_link in seen:
                raise D365ResponseError(
                    f"@odata.nextLink loops back to {service_text(next_link, 200)}"
                )
            seen.add(next_link)
            params = None  # the link carries the query
        url = next_link


async def iter_chunks(
    client: D365MetadataClient,
    collection: str,
    chunk_size: int = 500,
    window: int = 4,
    expected: int | None = None,
) -> AsyncIterator[list[dict[str, Any]]]:
    """The collection in ``$top``/``$skip`` chunks, up to ``window`` fetched at once.

    Bounds memory for the large PublicEntities body. ``expected`` (the item count the caller
    expects, e.g. from DataEntities) keeps the window from asking past the end; without it the
    first chunk is asked alone. A request once sent is always awaited, never abandoned, so the
    service and the http record agree. Falls back to one plain request when the service ignores
    ``$top`` or ``$skip``. Chunks are bounded like pages: a service that never returns a short
    chunk ends in one line.
    """

    async def fetch(index: int) -> list[Any]:
        params = {"$top": str(chunk_size), "$skip": str(index * chunk_size)}
        items: list[Any] = []
        async for page in iter_pages(client, collection, params):
            items.extend(page)
        return items

    pending: dict[int, asyncio.Task[list[Any]]] = {}
    next_index = 0
    limit = 1 if expected is None else max(1, -(-expected // chunk_size))
    # chunks a collection may take: twice the expected count, else the page bound
    bound = client.max_pages if expected is None else 2 * limit + window + 2
    ended = False
    overran = False  # asked past the expected count already
    first_name: object = None
    try:
        while True:
            while not ended and len(pending) < window and next_index < limit:
                if next_index >= bound:
                    raise D365ResponseError(
                        f"{collection}: still answering full chunks after {next_index:,} "
                        f"chunks of {chunk_size} (the bound is {bound:,})",
                        transient=False,
                    )
                pending[next_index] = asyncio.ensure_future(fetch(next_index))
                next_index += 1
            if not pending:
                if ended:
                    return
                # as many as expected, and the last chunk was full: one more chunk (usually
                # empty), then a whole window at a time
                limit = next_index + (window if overran else 1)
                overran = True
                continue
            index = min(pending)
            items = await pending.pop(index)
            if len(items) > chunk_size or (index > 0 and items and _name(items[0]) == first_name):
                # $top or $skip ignored: read it whole, minus the chunks already yielded
                await settle(pending)
                if index == 0:
                    yield items
                    return
                already = index * chunk_size
                async for page in iter_pages(client, collection):
                    page, already = page[already:], max(0, already - len(page))
                    if page:
                        yield page
                return
            if index == 0 and items:
                first_name = _name(items[0])
            if len(items) < chunk_size:
                ended = True
                await settle(pending)  # chunks past the end: empty answers
            if items:
                yield items
    finally:
        for task in pending.values():  # only when failing or cancelled
            task.cancel()
        if pending:
            await asyncio.gather(*pending.values(), return_exceptions=True)


async def settle(pending: dict[int, asyncio.Task[Any]]) -> None:
    """Await requests already sent whose answers are no longer needed (never abandon one)."""
    await asyncio.gather(*pending.values(), return_exceptions=True)
    pending.clear()


def _name(item: Any) -> object:
    return item.get("Name") if isinstance(item, dict) else None
