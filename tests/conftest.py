"""Shared fixtures: real stores (embedded, or a server when QDRANT_URL is set), real encoders, small
catalogues built here, and HTTP servers on 127.0.0.1."""

from __future__ import annotations

import io
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image, ImageDraw

from search.settings import Settings

# The general fixture runs on the default embedded engine, and on a server when QDRANT_URL is set;
# the index and search tests (the congruence suite) run on every engine, Edge in a process of its
# own included.
STORES = ["edge", "server"]
ENGINES = ["edge", "edge-process", "local", "server"]

# Short lyrics in two themes, so that likeness can be asserted without copyrighted text.
SEA_LYRICS = [
    "The tide rolls in across the harbour, gulls above the fishing boats, salt wind on the open sea",
    "Sailing out beyond the lighthouse, waves are breaking on the bow, the ocean carries us away",
    "Anchors up and nets are mended, the sailors sing beneath the moon, the sea is calling home",
    "Storm clouds gather on the water, the ship is rocking on the swell, we pray to reach the shore",
]
CITY_LYRICS = [
    "Neon lights on every corner, taxis honking down the avenue, the city never sleeps tonight",
    "Subway trains beneath the pavement, skyscrapers touching the sky, downtown crowds are rushing by",
    "Traffic jams and sirens wailing, apartment windows glowing bright, the streets are full of noise",
    "Concrete towers, busy sidewalks, coffee shops on every block, the metropolis is wide awake",
]


def make_cover(colour: tuple[int, int, int], seed: int, size: int = 96) -> bytes:
    """A small PNG cover: a coloured field with a few shapes that depend on `seed`."""
    image = Image.new("RGB", (size, size), colour)
    draw = ImageDraw.Draw(image)
    for i in range(3):
        x = (seed * 37 + i * 23) % (size - 20)
        draw.ellipse((x, x // 2, x + 20, x // 2 + 20), fill=tuple(255 - c for c in colour))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


Response = tuple[int, str, bytes]  # status, content type, body


@dataclass
class CoverServer:
    """Serves covers and misbehaving responses on 127.0.0.1; counts requests per path."""

    url: str
    files: dict[str, Response | list[Response]]
    hits: dict[str, int]


@pytest.fixture
def cover_server() -> Iterator[CoverServer]:
    """A loopback HTTP server; tests map paths to a response, or to a list served in turn."""
    files: dict[str, Response | list[Response]] = {}
    hits: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            hits[self.path] = hits.get(self.path, 0) + 1
            planned = files.get(self.path, (404, "text/plain", b"not found"))
            if isinstance(planned, list):
                planned = planned.pop(0) if len(planned) > 1 else planned[0]
            status, content_type, body = planned
            if status in (301, 302):
                self.send_response(status)
                self.send_header("Location", body.decode())
                self.end_headers()
                return
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield CoverServer(f"http://127.0.0.1:{server.server_port}", files, hits)
    server.shutdown()
    server.server_close()


def store_settings(store: str, folder: Path) -> Settings:
    """Settings for a fresh collection: on an embedded engine ("edge", "local", or "edge-process",
    Edge in a process of its own) under `folder`, or on the server at QDRANT_URL ("server")."""
    if store == "server" and not os.environ.get("QDRANT_URL"):
        pytest.skip("QDRANT_URL is not set: no Qdrant server to test against")
    settings = Settings(
        engine="local" if store == "local" else "edge",
        qdrant_path=folder / "qdrant",
        cache_dir=folder / "cache",
        collection=f"test_{uuid.uuid4().hex[:12]}",
        cover_allowed_hosts=("127.0.0.1",),
        http_timeout_s=2.0,
        store_process=store == "edge-process",
    )
    if store == "server":
        settings = replace(settings, qdrant_url=os.environ["QDRANT_URL"], qdrant_api_key=os.environ.get("QDRANT_API_KEY"))
    return settings


def alive(pid: int) -> bool:
    """Whether process `pid` runs (Linux: a zombie has ended)."""
    status = Path(f"/proc/{pid}/status")
    return status.is_file() and "\nState:\tZ" not in status.read_text()


def outlived(pids: set[int], seconds: float = 20) -> list[int]:
    """The processes among `pids` still running after waiting up to `seconds` for them to end."""
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [pid for pid in pids if alive(pid)]


def drop_collection(settings: Settings) -> None:
    """Remove a test's collection from the server (embedded stores live in temporary folders)."""
    if settings.qdrant_url:
        from qdrant_client import QdrantClient

        client = QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key)
        client.delete_collection(settings.collection)
        client.close()


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Each store test runs on the default embedded engine, and on a server when QDRANT_URL is set."""
    settings = store_settings(request.param, tmp_path)
    yield settings
    drop_collection(settings)


@pytest.fixture(params=ENGINES)
def engine_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings for a fresh collection on every engine: Edge, local mode, and the server if set."""
    settings = store_settings(request.param, tmp_path)
    yield settings
    drop_collection(settings)


@pytest.fixture
def write_catalogue(tmp_path: Path) -> Callable[[list[dict[str, object]], str], Path]:
    """Write rows as a catalogue file in `tmp_path` (CSV, Parquet or JSON lines by suffix)."""
    def write(rows: list[dict[str, object]], name: str = "catalogue.csv") -> Path:
        path = tmp_path / name
        frame = pd.DataFrame(rows)
        if name.endswith(".csv"):
            frame.to_csv(path, index=False)
        elif name.endswith(".parquet"):
            frame.to_parquet(path)
        else:
            frame.to_json(path, orient="records", lines=True)
        return path

    return write


@pytest.fixture
def themed_rows(tmp_path: Path) -> list[dict[str, object]]:
    """Eight good songs with local cover files: four about the sea (blue), four about the city (grey)."""
    rows = []
    for theme, lyrics, colour in (("sea", SEA_LYRICS, (20, 60, 200)), ("city", CITY_LYRICS, (90, 90, 90))):
        for i, text in enumerate(lyrics):
            cover = tmp_path / f"{theme}{i}.png"
            cover.write_bytes(make_cover(colour, i))
            rows.append(
                {
                    "id": f"{theme}-{i}",
                    "title": f"{theme.title()} Song {i}",
                    "artist": f"{theme.title()} Band {i % 2}",
                    "genre": theme,
                    "year": 1990 + i,
                    "lyrics": text,
                    "cover_path": cover.name,
                }
            )
    return rows


@pytest.fixture
def services():
    """The fake Spotify, LRCLIB and cover host on 127.0.0.1."""
    from tests.fakes import fake_services

    with fake_services() as running:
        yield running


@pytest.fixture
def online_settings(settings: Settings, services) -> Settings:
    """`settings` (a store) pointed at the fakes, with Spotify credentials."""
    return with_services(settings, services)


@pytest.fixture
def client_settings(tmp_path: Path, services) -> Settings:
    """Settings for HTTP clients alone (no store), pointed at the fakes."""
    return with_services(Settings(cache_dir=tmp_path / "cache", http_timeout_s=2.0), services)


def with_services(settings: Settings, services) -> Settings:
    """`settings` pointed at the fakes, with Spotify credentials and loopback covers allowed."""
    env = services.env()
    return replace(
        settings,
        spotify_client_id=env["SPOTIPY_CLIENT_ID"],
        spotify_client_secret=env["SPOTIPY_CLIENT_SECRET"],
        spotify_api_url=env["SPOTIFY_API_URL"],
        spotify_auth_url=env["SPOTIFY_AUTH_URL"],
        lrclib_url=env["LRCLIB_URL"],
        cover_allowed_hosts=("127.0.0.1",),
    )
