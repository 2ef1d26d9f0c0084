"""The network floor: the sync's requests at a fixed concurrency, bodies read and dropped.

Sent as the client sends them (an ``httpx.Request`` straight to the default transport), so the
floor has the client's HTTP cost and nothing else.

Usage: python benchmarks/floor.py BASE_URL CONCURRENCY [SCALE]  (prints one JSON line)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx

from d365sync_nb.d365.client import (
    APP_VERSION_ACTION,
    HEADERS,
    MODULES_ACTION,
    PLATFORM_VERSION_ACTION,
    PUBLIC_ENTITIES_CHUNK,
    default_transport,
    label_path,
)
from d365sync_nb.emulator import build_dataset


async def main(base_url: str, concurrency: int, scale: str = "realistic") -> None:
    dataset = build_dataset(scale)
    ids = sorted(dataset.label_ids_referenced())
    n_public = len(dataset.public_entities)
    del dataset
    urls: list[tuple[str, str]] = [
        ("POST", a) for a in (MODULES_ACTION, APP_VERSION_ACTION, PLATFORM_VERSION_ACTION)
    ]
    urls += [("GET", "Metadata/DataEntities"), ("GET", "Metadata/PublicEnumerations")]
    chunk = PUBLIC_ENTITIES_CHUNK  # the sync's chunks, and the one past the end it asks
    urls += [
        ("GET", f"Metadata/PublicEntities?$top={chunk}&$skip={i * chunk}")
        for i in range(n_public // chunk + 1)
    ]
    urls += [("GET", label_path(i, "en-us")) for i in ids]
    queue = iter(urls)
    start = time.perf_counter()
    transport = default_transport(concurrency)
    extensions = {"timeout": httpx.Timeout(30.0).as_dict()}

    async def worker() -> None:
        for method, url in queue:
            body = {} if method == "POST" else None
            request = httpx.Request(
                method, f"{base_url}/{url}", json=body, headers=HEADERS, extensions=extensions
            )
            response = await transport.handle_async_request(request)
            await response.aread()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await transport.aclose()
    print(json.dumps({"requests": len(urls), "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:4]))
