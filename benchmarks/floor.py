"""The network floor: the sync's requests at the same concurrency, bodies read and dropped.

Usage: python benchmarks/floor.py BASE_URL CONCURRENCY  (prints one JSON line)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx

from d365sync_nb.d365.client import (
    APP_VERSION_ACTION,
    MODULES_ACTION,
    PLATFORM_VERSION_ACTION,
    PUBLIC_ENTITIES_CHUNK,
    default_transport,
    label_path,
)
from d365sync_nb.emulator import build_dataset


async def main(base_url: str, concurrency: int) -> None:
    dataset = build_dataset("realistic")
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
    async with httpx.AsyncClient(
        base_url=base_url + "/", transport=default_transport(concurrency)
    ) as http:

        async def worker() -> None:
            for method, url in queue:
                response = await http.request(method, url, json={} if method == "POST" else None)
                response.read()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    print(json.dumps({"requests": len(urls), "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
