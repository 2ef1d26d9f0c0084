"""The network floor: the sync's requests at a fixed concurrency, bodies read and dropped.

Sent through the client's aiohttp session (its headers, the URL as built): the aiohttp floor
issue 22 measures the sync against. The sync itself sends its labels through ``d365/wire.py``
(under half of aiohttp's CPU per label), so its client CPU is below this floor's.

Usage: python benchmarks/floor.py BASE_URL CONCURRENCY [SCALE]  (prints one JSON line)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import orjson
import yarl

from d365sync_nb.d365.client import (
    APP_VERSION_ACTION,
    MODULES_ACTION,
    PLATFORM_VERSION_ACTION,
    PUBLIC_ENTITIES_CHUNK,
    default_session,
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
    session = default_session(concurrency)
    post = {"Content-Type": "application/json"}  # (the session sends HEADERS)

    async def worker() -> None:
        for method, url in queue:
            data = orjson.dumps({}) if method == "POST" else None
            async with session.request(
                method, yarl.URL(f"{base_url}/{url}", encoded=True), data=data,
                headers=post if data else None, allow_redirects=False,
            ) as response:  # fmt: skip
                await response.read()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await session.close()
    print(json.dumps({"requests": len(urls), "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:4]))
