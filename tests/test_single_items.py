"""Single-item GETs (labels) over kept-alive HTTP/1.1 (``d365/wire.py``), against real servers:
the emulator (keep-alive, uvicorn), the hostile service (every framing and fault an HTTP/1.1
server can send) and a TLS server with its own certificate (the real service is HTTPS only).
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import json
import sqlite3
import ssl
import zlib
from pathlib import Path

import pytest

from d365sync_nb.cli import main
from d365sync_nb.d365.client import HEADERS, D365MetadataClient, label_path
from d365sync_nb.d365.wire import ConnectFailed, SingleItems
from d365sync_nb.emulator import Emulator
from tests.hostile_service import HostileService, gzip_bomb, raw


def sync(service: HostileService, cache: Path, *options: str) -> int:
    return main(["sync", "--base-url", service.base_url, "--cache-dir", str(cache), *options])


def cached_label(cache: Path, label_id: str) -> str | None:
    (path,) = cache.glob("*.sqlite3")
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT value FROM labels WHERE label_id = ?", (label_id,)).fetchone()
    return row[0] if row else None


def answer(body: bytes, *headers: str) -> bytes:
    head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + "".join(
        f"{h}\r\n" for h in headers
    )
    return head.encode() + b"\r\n" + body


def chunked(body: bytes) -> bytes:
    parts = (body[:5], body[5:])
    return b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts) + b"0\r\n\r\n"


def raw_deflate(body: bytes) -> bytes:
    squeeze = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return squeeze.compress(body) + squeeze.flush()


def coded(body: bytes, coding: str) -> bytes:
    return answer(body, f"Content-Encoding: {coding}", f"Content-Length: {len(body)}")


FRAMINGS = {
    "length": lambda b: answer(b, f"Content-Length: {len(b)}"),
    "until-close": lambda b: answer(b),
    "chunked": lambda b: answer(chunked(b), "Transfer-Encoding: chunked"),
    "gzip": lambda b: coded(gzip.compress(b), "gzip"),
    "deflate": lambda b: coded(zlib.compress(b), "deflate"),
    "raw-deflate": lambda b: coded(raw_deflate(b), "deflate"),
    "after-103": lambda b: b"HTTP/1.1 103 Early Hints\r\nLink: <x>\r\n\r\n" + FRAMINGS["length"](b),
    "and-a-second": lambda b: FRAMINGS["length"](b) + answer(b"{}", "Content-Length: 2"),
    "gzip-chunked": lambda b: answer(
        chunked(gzip.compress(b)), "Content-Encoding: gzip", "Transfer-Encoding: chunked"
    ),
}  # fmt: skip


@pytest.mark.timeout(60)
@pytest.mark.parametrize("framing", list(FRAMINGS))
def test_a_label_in_any_framing_is_read_whole(service, tmp_path, framing):
    chosen = service.label_ids()[2]
    text = "Ümlaut «text», 100% read"
    body = json.dumps({"Id": chosen, "Language": "en-us", "Value": text}).encode()
    data = FRAMINGS[framing](body)
    service.override("Labels", lambda r: raw(data) if r.label_id == chosen else None)
    assert sync(service, tmp_path) == 0
    assert cached_label(tmp_path, chosen) == text
    assert cached_label(tmp_path, service.label_ids()[3]) == f"Text of {service.label_ids()[3]}"


BROKEN = {
    "garbage-status-line": b"SPAM SPAM SPAM\r\n\r\n",
    "100KB-header": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n{}",
    "cut-body": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 90\r\n\r\n{",
    "cut-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n{",
    "bad-gzip": answer(b"not gzip at all", "Content-Encoding: gzip", "Content-Length: 15"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("data", list(BROKEN.values()), ids=list(BROKEN))
def test_a_broken_label_answer_is_retried_then_one_line(service, tmp_path, capsys, data):
    chosen = service.label_ids()[1]
    service.override("Labels", lambda r: raw(data) if r.label_id == chosen else None)
    assert sync(service, tmp_path) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no answer after 6 attempts" in err, err
    assert sum(1 for r in service.requests if r.label_id == chosen) == 6


@pytest.mark.timeout(60)
def test_a_gzip_bomb_label_is_refused_once_not_inflated(service, tmp_path, capsys, monkeypatch):
    """Too large is that label's own failure: asked once, kept as missing, the sync goes on."""
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(f'[profiles.bomb]\nbase_url = "{service.base_url}"\nmax_answer_mb = 2\n')
    monkeypatch.setenv("D365SYNC_PROFILES", str(profiles))
    chosen = service.label_ids()[0]
    bomb = gzip_bomb(64)
    service.override("Labels", lambda r: bomb if r.label_id == chosen else None)
    code = main(["sync", "--profile", "bomb", "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 0 and "larger than 2 MB decoded; not retried" in err, err
    assert "1 label failed, kept as missing" in err
    assert sum(1 for r in service.requests if r.label_id == chosen) == 1


async def test_labels_reuse_kept_alive_connections(emulator: Emulator) -> None:
    """Against uvicorn (keep-alive): 300 labels at 4 in flight over at most 4 connections; the
    service counts what the client sent."""
    ids = sorted(emulator.dataset.label_ids_referenced())[:300]
    emulator.reset_stats()
    got: list[str] = []
    async with D365MetadataClient(emulator.base_url, concurrency=4) as client:
        await client.fetch_labels(ids, lambda label: got.append(label.id))
        single = client._single
        assert single is not None and 1 <= single.connections <= 4
        assert client.stats.requests == len(ids)
    assert sorted(got) == ids
    assert emulator.stats()["total_requests"] == len(ids)


@pytest.mark.timeout(30)
async def test_an_idle_connection_the_service_closed_is_not_reused() -> None:
    """Kept alive by the answer, closed by the service while idle: the next label opens a new
    connection instead of failing on the old one."""
    body = b'{"Id": "@A", "Language": "en-us", "Value": "A"}'

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer(body, f"Content-Length: {len(body)}"))  # no Connection: close
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    url = f"{base}/{label_path('@A', 'en-us')}"
    async with server:
        single = SingleItems(base, HEADERS, 2**20)
        assert (await single.get(url, {})).status_code == 200
        (idle,) = single._idle
        while not idle.closed:  # the service's close reaches this loop
            await asyncio.sleep(0.01)
        assert (await single.get(url, {})).status_code == 200
        assert single.connections == 2
        single.close()


# -- TLS: the real service is HTTPS --------------------------------------------------------------
def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "d365sync test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def _tls_service(cert: Path, key: Path, seen: list[bytes]) -> asyncio.Server:
    """A keep-alive HTTPS server answering every GET with a label."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                seen.append(head)
                body = b'{"Id": "@SYS1", "Language": "en-us", "Value": "Over TLS"}'
                writer.write(answer(body, f"Content-Length: {len(body)}"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)


async def test_labels_over_tls_verify_the_certificate(tmp_path, monkeypatch) -> None:
    cert, key = _certificate(tmp_path)
    seen: list[bytes] = []
    server = await _tls_service(cert, key, seen)
    port = server.sockets[0].getsockname()[1]
    base = f"https://127.0.0.1:{port}"
    async with server:
        untrusted = SingleItems(base, HEADERS, 2**20)  # the system's CAs do not know it
        with pytest.raises(ConnectFailed, match="certificate verify failed"):
            await untrusted.get(f"{base}/{label_path('@SYS1', 'en-us')}", {})
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now trusted (OpenSSL reads it)
        trusted = SingleItems(base, HEADERS, 2**20)
        for _ in range(3):
            got = await trusted.get(f"{base}/{label_path('@SYS1', 'en-us')}", {"x-id": "1"})
            assert got.status_code == 200 and json.loads(got.body)["Value"] == "Over TLS"
        assert trusted.connections == 1  # kept alive
        trusted.close()
    request = seen[-1].decode()
    assert request.startswith("GET /Metadata/Labels(Id='@SYS1',Language='en-us') HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{port}\r\n" in request and "x-id: 1\r\n" in request


@pytest.mark.parametrize(
    ("base", "host"),
    [
        ("https://contoso.operations.dynamics.com", "Host: contoso.operations.dynamics.com\r\n"),
        ("http://127.0.0.1:8080/d365/", "Host: 127.0.0.1:8080\r\n"),
        ("http://[::1]:80", "Host: [::1]\r\n"),
    ],
)
def test_the_request_head_names_the_host_and_the_base_path(base: str, host: str) -> None:
    single = SingleItems(base, HEADERS, 2**20)
    assert host.encode() in single._head
    url = f"{base.rstrip('/')}/{label_path('@A', 'en-us')}"
    assert single.serves(url) and not single.serves(url + "?$select=Value")
    assert single._path.endswith(b"/") and (b"/d365/" in single._path) == ("/d365" in base)


class _Token:
    """azure-identity's credential protocol (``get_token`` -> ``.token``, ``.expires_on``)."""

    def __init__(self) -> None:
        self.token, self.expires_on = "bearer-secret", 2**31

    def get_token(self, *scopes: str, **kw: object) -> _Token:
        return self


async def test_a_label_over_tls_carries_the_token_and_a_unique_request_id(
    tmp_path, monkeypatch
) -> None:
    cert, key = _certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    seen: list[bytes] = []
    server = await _tls_service(cert, key, seen)
    base = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server, D365MetadataClient(base, credential=_Token()) as client:
        first = await client.get_label("@SYS1")
        await client.get_label("@SYS1")
    assert first.value == "Over TLS"
    heads = [h.decode() for h in seen]
    assert all("\r\nAuthorization: Bearer bearer-secret\r\n" in h for h in heads)
    ids = {line for h in heads for line in h.split("\r\n") if line.startswith("x-ms-client")}
    assert len(heads) == 2 and len(ids) == 2
