"""A fake Spotify Web API and Accounts service, LRCLIB and cover host on 127.0.0.1.

Response shapes follow the public documentation: Spotify's track, album and playlist objects,
search results, the several-tracks endpoint (null for unknown ids), paging objects, the February
2026 playlist `items` endpoint (each entry's track under "item"), Authorization Code with PKCE
(authorize redirect, code exchange, refresh with rotation), POST /me/playlists, and LRCLIB's
/api/get and /api/search records. Like Spotify, playlists that Spotify owns answer 404.
Tests can script faults per path prefix (PASS lets one request through).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import secrets
import string
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from search.index import normalise_text
from tests.conftest import CITY_LYRICS, SEA_LYRICS, make_cover

CLIENT_ID, CLIENT_SECRET = "test-client", "test-secret"
CLIENT_TOKEN = "fake-token"
HOSTILE_TITLE = "<img src=x onerror=alert(1)>"
USER_ID = "songspace-tester"
PASS: tuple[int, dict[str, str], bytes | None] = (-1, {}, None)  # in a fault script: answer as usual
BASE62 = string.digits + string.ascii_lowercase + string.ascii_uppercase


def fake_spotify_id(seed: str) -> str:
    """A deterministic id shaped like Spotify's: a 128-bit number in 22 base62 digits."""
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:16], "big")
    digits = []
    for _ in range(22):
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


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
    album_id: str = ""  # tracks of one album share it, and so share their cover URLs

    def __post_init__(self) -> None:
        self.album_id = self.album_id or f"al-{self.id}"


TRACKS = [
    FakeTrack("4uLU6hMCjMI75M1A2tKUQC", "Harbour Lights", ["The Tides"], "Salt", "1999-05-01", 201000, (20, 60, 200), SEA_LYRICS[0] + "\n" + SEA_LYRICS[1]),
    FakeTrack("1301WleyT98MSxVHPZCA6M", "Neon Avenue", ["Métro Boys"], "Downtown", "2011", 185000, (90, 90, 90), CITY_LYRICS[0] + "\n" + CITY_LYRICS[2]),
    FakeTrack("7ouMYWpwJ422jRcDASZB7P", "Café Déjà Vu", ["Zoë Ångström"], "Été", "2020-07-14", 199000, (200, 120, 40), SEA_LYRICS[3], lyrics_by_search_only=True),
    FakeTrack("3n3Ppam7vgaVa1iaRUc9Lp", "Ambient Drift", ["Quiet Hours"], "Drift", "2015-01-01", 320000, (10, 140, 120), instrumental=True),
    FakeTrack("2takcwOaAZWiXQijPHIx7B", "Unknown Words", ["Mystery Act"], "Nowhere", "2003-03-03", 240000, (160, 30, 160)),
    FakeTrack("0VjIjW4GlUZAMYd2vXMi3b", "Bare Sleeve", ["No Art"], "Plain", "2001", 210000, None, CITY_LYRICS[1]),
    FakeTrack("5ghIJDpPoe3CfHMGu71E6T", HOSTILE_TITLE, ["Mallory"], "Script", "2022", 180000, (250, 0, 0), CITY_LYRICS[3]),
]


def _catalogue_tracks() -> list[FakeTrack]:
    """160 tracks on 26 albums: a 60-track box set, then 25 albums of 4 (a catalogue-scale load)."""
    tracks = []
    for album_no in range(26):
        album_id = fake_spotify_id(f"album-{album_no}")
        colour = ((album_no * 53) % 256, (album_no * 97 + 40) % 256, (album_no * 151 + 80) % 256)
        artists = [f"Catalogue Artist {album_no}"] + ([f"Guest {album_no}"] if album_no % 3 == 0 else [])
        for number in range(60 if album_no == 0 else 4):
            tracks.append(
                FakeTrack(
                    fake_spotify_id(f"track-{album_no}-{number}"), f"Catalogue Song {album_no}-{number}", artists,
                    f"Catalogue Album {album_no}", f"{1960 + album_no}-0{1 + album_no % 9}-15", 150000 + 1000 * number,
                    colour, album_id=album_id,
                )
            )
    return tracks


CATALOGUE_TRACKS = _catalogue_tracks()
ALL_TRACKS = TRACKS + CATALOGUE_TRACKS
BOX_SET_ID = CATALOGUE_TRACKS[0].album_id  # 60 tracks: more than one page

# A user's playlist of 120 catalogue tracks, with a local file, a removed track and a podcast episode
# among them (entries that are not usable tracks).
ROAD_TRIP_ID = fake_spotify_id("playlist-road-trip")
ROAD_TRIP: list[FakeTrack | str | None] = [*CATALOGUE_TRACKS[:120]]
ROAD_TRIP[5:5] = ["local"]
ROAD_TRIP[10:10] = [None]
ROAD_TRIP[15:15] = ["episode"]
PLAYLISTS = {ROAD_TRIP_ID: ("Road Trip", ROAD_TRIP)}
TODAYS_TOP_HITS_ID = "37i9dQZF1DXcBWIGoYBM5M"  # owned by Spotify: closed to new apps (404)


