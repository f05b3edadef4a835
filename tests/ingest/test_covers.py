"""The cover fetcher: what it refuses, how it retries, and its cache."""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import urlsplit

import pytest
from PIL import Image

from ingest.covers import MAX_PIXELS, MAX_RETRY_AFTER_S, CoverError, CoverFetcher, is_public_address
from search.settings import Settings
from tests.conftest import make_cover


@pytest.fixture
def fetcher(tmp_path) -> CoverFetcher:
    return CoverFetcher(
        Settings(cache_dir=tmp_path / "cache", cover_allowed_hosts=("127.0.0.1",), cover_max_bytes=50_000, http_timeout_s=2)
    )


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def image(fmt: str, size: int = 64) -> bytes:
    """A real image in `fmt` (as Pillow writes it)."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (30, 120, 200)).save(buffer, fmt)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims `width` x `height` pixels (the data stops short, as in a bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(24_000))) + chunk(b"IEND", b"")


@dataclass
class RawServer:
    """A loopback TCP server answering each connection with the next scripted bytes, then closing it."""

    url: str
    replies: list[bytes]
    requests: list[bytes] = field(default_factory=list)


@pytest.fixture
def raw_server() -> Iterator[RawServer]:
    """For answers http.server will not send: broken bodies, huge headers, odd redirects, any header."""
    listener = socket.create_server(("127.0.0.1", 0))
    server = RawServer(f"http://127.0.0.1:{listener.getsockname()[1]}", [])

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                head = connection.recv(65536)
                while head.startswith(b"GET") and b"\r\n\r\n" not in head:
                    head += connection.recv(65536)
                server.requests.append(head)
                reply = server.replies.pop(0) if len(server.replies) > 1 else server.replies[0]
                connection.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server
    listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
    listener.close()
    thread.join(timeout=5)


def answer(status: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_media_types_are_case_insensitive(fetcher, cover_server):
    cover_server.files["/upper.png"] = (200, "IMAGE/PNG", make_cover((1, 2, 3), 4))
    assert fetcher.fetch(f"{cover_server.url}/upper.png")


def test_fetches_and_caches_by_url(fetcher, cover_server):
    body = make_cover((200, 10, 10), 1)
    cover_server.files["/a.png"] = (200, "image/png", body)
    url = f"{cover_server.url}/a.png"
    assert fetcher.fetch(url) == body
    assert fetcher.fetch(url) == body
    assert cover_server.hits["/a.png"] == 1


@pytest.mark.parametrize(
    "url, reason",
    [
        ("ftp://example.org/a.png", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("http://10.1.2.3/a.png", "non-public"),
        ("http://192.168.0.7/a.png", "non-public"),
        ("http://169.254.169.254/latest/meta-data", "non-public"),
        ("http://[::1]/a.png", "non-public"),
        ("http://localhost/a.png", "non-public"),
        ("http://[64:ff9b::7f00:1]/a.png", "non-public"),  # NAT64 of 127.0.0.1
        ("http://[64:ff9b:1::a00:1]/a.png", "non-public"),  # local-use NAT64
        ("http://[2002:7f00:1::1]/a.png", "non-public"),  # 6to4 of 127.0.0.1
        ("http://[::127.0.0.1]/a.png", "non-public"),  # IPv4-compatible
        ("http://[::ffff:169.254.169.254]/a.png", "non-public"),  # IPv4-mapped
        ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/a.png", "non-public"),  # Teredo
        ("http://[fe80::1%25eth0]/a.png", "non-public"),
    ],
)
def test_refuses_unsafe_urls_without_connecting(fetcher, url, reason):
    with pytest.raises(CoverError, match=reason):
        fetcher.fetch(url)


def test_loopback_is_refused_unless_allowed(tmp_path, cover_server):
    cover_server.files["/a.png"] = (200, "image/png", make_cover((1, 2, 3), 1))
    strict = CoverFetcher(Settings(cache_dir=tmp_path / "strict"))
    with pytest.raises(CoverError, match="non-public"):
        strict.fetch(f"{cover_server.url}/a.png")
    assert "/a.png" not in cover_server.hits


def test_redirect_to_a_private_address_is_refused(tmp_path, cover_server):
    cover_server.files["/hop"] = (302, "", b"http://10.0.0.1/secret.png")
    fetcher = CoverFetcher(Settings(cache_dir=tmp_path / "c", cover_allowed_hosts=("127.0.0.1",)))
    with pytest.raises(CoverError, match="non-public"):
        fetcher.fetch(f"{cover_server.url}/hop")


def test_refuses_bodies_over_the_cap(fetcher, cover_server):
    cover_server.files["/big.png"] = (200, "image/png", b"\x89PNG" + b"0" * 60_000)
    with pytest.raises(CoverError, match="cap"):
        fetcher.fetch(f"{cover_server.url}/big.png")


def test_refuses_content_that_is_not_an_image(fetcher, cover_server):
    cover_server.files["/page"] = (200, "text/html", b"<html>hello</html>")
    cover_server.files["/fake.png"] = (200, "image/png", b"this is not a png at all")
    with pytest.raises(CoverError, match="not an image"):
        fetcher.fetch(f"{cover_server.url}/page")
    with pytest.raises(CoverError, match="not a readable image"):
        fetcher.fetch(f"{cover_server.url}/fake.png")


def test_refuses_decompression_bombs(fetcher, cover_server):
    bomb = png(8000, 8000)  # 64 Mpixel, a few kB compressed
    assert len(bomb) < 50_000 and 8000 * 8000 > MAX_PIXELS
    cover_server.files["/bomb.png"] = (200, "image/png", bomb)
    with pytest.raises(CoverError, match="pixel"):
        fetcher.fetch(f"{cover_server.url}/bomb.png")


def test_retries_server_errors_then_succeeds(fetcher, cover_server):
    body = make_cover((0, 200, 0), 2)
    cover_server.files["/flaky.png"] = [(500, "text/plain", b"oops"), (503, "text/plain", b"busy"), (200, "image/png", body)]
    assert fetcher.fetch(f"{cover_server.url}/flaky.png") == body
    assert cover_server.hits["/flaky.png"] == 3


def test_does_not_retry_a_404(fetcher, cover_server):
    with pytest.raises(CoverError, match="404"):
        fetcher.fetch(f"{cover_server.url}/missing.png")
    assert cover_server.hits["/missing.png"] == 1


def test_times_out_on_a_silent_server(tmp_path):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts connections but never answers
    port = listener.getsockname()[1]
    fetcher = CoverFetcher(Settings(cache_dir=tmp_path / "c", cover_allowed_hosts=("127.0.0.1",), http_timeout_s=0.3))
    try:
        with pytest.raises(CoverError, match="Timeout"):
            fetcher.fetch(f"http://127.0.0.1:{port}/slow.png")
    finally:
        listener.close()


def test_local_files_are_read_relative_to_the_catalogue(fetcher, tmp_path):
    (tmp_path / "covers").mkdir()
    (tmp_path / "covers" / "x.png").write_bytes(make_cover((5, 5, 5), 3))
    assert fetcher.load("covers/x.png", tmp_path).startswith(b"\x89PNG")
    with pytest.raises(CoverError, match="does not exist"):
        fetcher.load("covers/none.png", tmp_path)


def test_the_same_url_fetched_by_many_threads_at_once(fetcher, cover_server):
    from concurrent.futures import ThreadPoolExecutor

    body = make_cover((1, 100, 200), 6)
    cover_server.files["/shared.png"] = (200, "image/png", body)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: fetcher.fetch(f"{cover_server.url}/shared.png"), range(16)))
    assert all(result == body for result in results)
    assert not list(fetcher.cache_dir.glob("*.part"))


@pytest.mark.parametrize(
    "address, public",
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("64:ff9b::808:808", True),  # NAT64 of a public host: how DNS64 networks reach IPv4-only hosts
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::7f00:1", False),
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("64:ff9b:1::808:808", False),  # local-use NAT64 prefix, whatever it carries
        ("2002:7f00:1::1", False),
        ("2002:808:808::1", False),  # 6to4 can reach any IPv4 host
        ("::127.0.0.1", False),
        ("::8.8.8.8", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:0:7f00:1", False),  # IPv4-translated
        ("2001::1", False),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
        ("fec0::1", False),
        ("fc00::1", False),
        ("fe80::1%eth0", False),
        ("ff0e::1", False),
        ("::1", False),
        ("::", False),
        ("127.0.0.1", False),
        ("100.64.0.1", False),
        ("224.0.0.1", False),
        ("0.0.0.0", False),
    ],
)
def test_address_classifier(address, public):
    assert is_public_address(address) is public


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://[::1", "malformed"),
        ("http://[::1/a.png", "malformed"),
        ("http://example.org:99999/a.png", "malformed"),
        ("http://example.org:abc/a.png", "malformed"),
        ("http://example.org:0/a.png", "port 0"),
        ("http:///a.png", "no host"),
        ("http://exa\x00mple.org/a.png", "not a valid host name"),
        ("http://exa mple.org/a.png", "not a valid host name"),
        ("http://\u2603.example/a.png", "not a valid host name"),
        ("http://" + "a" * 64 + ".example/a.png", "does not resolve"),
    ],
)
def test_malformed_urls_are_cover_errors(fetcher, url, reason):
    with pytest.raises(CoverError, match=reason):
        fetcher.load(url)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_host_that_rebinds_to_loopback_is_refused_when_connecting(tmp_path, cover_server, monkeypatch, scheme):
    cover_server.files["/a.png"] = (200, "image/png", make_cover((1, 2, 3), 1))
    port = urlsplit(cover_server.url).port
    real_getaddrinfo = socket.getaddrinfo
    answers = iter(["93.184.215.14"])  # public for the first lookup, loopback for every later one

    def rebinding(host, *args, **kwargs):
        if host != "covers.rebind.test":
            return real_getaddrinfo(host, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers, "127.0.0.1"), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    fetcher = CoverFetcher(Settings(cache_dir=tmp_path / "c", http_timeout_s=2))
    with pytest.raises(CoverError, match="connected to a non-public address 127.0.0.1"):
        fetcher.fetch(f"{scheme}://covers.rebind.test:{port}/a.png")
    assert "/a.png" not in cover_server.hits


def test_proxies_from_the_environment_are_not_used(fetcher, cover_server, monkeypatch):
    body = make_cover((9, 9, 9), 2)
    cover_server.files["/a.png"] = (200, "image/png", body)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "")
    assert fetcher.fetch(f"{cover_server.url}/a.png") == body


@pytest.mark.parametrize(
    "location, reason",
    [
        ("http://[::1", "malformed"),
        ("http://127.0.0.1:99999/a.png", "malformed"),
        ("http://[64:ff9b::a00:1]/a.png", "non-public"),
        ("file:///etc/passwd", "scheme"),
    ],
)
def test_bad_redirect_locations_are_cover_errors(fetcher, cover_server, location, reason):
    cover_server.files["/hop"] = (302, "", location.encode())
    with pytest.raises(CoverError, match=reason):
        fetcher.fetch(f"{cover_server.url}/hop")


def test_header_claiming_a_huge_image_is_refused(fetcher, cover_server, tmp_path):
    bomb = png_claiming(30_000, 30_000)
    assert len(bomb) < 50_000
    cover_server.files["/bomb.png"] = (200, "image/png", bomb)
    with pytest.raises(CoverError, match="pixel cap"):
        fetcher.fetch(f"{cover_server.url}/bomb.png")
    (tmp_path / "bomb.png").write_bytes(bomb)
    with pytest.raises(CoverError, match="pixel cap"):
        fetcher.load("bomb.png", tmp_path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_images_fail_to_decode_with_a_reason(fmt):
    whole = image(fmt, 256)
    with pytest.raises(CoverError, match="could not be decoded|not a readable image"):
        CoverFetcher.decode(whole[: len(whole) // 2])


def test_formats_outside_the_list_are_not_opened(fetcher, tmp_path):
    (tmp_path / "cover.tiff").write_bytes(image("TIFF"))
    with pytest.raises(CoverError, match="not a readable image"):
        fetcher.load("cover.tiff", tmp_path)


@pytest.mark.parametrize(
    "reply",
    [
        # Content-Length promises more than is sent before the connection closes.
        answer("200 OK", {"Content-Type": "image/png", "Content-Length": "5000"}, make_cover((1, 1, 1), 1)[:100]),
        # A chunked body whose second chunk size is garbage.
        answer("200 OK", {"Content-Type": "image/png", "Transfer-Encoding": "chunked"}, b"64\r\n" + bytes(100) + b"\r\nzz\r\n"),
    ],
    ids=["short-body", "broken-chunks"],
)
def test_a_connection_broken_mid_body_is_retried_then_a_cover_error(fetcher, raw_server, reply):
    raw_server.replies.append(reply)
    with pytest.raises(CoverError, match="ChunkedEncodingError"):
        fetcher.fetch(f"{raw_server.url}/a.png")
    assert len(raw_server.requests) == 3  # transient: tried again


@pytest.mark.parametrize(
    "reply",
    [
        answer("200 OK", {"Content-Type": "image/png", "X-Big": "a" * 70_000}),
        answer("200 OK", {"Content-Type": "image/png", **{f"X-{i}": "1" for i in range(150)}}),
    ],
    ids=["huge-header", "too-many-headers"],
)
def test_answers_that_are_not_http_are_not_retried(fetcher, raw_server, reply):
    raw_server.replies.append(reply)
    with pytest.raises(CoverError, match="ConnectionError"):
        fetcher.fetch(f"{raw_server.url}/a.png")
    assert len(raw_server.requests) == 1


def test_tls_failures_are_not_retried(fetcher, raw_server):
    raw_server.replies.append(answer("200 OK", {"Content-Type": "image/png"}))  # plain HTTP to a TLS client
    with pytest.raises(CoverError, match="SSLError"):
        fetcher.fetch(f"https://127.0.0.1:{urlsplit(raw_server.url).port}/a.png")
    assert len(raw_server.requests) == 1


def test_retry_after_is_honoured(fetcher, raw_server):
    body = make_cover((3, 3, 3), 4)
    raw_server.replies += [
        answer("503 Service Unavailable", {"Retry-After": "2", "Content-Length": "0"}),
        answer("200 OK", {"Content-Type": "image/png", "Content-Length": str(len(body))}, body),
    ]
    started = time.monotonic()
    assert fetcher.fetch(f"{raw_server.url}/a.png") == body
    assert time.monotonic() - started >= 2  # jittered backoff alone waits at most 1.5 s here
    assert len(raw_server.requests) == 2


@pytest.mark.parametrize(
    "status, retry_after",
    [("429 Too Many Requests", "3600"), ("503 Service Unavailable", formatdate(time.time() + 3600, usegmt=True))],
    ids=["seconds", "http-date"],
)
def test_a_retry_after_beyond_the_bound_fails_at_once(fetcher, raw_server, status, retry_after):
    raw_server.replies.append(answer(status, {"Retry-After": retry_after, "Content-Length": "0"}))
    started = time.monotonic()
    with pytest.raises(CoverError, match="asks to wait"):
        fetcher.fetch(f"{raw_server.url}/a.png")
    assert time.monotonic() - started < MAX_RETRY_AFTER_S
    assert len(raw_server.requests) == 1


@pytest.fixture
def folders(tmp_path):
    """A catalogue folder with covers and links, and a folder outside it holding a cover."""
    catalogue, outside = tmp_path / "catalogue", tmp_path / "elsewhere"
    (catalogue / "covers").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.png").write_bytes(make_cover((6, 6, 6), 7))
    (catalogue / "covers" / "ok.png").write_bytes(make_cover((5, 5, 5), 8))
    (catalogue / "covers" / "link-in.png").symlink_to(catalogue / "covers" / "ok.png")
    (catalogue / "covers" / "link-out.png").symlink_to(outside / "secret.png")
    return catalogue, outside


@pytest.mark.parametrize(
    "ref", ["../elsewhere/secret.png", "covers/../../elsewhere/secret.png", "covers/link-out.png", "/etc/passwd", "../../etc/passwd"]
)
def test_cover_paths_outside_the_catalogue_folder_are_refused(tmp_path, folders, ref):
    catalogue, _ = folders
    fetcher = CoverFetcher(Settings(cache_dir=tmp_path / "cache"))
    with pytest.raises(CoverError, match=r"outside the catalogue's folder .* COVER_ROOTS"):
        fetcher.load(ref, catalogue)


def test_cover_paths_inside_the_catalogue_folder_or_a_cover_root_are_read(tmp_path, folders):
    catalogue, outside = folders
    fetcher = CoverFetcher(Settings(cache_dir=tmp_path / "cache"))
    assert fetcher.load("covers/link-in.png", catalogue) == fetcher.load("covers/ok.png", catalogue)
    assert fetcher.load(str(catalogue / "covers" / "ok.png"), catalogue)
    with pytest.raises(CoverError, match="COVER_ROOTS"):  # no catalogue folder, no cover root
        fetcher.load(str(catalogue / "covers" / "ok.png"))
    rooted = CoverFetcher(Settings(cache_dir=tmp_path / "cache", cover_roots=(outside,)))
    secret = (outside / "secret.png").read_bytes()
    assert rooted.load("covers/link-out.png", catalogue) == secret
    assert rooted.load(str(outside / "secret.png")) == secret


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_an_upload_is_kept_and_readable_only_where_allowed(tmp_path, fmt):
    fetcher = CoverFetcher(Settings(cache_dir=tmp_path / "cache"))
    data = image(fmt)
    path = fetcher.save_upload(data)
    assert path.parent == tmp_path / "cache" / "uploads" and path.read_bytes() == data
    assert fetcher.with_roots(path.parent).load(str(path)) == data
    with pytest.raises(CoverError, match="COVER_ROOTS"):  # widening was for that call only
        fetcher.load(str(path))


@pytest.mark.parametrize(
    "data, reason",
    [
        (image("PNG", 512) + bytes(60_000), "byte cap"),
        (image("GIF"), "not a readable image"),
        (image("BMP"), "not a readable image"),
        (b"this is not an image, whatever its name", "not a readable image"),
        (png(8000, 8000), "pixel cap"),
        (png_claiming(30_000, 30_000), "pixel cap"),
        (image("PNG", 256)[:400], "could not be decoded"),
    ],
    ids=["too-big", "gif", "bmp", "text", "many-pixels", "claimed-pixels", "truncated"],
)
def test_a_refused_upload_writes_nothing(tmp_path, data, reason):
    fetcher = CoverFetcher(Settings(cache_dir=tmp_path / "cache", cover_max_bytes=50_000))
    with pytest.raises(CoverError, match=reason):
        fetcher.save_upload(data)
    assert not (tmp_path / "cache").exists()
