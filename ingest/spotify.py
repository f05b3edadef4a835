"""Spotify Web API through spotipy (client credentials): track search, track lookup and covers.

Retries: spotipy is given a plain requests session, so it retries nothing itself; every call goes
through one tenacity policy here (429, 5xx, connection errors and timeouts; exponential backoff
with jitter; a 429's Retry-After honoured; total waiting bounded). No request is retried twice over.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests
import spotipy
from spotipy.cache_handler import MemoryCacheHandler
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from search.settings import Settings

T = TypeVar("T")
MAX_TOTAL_WAIT_S = 20.0
_BACKOFF = wait_exponential_jitter(initial=0.5, max=8.0, jitter=0.5)
CACHE_TTL_S = 24 * 3600
_TRACK_ID = re.compile(r"^[0-9A-Za-z]{22}$")
_TRACK_URI = re.compile(r"^spotify:track:([0-9A-Za-z]{22})$")
_TRACK_URL = re.compile(r"^https?://open\.spotify\.com/(?:intl-[a-z-]+/)?track/([0-9A-Za-z]{22})(?:[/?#].*)?$")


class SpotifyError(Exception):
    """Spotify cannot answer: no credentials, bad input, down or rate-limited. Says what to do."""


def parse_track_id(ref: str) -> str:
    """The track id in a bare id, a `spotify:track:` URI or an open.spotify.com track URL."""
    ref = ref.strip()
    for pattern in (_TRACK_URI, _TRACK_URL):
        match = pattern.match(ref)
        if match:
            return match[1]
    if _TRACK_ID.match(ref):
        return ref
    raise SpotifyError(
        f"{ref!r} is not a Spotify track: give a 22-character track id, a spotify:track: URI or an "
        "https://open.spotify.com/track/... link"
    )


@dataclass(frozen=True)
class SpotifyTrack:
    """The track data Songspace uses."""

    id: str
    title: str
    artists: list[str]
    album: str | None
    year: int | None
    covers: list[tuple[int, str]]  # (width in pixels, URL), smallest first
    url: str
    duration_ms: int | None

    def cover_url(self, min_width: int = 224) -> str | None:
        """The smallest cover at least `min_width` wide (the encoders crop to 224), else the largest."""
        for width, url in self.covers:
            if width >= min_width:
                return url
        return self.covers[-1][1] if self.covers else None

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> SpotifyTrack:
        """Read a Web API track object."""
        album = item.get("album") or {}
        release = str(album.get("release_date") or "")
        images = sorted(
            ((int(i.get("width") or 0), i["url"]) for i in album.get("images") or [] if i.get("url")),
        )
        return cls(
            id=item["id"],
            title=item.get("name") or "",
            artists=[a["name"] for a in item.get("artists") or [] if a.get("name")],
            album=album.get("name"),
            year=int(release[:4]) if release[:4].isdigit() else None,
            covers=images,
            url=(item.get("external_urls") or {}).get("spotify") or f"https://open.spotify.com/track/{item['id']}",
            duration_ms=item.get("duration_ms"),
        )


def _retryable(error: BaseException) -> bool:
    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return True
    return isinstance(error, spotipy.SpotifyException) and (error.http_status == 429 or error.http_status >= 500)


def _retry_after(error: BaseException | None) -> float | None:
    if isinstance(error, spotipy.SpotifyException) and error.http_status == 429:
        value = (error.headers or {}).get("Retry-After")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None
    return None


def _wait(state: RetryCallState) -> float:
    """Retry-After when the server sends one, else exponential backoff with jitter."""
    error = state.outcome.exception() if state.outcome else None
    retry_after = _retry_after(error)
    if retry_after is not None:
        if retry_after > MAX_TOTAL_WAIT_S:
            raise SpotifyError(f"Spotify rate limit: it asks to wait {retry_after:.0f} s; try again later")
        return retry_after
    return _BACKOFF(state)


class ResponseCache:
    """Keeps API answers in process, and on disk too when given a folder (for ingestion runs)."""

    def __init__(self, folder: Path | None = None, ttl_s: float = CACHE_TTL_S) -> None:
        self.folder = folder
        self.ttl_s = ttl_s
        self._memory: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get_or_call(self, key: str, call: Callable[[], T]) -> T:
        """The cached answer for `key`, else `call()`'s, which is then cached."""
        now = time.time()
        with self._lock:
            hit = self._memory.get(key)
        if hit and now - hit[0] < self.ttl_s:
            return hit[1]
        path = self.folder / f"{hashlib.sha256(key.encode()).hexdigest()}.json" if self.folder else None
        if path is not None and path.is_file() and now - path.stat().st_mtime < self.ttl_s:
            value = json.loads(path.read_text())
        else:
            value = call()
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(value))
        with self._lock:
            self._memory[key] = (now, value)
        return value