@dataclass
class FakeServices:
    """Base URLs, request log, fault script and the fake Spotify account's state."""

    url: str
    faults: dict[str, list[tuple[int, dict[str, str], bytes | None]]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    bodies: list[tuple[str, dict[str, Any] | list[Any] | None]] = field(default_factory=list)  # POST path, body
    login_denied: bool = False  # the user clicks "Cancel" on Spotify's consent page
    token_lifetimes: list[int] = field(default_factory=list)  # expires_in of the next user tokens issued
    auth_codes: dict[str, dict[str, str]] = field(default_factory=dict)
    user_tokens: dict[str, bool] = field(default_factory=dict)  # access token -> still valid
    refresh_tokens: set[str] = field(default_factory=set)
    issued: list[str] = field(default_factory=list)  # every token handed out, to check none leaks
    created: dict[str, dict[str, Any]] = field(default_factory=dict)  # playlists made through the API

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

    def grants(self, grant_type: str) -> int:
        """Token requests of one grant type ("authorization_code", "refresh_token", ...)."""
        return sum(path == "/api/token" and (body or {}).get("grant_type") == grant_type for path, body in self.bodies)

    def expire_user_tokens(self) -> None:
        """Spotify considers every user access token issued so far expired."""
        for token in self.user_tokens:
            self.user_tokens[token] = False

    def revoke_refresh_tokens(self) -> None:
        """The user removed the app's access in their Spotify account settings."""
        self.refresh_tokens.clear()


def cover_url(track: FakeTrack, base: str, size: int) -> str:
    return f"{base}/covers/{track.album_id}-{size}.png"


def album_json(track: FakeTrack, base: str) -> dict[str, Any]:
    images = [] if track.colour is None else [
        {"url": cover_url(track, base, size), "height": size, "width": size} for size in (640, 300, 64)
    ]
    return {
        "id": track.album_id,
        "name": track.album,
        "type": "album",
        "album_type": "album",
        "uri": f"spotify:album:{track.album_id}",
        "release_date": track.release_date,
        "images": images,
        "external_urls": {"spotify": f"https://open.spotify.com/album/{track.album_id}"},
    }


def track_json(track: FakeTrack, base: str, with_album: bool = True) -> dict[str, Any]:
    item = {
        "id": track.id,
        "name": track.title,
        "type": "track",
        "uri": f"spotify:track:{track.id}",
        "duration_ms": track.duration_ms,
        "explicit": False,
        "external_urls": {"spotify": f"https://open.spotify.com/track/{track.id}"},
        "artists": [{"id": f"a{i}", "name": name, "type": "artist"} for i, name in enumerate(track.artists)],
    }
    if with_album:
        item["album"] = album_json(track, base)
    return item


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


def paging(items: list[Any], href: str, offset: int, limit: int, total: int) -> dict[str, Any]:
    following = offset + limit < total
    return {
        "href": f"{href}?offset={offset}&limit={limit}",
        "items": items,
        "limit": limit,
        "offset": offset,
        "total": total,
        "next": f"{href}?offset={offset + limit}&limit={limit}" if following else None,
        "previous": f"{href}?offset={max(0, offset - limit)}&limit={limit}" if offset else None,
    }


def playlist_entry(entry: FakeTrack | str | None, base: str) -> dict[str, Any]:
    if entry == "local":
        item: dict[str, Any] | None = {
            "id": None, "name": "My Demo", "type": "track", "uri": "spotify:local:Me::My+Demo:200",
            "artists": [{"name": "Me"}], "album": {"name": None, "images": []}, "duration_ms": 200000,
        }
    elif entry == "episode":
        item = {"id": fake_spotify_id("episode"), "name": "A Podcast Episode", "type": "episode", "duration_ms": 1800000}
    elif isinstance(entry, FakeTrack):
        item = track_json(entry, base)
    else:
        item = None  # a track since removed from Spotify
    # During the deprecation window Spotify sends the track under both keys.
    return {"added_at": "2024-05-01T12:00:00Z", "is_local": entry == "local", "item": item, "track": item}


def pkce_challenge(verifier: str) -> str:
    """RFC 7636's S256 code challenge."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


@contextmanager
def fake_services() -> Iterator[FakeServices]:
    """Run the fakes on a free loopback port for the duration of the block."""
    state = FakeServices(url="")
    numbers = itertools.count(1)

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

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": {"status": status, "message": message}})

        def _fault(self, path: str) -> bool:
            for prefix, script in state.faults.items():
                if path.startswith(prefix) and script:
                    status, headers, body = script.pop(0)
                    if status == PASS[0]:  # this one is answered as usual
                        return False
                    if status == 0:  # a silent server: wait past any client timeout
                        time.sleep(float(headers.get("sleep", "3")))
                        return True
                    self._send(status, body if body is not None else {"error": {"status": status, "message": "scripted"}}, headers)
                    return True
            return False

        def _bearer(self) -> str | None:
            """'client' for the app's token, 'user' for a valid user token, 'expired', or None."""
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            if token == CLIENT_TOKEN:
                return "client"
            if token in state.user_tokens:
                return "user" if state.user_tokens[token] else "expired"
            return None

        def _issue_user_tokens(self, scope: str) -> None:
            access, refresh = f"user-access-{secrets.token_hex(8)}", f"user-refresh-{secrets.token_hex(8)}"
            state.user_tokens[access] = True
            state.refresh_tokens.add(refresh)
            state.issued += [access, refresh]
            lifetime = state.token_lifetimes.pop(0) if state.token_lifetimes else 3600
            self._send(200, {"access_token": access, "token_type": "Bearer", "scope": scope, "expires_in": lifetime, "refresh_token": refresh})

        def _token(self, form: dict[str, str]) -> None:
            grant = form.get("grant_type")
            if grant == "client_credentials":
                expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self._send(400, {"error": "invalid_client", "error_description": "Invalid client"})
                else:
                    self._send(200, {"access_token": CLIENT_TOKEN, "token_type": "Bearer", "expires_in": 3600})
            elif grant == "authorization_code":
                issued = state.auth_codes.pop(form.get("code", ""), None)  # a code is good once
                if issued is None or form.get("client_id") != CLIENT_ID or form.get("redirect_uri") != issued["redirect_uri"]:
                    self._send(400, {"error": "invalid_grant", "error_description": "Invalid authorization code"})
                elif pkce_challenge(form.get("code_verifier", "")) != issued["challenge"]:
                    self._send(400, {"error": "invalid_grant", "error_description": "code_verifier was incorrect"})
                else:
                    self._issue_user_tokens(issued["scope"])
            elif grant == "refresh_token":
                if form.get("client_id") != CLIENT_ID or form.get("refresh_token") not in state.refresh_tokens:
                    self._send(400, {"error": "invalid_grant", "error_description": "Refresh token revoked"})
                else:
                    state.refresh_tokens.discard(form["refresh_token"])  # rotated: the old one is spent
                    self._issue_user_tokens("playlist-modify-private")
            else:
                self._send(400, {"error": "unsupported_grant_type"})

        def _authorize(self, query: dict[str, str]) -> None:
            redirect = query.get("redirect_uri", "")
            if query.get("client_id") != CLIENT_ID or not redirect:
                self._send(400, b"INVALID_CLIENT: Invalid client", content_type="text/html")
                return
            if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
                answer = {"error": "invalid_request"}
            elif state.login_denied:
                answer = {"error": "access_denied"}
            else:
                code = f"code-{secrets.token_hex(8)}"
                state.auth_codes[code] = {"challenge": query["code_challenge"], "redirect_uri": redirect, "scope": query.get("scope", "")}
                answer = {"code": code}
            if "state" in query:
                answer["state"] = query["state"]
            separator = "&" if "?" in redirect else "?"
            self.send_response(302)
            self.send_header("Location", f"{redirect}{separator}{urlencode(answer)}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:  # noqa: N802
            state.requests.append(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            parts = urlsplit(self.path)
            if (self.headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
                body: Any = {k: v[0] for k, v in parse_qs(raw).items()}
            else:
                body = json.loads(raw) if raw else None
            state.bodies.append((parts.path, body))
            if self._fault(self.path):
                return
            if parts.path == "/api/token":
                self._token(body or {})
                return
            bearer = self._bearer()
            if bearer == "expired":
                self._error(401, "The access token expired")
            elif bearer != "user":
                self._error(401, "No token provided" if bearer is None else "This request needs a user's login")
            elif parts.path == "/v1/me/playlists":
                playlist_id = fake_spotify_id(f"created-{next(numbers)}")
                state.created[playlist_id] = {**body, "owner": USER_ID, "items": []}
                self._send(201, {
                    "id": playlist_id, "name": body["name"], "public": body.get("public"), "description": body.get("description"),
                    "owner": {"id": USER_ID}, "uri": f"spotify:playlist:{playlist_id}",
                    "external_urls": {"spotify": f"https://open.spotify.com/playlist/{playlist_id}"}, "items": {"total": 0},
                })
            elif parts.path.startswith("/v1/playlists/") and parts.path.endswith("/items"):
                playlist = state.created.get(parts.path.split("/")[3])
                # The documented body is {"uris": [...]}; spotipy sends the list itself.
                uris = body.get("uris") if isinstance(body, dict) else body
                if playlist is None:
                    self._error(404, "Resource not found")
                elif not isinstance(uris, list) or len(uris) > 100:
                    self._error(400, "You can add a maximum of 100 tracks per request.")
                elif not all(isinstance(u, str) and u.startswith("spotify:track:") for u in uris):
                    self._error(400, "Invalid track uri")
                else:
                    playlist["items"] += uris
                    self._send(201, {"snapshot_id": secrets.token_hex(8)})
            else:
                self._error(404, "Service not found")

        def do_GET(self) -> None:  # noqa: N802
            state.requests.append(self.path)
            if self._fault(self.path):
                return
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            path = parts.path.rstrip("/")
            if parts.path == "/authorize":
                self._authorize(query)
            elif path.startswith("/v1/"):
                bearer = self._bearer()
                if bearer in ("client", "user"):
                    self._web_api(path, query)
                elif bearer == "expired":
                    self._error(401, "The access token expired")
                else:
                    self._error(401, "No token provided")
            elif parts.path.startswith("/covers/"):
                album_id, size = parts.path[len("/covers/"):-4].rsplit("-", 1)
                track = next(t for t in ALL_TRACKS if t.album_id == album_id)
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

        def _limit(self, query: dict[str, str], default: int, most: int) -> int | None:
            limit = int(query.get("limit", default))
            if not 1 <= limit <= most:
                self._error(400, "Invalid limit")
                return None
            return limit

        def _web_api(self, path: str, query: dict[str, str]) -> None:
            base = state.url
            segments = path.split("/")[2:]  # after /v1
            by_id = {t.id: t for t in ALL_TRACKS}
            if segments == ["search"]:
                # Like Spotify's search: every word must appear, ignoring case and accents.
                words = normalise_text(query.get("q", "").replace("track:", " ").replace("artist:", " ")).split()
                hits = [t for t in ALL_TRACKS if all(w in normalise_text(f"{t.title} {' '.join(t.artists)}") for w in words)]
                limit = self._limit(query, 5, 10)  # since February 2026: at most 10, 5 by default
                if limit is not None:
                    page = paging([track_json(t, base) for t in hits[:limit]], f"{base}/v1/search", 0, limit, len(hits))
                    self._send(200, {"tracks": page})
            elif segments == ["tracks"]:
                ids = [i for i in query.get("ids", "").split(",") if i]
                if not ids or len(ids) > 50:
                    self._error(400, "Too many ids requested" if ids else "invalid id")
                else:
                    self._send(200, {"tracks": [track_json(by_id[i], base) if i in by_id else None for i in ids]})
            elif len(segments) == 2 and segments[0] == "tracks":
                track = by_id.get(segments[1])
                if track is None:
                    self._error(404, "Resource not found")
                else:
                    self._send(200, track_json(track, base))
            elif segments[0] == "albums" and len(segments) in (2, 3):
                tracks = [t for t in ALL_TRACKS if t.album_id == segments[1]]
                if not tracks or (len(segments) == 3 and segments[2] != "tracks"):
                    self._error(404, "Resource not found")
                    return
                limit = self._limit(query, 20 if len(segments) == 3 else 50, 50)
                if limit is None:
                    return
                offset = int(query.get("offset", 0))
                href = f"{base}/v1/albums/{segments[1]}/tracks"
                page = paging([track_json(t, base, with_album=False) for t in tracks[offset : offset + limit]], href, offset, limit, len(tracks))
                if len(segments) == 3:
                    self._send(200, page)
                else:
                    self._send(200, {**album_json(tracks[0], base), "total_tracks": len(tracks), "tracks": page})
            elif segments[0] == "playlists" and len(segments) in (2, 3) and segments[1] in PLAYLISTS:
                name, entries = PLAYLISTS[segments[1]]
                if len(segments) == 2:
                    self._send(200, {"id": segments[1], "name": name, "owner": {"id": USER_ID},
                                     "external_urls": {"spotify": f"https://open.spotify.com/playlist/{segments[1]}"}})
                    return
                limit = self._limit(query, 20, 50)
                if limit is None:
                    return
                offset = int(query.get("offset", 0))
                items = [playlist_entry(e, base) for e in entries[offset : offset + limit]]
                self._send(200, paging(items, f"{base}/v1/playlists/{segments[1]}/items", offset, limit, len(entries)))
            elif segments == ["me"] and self._bearer() == "user":
                self._send(200, {"id": USER_ID, "display_name": "Songspace Tester", "type": "user"})
            else:  # unknown ids, and playlists Spotify owns (closed to new apps since 2024-11-27)
                self._error(404, "Resource not found")

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
