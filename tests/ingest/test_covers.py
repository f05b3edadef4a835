"""The cover fetcher: what it refuses, how it retries, and its cache."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from ingest.covers import MAX_PIXELS, CoverError, CoverFetcher
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