class SpotifyClient:
    """Track search and lookup with one retry policy and a response cache."""

    def __init__(self, settings: Settings, disk_cache: bool = False) -> None:
        if not settings.spotify_configured:
            raise SpotifyError(
                "Spotify is not configured: set SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET (in the "
                "environment or .env) to search Spotify and add its songs; everything else works without"
            )
        session = requests.Session()  # a plain session: spotipy adds no retry adapter to it
        auth = spotipy.SpotifyClientCredentials(
            client_id=settings.spotify_client_id,
            client_secret=settings.spotify_client_secret,
            requests_session=session,
            requests_timeout=settings.http_timeout_s,
            cache_handler=MemoryCacheHandler(),  # never write the token to disk
        )
        auth.OAUTH_TOKEN_URL = settings.spotify_auth_url
        self._api = spotipy.Spotify(
            auth_manager=auth, requests_session=session, requests_timeout=settings.http_timeout_s
        )
        self._api.prefix = settings.spotify_api_url.rstrip("/") + "/"
        self.cache = ResponseCache(settings.cache_dir / "spotify" if disk_cache else None)

    def _call(self, key: str, call: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
        @retry(
            retry=retry_if_exception(_retryable),
            wait=_wait,
            stop=stop_after_attempt(4) | stop_after_delay(MAX_TOTAL_WAIT_S),
            reraise=True,
        )
        def attempt() -> dict[str, Any]:
            result = call()
            if not isinstance(result, dict):  # spotipy turns an unparsable body into None
                raise SpotifyError("Spotify sent a malformed response; try again later")
            return result

        try:
            return self.cache.get_or_call(key, attempt)
        except spotipy.SpotifyOauthError as error:
            raise SpotifyError(f"Spotify refused the client credentials ({error.error}); check them") from error
        except spotipy.SpotifyException as error:
            if error.http_status == 404 or error.http_status == 400:
                raise SpotifyError("Spotify has no such track") from error
            if error.http_status == 429:
                raise SpotifyError("Spotify is rate-limiting requests; try again in a minute") from error
            raise SpotifyError(f"Spotify answered HTTP {error.http_status}; try again later") from error
        except (requests.ConnectionError, requests.Timeout) as error:
            raise SpotifyError(f"Spotify cannot be reached ({error.__class__.__name__}); try again later") from error

    def search_tracks(self, query: str, limit: int = 10) -> list[SpotifyTrack]:
        """Tracks matching a free-text query, in Spotify's order."""
        if not query.strip():
            return []
        answer = self._call(
            f"search|{limit}|{query}", lambda: self._api.search(q=query, type="track", limit=limit)
        )
        items = (answer.get("tracks") or {}).get("items") or []
        return [SpotifyTrack.from_api(item) for item in items if item and item.get("id")]

    def track(self, ref: str) -> SpotifyTrack:
        """One track by id, URI or URL."""
        track_id = parse_track_id(ref)
        return SpotifyTrack.from_api(self._call(f"track|{track_id}", lambda: self._api.track(track_id)))
