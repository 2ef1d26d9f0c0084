"""Client behaviours the emulator does not provoke, through httpx's transport seam.

The emulator is an honest service; these answers come from a misbehaving or hostile one,
which cannot exist on this machine's network, so a handler stands in for it.
"""

from __future__ import annotations

import httpx
import pytest

from d365sync_nb.d365.client import D365MetadataClient, label_path
from d365sync_nb.errors import D365ResponseError

BASE = "https://contoso.operations.dynamics.com"


class Token:
    def __init__(self) -> None:
        self.token = "bearer-secret"
        self.expires_on = 2**31

    def get_token(self, *scopes: str, **kw: object) -> Token:
        return self


def client_for(handler) -> D365MetadataClient:
    return D365MetadataClient(
        BASE, credential=Token(), transport=httpx.MockTransport(handler), backoff_base=0.001
    )


async def test_next_link_to_another_host_is_not_followed_with_our_token():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={"value": [{"Name": "A"}], "@odata.nextLink": "https://evil.example/steal"},
        )

    async with client_for(handler) as client:
        with pytest.raises(D365ResponseError, match="outside the environment"):
            await client.get_collection("DataEntities")
    assert [r.url.host for r in seen] == ["contoso.operations.dynamics.com"]


async def test_next_link_loop_is_an_error_not_a_hang():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"value": [], "@odata.nextLink": f"{BASE}/Metadata/DataEntities?p=2"}
        )

    async with client_for(handler) as client:
        with pytest.raises(D365ResponseError, match="loops"):
            await client.get_collection("DataEntities")


async def test_chunking_falls_back_when_top_and_skip_are_ignored():
    items = [{"Name": f"E{i}"} for i in range(7)]
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(200, json={"value": items})  # ignores $top and $skip

    async with client_for(handler) as client:
        chunks = [c async for c in client.iter_chunks("PublicEntities", chunk_size=3)]
    names = [i["Name"] for chunk in chunks for i in chunk]
    assert names == [i["Name"] for i in items]


def test_label_path_quotes_and_encodes():
    assert (
        label_path("@SYS:O'Brien", "en-us")
        == "Metadata/Labels(Id='@SYS:O''Brien',Language='en-us')"
    )
    assert "%20" in label_path("@Foo:A B", "en-us")
    assert "%2F" in label_path("@Foo:a/b", "en-us")


async def test_chunking_when_top_is_honoured_but_skip_ignored_yields_each_item_once():
    items = [{"Name": f"E{i:04d}"} for i in range(600)]

    def handler(request: httpx.Request) -> httpx.Response:
        top = int(request.url.params.get("$top", len(items)))
        return httpx.Response(200, json={"value": items[:top]})

    async with client_for(handler) as client:
        got = [i["Name"] async for c in client.iter_chunks("PublicEntities", 250) for i in c]
    assert sorted(got) == [i["Name"] for i in items]


async def test_a_failing_credential_is_one_clear_auth_error():
    from d365sync_nb.errors import D365AuthError

    class Broken:
        def get_token(self, *scopes: str, **kw: object) -> Token:
            raise RuntimeError("DefaultAzureCredential failed to retrieve a token.\n" * 5)

    client = D365MetadataClient(BASE, credential=Broken(), transport=httpx.MockTransport(print))
    async with client:
        with pytest.raises(D365AuthError) as info:
            await client.get_installed_modules()
    text = str(info.value)
    assert "\n" not in text and "az login" in text and "RuntimeError" in text


async def test_one_timer_cancels_each_attempt_at_its_deadline_and_passes_other_cancels_on():
    """The attempts' deadlines (d365/deadlines.py): an attempt past its deadline is a timeout,
    a cancel from outside stays a cancel, an attempt that ends in time is left alone."""
    import asyncio

    from d365sync_nb.d365.deadlines import Deadlines

    deadlines = Deadlines()
    never = asyncio.Event()

    async def attempt(seconds: float) -> str:
        watch = deadlines.start(seconds)
        try:
            await never.wait()
        except asyncio.CancelledError:
            if deadlines.end(watch, cancelled=True):
                return "timed out"
            raise
        return "answered"  # (never set)

    async def quick() -> str:
        watch = deadlines.start(0.05)
        await asyncio.sleep(0)
        assert not deadlines.end(watch, cancelled=False)
        return "in time"

    late = [asyncio.create_task(attempt(s)) for s in (0.2, 0.05, 0.1)]
    cancelled = asyncio.create_task(attempt(60))
    assert await quick() == "in time"
    assert [await t for t in late] == ["timed out"] * 3
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert not deadlines._watched  # every attempt took itself off
    deadlines.close()


@pytest.mark.parametrize(
    "base",
    ["http://127.0.0.1:8080", "https://contoso.operations.dynamics.com/", "https://h.example/ns/x",
     "http://h:1/a%20b"],
)  # fmt: skip
def test_a_url_under_the_base_joined_to_it_is_the_url_parsed_whole(base: str) -> None:
    """aiohttp gets the same URL, as built, whether joined to the parsed base or parsed whole."""
    import yarl

    client = D365MetadataClient(base)
    for path in [
        label_path("@SYS1", "en-us"), label_path("@SYS 1'x/ü", "de"),
        "Metadata/DataEntities?$top=5", "https://other.example/Metadata/Labels",
    ]:  # fmt: skip
        full = client._url(path)
        joined, whole = client._yarl(full), yarl.URL(full, encoded=True)
        assert (str(joined), joined.raw_path, joined.raw_query_string) == (
            str(whole), whole.raw_path, whole.raw_query_string,
        )  # fmt: skip
