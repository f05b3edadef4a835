"""A fake Spotify Web API (token endpoint included), LRCLIB and cover host on 127.0.0.1.

Response shapes follow the public documentation: Spotify's track object and search result, and
LRCLIB's /api/get and /api/search records. Tests can script faults per path prefix.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from search.index import normalise_text
from tests.conftest import CITY_LYRICS, SEA_LYRICS, make_cover

CLIENT_ID, CLIENT_SECRET = "test-client", "test-secret"
HOSTILE_TITLE = "<img src=x onerror=alert(1)>"


@dataclass
class FakeTrack:
    id: str
    title: str
    artists: list[str]
    album: str
    release_date: str
    duration_ms: int
    colour: tuple[int, int, int] | None  # None: the album has no images
    lyrics: str | None = None  # served by /api/get
    lyrics_by_search_only: bool = False
    instrumental: bool = False


TRACKS = [
    FakeTrack("4uLU6hMCjMI75M1A2tKUQC", "Harbour Lights", ["The Tides"], "Salt", "1999-05-01", 201000, (20, 60, 200), SEA_LYRICS[0] + "\n" + SEA_LYRICS[1]),
    FakeTrack("1301WleyT98MSxVHPZCA6M", "Neon Avenue", ["Métro Boys"], "Downtown", "2011", 185000, (90, 90, 90), CITY_LYRICS[0] + "\n" + CITY_LYRICS[2]),
    FakeTrack("7ouMYWpwJ422jRcDASZB7P", "Café Déjà Vu", ["Zoë Ångström"], "Été", "2020-07-14", 199000, (200, 120, 40), SEA_LYRICS[3], lyrics_by_search_only=True),
    FakeTrack("3n3Ppam7vgaVa1iaRUc9Lp", "Ambient Drift", ["Quiet Hours"], "Drift", "2015-01-01", 320000, (10, 140, 120), instrumental=True),
    FakeTrack("2takcwOaAZWiXQijPHIx7B", "Unknown Words", ["Mystery Act"], "Nowhere", "2003-03-03", 240000, (160, 30, 160)),
    FakeTrack("0VjIjW4GlUZAMYd2vXMi3b", "Bare Sleeve", ["No Art"], "Plain", "2001", 210000, None, CITY_LYRICS[1]),
    FakeTrack("5ghIJDpPoe3CfHMGu71E6T", HOSTILE_TITLE, ["Mallory"], "Script", "2022", 180000, (250, 0, 0), CITY_LYRICS[3]),
]


@dataclass
class FakeServices:
    """Base URLs, request log and fault script of a running fake."""

    url: str
    faults: dict[str, list[tuple[int, dict[str, str], bytes | None]]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def count(self, prefix: str) -> int:
        return sum(path.startswith(prefix) for path in self.requests)

    def env(self) -> dict[str, str]:
        return {
            "SPOTIPY_CLIENT_ID": CLIENT_ID,
            "SPOTIPY_CLIENT_SECRET": CLIENT_SECRET,
            "SPOTIFY_API_URL": f"{self.url}/v1/",
            "SPOTIFY_AUTH_URL": f"{self.url}/api/token",
            "LRCLIB_URL": self.url,
            "COVER_ALLOWED_HOSTS": "127.0.0.1",
        }


def track_json(track: FakeTrack, base: str) -> dict[str, Any]:
    images = [] if track.colour is None else [
        {"url": f"{base}/covers/{track.id}-{size}.png", "height": size, "width": size} for size in (640, 300, 64)
    ]
    return {
        "id": track.id,
        "name": track.title,
        "type": "track",
        "uri": f"spotify:track:{track.id}",
        "duration_ms": track.duration_ms,
        "explicit": False,
        "popularity": 50,
        "external_urls": {"spotify": f"https://open.spotify.com/track/{track.id}"},
        "artists": [{"id": f"a{i}", "name": name, "type": "artist"} for i, name in enumerate(track.artists)],
        "album": {"id": f"al-{track.id}", "name": track.album, "release_date": track.release_date, "images": images},
    }


def lrclib_json(track: FakeTrack) -> dict[str, Any]:
    return {
        "id": abs(hash(track.id)) % 100000,
        "trackName": track.title,
        "artistName": ", ".join(track.artists),
        "albumName": track.album,
        "duration": track.duration_ms / 1000,
        "instrumental": track.instrumental,
        "plainLyrics": None if track.instrumental else track.lyrics,
        "syncedLyrics": None,
    }


@contextmanager
def fake_services() -> Iterator[FakeServices]:
    """Run the fakes on a free loopback port for the duration of the block."""
    state = FakeServices(url="")

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None, content_type: str = "application/json") -> None:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(raw)

        def _fault(self, path: str) -> bool:
            for prefix, script in state.faults.items():
                if path.startswith(prefix) and script:
                    status, headers, body = script.pop(0)
                    if status == 0:  # a silent server: wait past any client timeout
                        time.sleep(float(headers.get("sleep", "3")))
                        return True
                    self._send(status, body if body is not None else {"error": {"status": status, "message": "scripted"}}, headers)
                    return True
            return False

        def do_POST(self) -> None:  # noqa: N802
            state.requests.append(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            if self._fault(self.path):
                return
            expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if self.path != "/api/token" or self.headers.get("Authorization") != expected:
                self._send(400, {"error": "invalid_client", "error_description": "Invalid client"})
                return
            self._send(200, {"access_token": "fake-token", "token_type": "Bearer", "expires_in": 3600})

        def do_GET(self) -> None:  # noqa: N802
            state.requests.append(self.path)
            if self._fault(self.path):
                return
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            base = state.url
            if parts.path.startswith("/v1/") and self.headers.get("Authorization") != "Bearer fake-token":
                self._send(401, {"error": {"status": 401, "message": "No token provided"}})
            elif parts.path == "/v1/search":
                # Like Spotify's search: every word must appear, ignoring case and accents.
                words = normalise_text(query.get("q", "").replace("track:", " ").replace("artist:", " ")).split()
                hits = [t for t in TRACKS if all(w in normalise_text(f"{t.title} {' '.join(t.artists)}") for w in words)]
                limit = int(query.get("limit", 10))
                items = [track_json(t, base) for t in hits[:limit]]
                self._send(200, {"tracks": {"href": f"{base}{self.path}", "items": items, "limit": limit, "offset": 0, "total": len(hits), "next": None, "previous": None}})
            elif parts.path.startswith("/v1/tracks/"):
                track = next((t for t in TRACKS if t.id == parts.path.rsplit("/", 1)[-1]), None)
                if track is None:
                    self._send(404, {"error": {"status": 404, "message": "Resource not found"}})
                else:
                    self._send(200, track_json(track, base))
            elif parts.path.startswith("/covers/"):
                track_id, size = parts.path[len("/covers/"):-4].rsplit("-", 1)
                track = next(t for t in TRACKS if t.id == track_id)
                self._send(200, make_cover(track.colour or (0, 0, 0), int(size), size=int(size)), content_type="image/png")
            elif parts.path == "/api/get":
                track = next(
                    (t for t in TRACKS if t.title == query.get("track_name") and ", ".join(t.artists) == query.get("artist_name")
                     and not t.lyrics_by_search_only and (t.lyrics or t.instrumental)),
                    None,
                )
                if track is None:
                    self._send(404, {"code": 404, "name": "TrackNotFound", "message": "Failed to find specified track"})
                else:
                    self._send(200, lrclib_json(track))
            elif parts.path == "/api/search":
                title = query.get("track_name", "").lower()
                self._send(200, [lrclib_json(t) for t in TRACKS if title and title in t.title.lower() and (t.lyrics or t.instrumental)])
            else:
                self._send(404, {"error": "not found"})

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
