"""Spotify Web API through spotipy (client credentials): track search, track lookup by id (one or
many), playlists and albums, and covers.

Retries: spotipy is given a plain requests session, so it retries nothing itself; every call goes
through one tenacity policy here (429, 5xx, connection errors and timeouts; exponential backoff
with jitter; a 429's Retry-After honoured; total waiting bounded). No request is retried twice over:
a batched lookup is one call under that policy, and nothing above it retries again.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
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
log = logging.getLogger(__name__)

MAX_TOTAL_WAIT_S = 20.0
_BACKOFF = wait_exponential_jitter(initial=0.5, max=8.0, jitter=0.5)
# A catalogue load can take days on a CPU; a resumed run must still find the answers it was given.
CACHE_TTL_S = 7 * 24 * 3600
LOOKUP_BATCH = 50  # the most ids the several-tracks endpoint takes
CACHED_CHUNK = 1000  # cached answers handed out at a time, so a resumed catalogue-sized run stays small
# Answers a process keeps in memory (the page's, for as long as it runs), the oldest dropped first.
MEMORY_ENTRIES = 10_000
PAGE_SIZE = 50  # the most items one page of playlist or album tracks holds
DEFAULT_COLLECTION_CAP = 100  # tracks taken from a pasted playlist or album, unless asked otherwise
# Every editorial and algorithmic playlist Spotify owns has an id starting so (Today's Top Hits,
# Discover Weekly, Daily Mix, ...).
SPOTIFY_OWNED_PLAYLIST_PREFIX = "37i9dQZ"

_ID = r"[0-9A-Za-z]{22}"
_TRACK_ID = re.compile(rf"^{_ID}$")
_URL = r"^https?://open\.spotify\.com/(?:intl-[a-z-]+/)?{kind}/({id})(?:[/?#].*)?$"


def _patterns(kind: str) -> tuple[re.Pattern[str], ...]:
    uri = rf"^spotify:{kind}:({_ID})$"
    patterns = [re.compile(uri), re.compile(_URL.format(kind=kind, id=_ID))]
    if kind == "playlist":  # the older form that names the owner
        patterns.append(re.compile(rf"^spotify:user:[^:\s]+:playlist:({_ID})$"))
    return tuple(patterns)


_REFS = {kind: _patterns(kind) for kind in ("track", "playlist", "album")}


class _NoSecretsInSpotipyDebug(logging.Filter):
    """spotipy's debug records carry request headers and bodies (bearer tokens, refresh tokens):
    drop them, so that turning on debug logging never writes a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


for _name in ("spotipy.client", "spotipy.oauth2"):
    logging.getLogger(_name).addFilter(_NoSecretsInSpotipyDebug())


class SpotifyError(Exception):
    """Spotify cannot answer: no credentials, bad input, down or rate-limited. Says what to do."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def is_track_id(text: str | None) -> bool:
    """Whether `text` is shaped like a Spotify id (22 base62 characters)."""
    return bool(text and _TRACK_ID.match(text))


def _parse(ref: str, kind: str) -> str | None:
    ref = ref.strip()
    for pattern in _REFS[kind]:
        match = pattern.match(ref)
        if match:
            return match[1]
    return None


def parse_track_id(ref: str) -> str:
    """The track id in a bare id, a `spotify:track:` URI or an open.spotify.com track URL."""
    track_id = _parse(ref, "track") or (ref.strip() if is_track_id(ref.strip()) else None)
    if track_id is None:
        raise SpotifyError(
            f"{ref!r} is not a Spotify track: give a 22-character track id, a spotify:track: URI or an "
            "https://open.spotify.com/track/... link"
        )
    return track_id


def parse_collection_ref(ref: str) -> tuple[str, str]:
    """("playlist" or "album", id) from a playlist or album URL or URI."""
    for kind in ("playlist", "album"):
        found = _parse(ref, kind)
        if found:
            return kind, found
    raise SpotifyError(
        f"{ref!r} is not a Spotify playlist or album: paste its https://open.spotify.com/playlist/... "
        "or /album/... link (Share > Copy link), or its spotify:playlist: or spotify:album: URI"
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


@dataclass
class SpotifyCollection:
    """The tracks of a playlist or an album, up to a cap."""

    kind: str  # "playlist" or "album"
    id: str
    name: str
    url: str
    tracks: list[SpotifyTrack]
    total: int  # entries the playlist or album has, whether taken or not
    skipped: int = 0  # entries that are not usable tracks: local files, podcast episodes, removed tracks

    @property
    def truncated(self) -> bool:
        """Whether the cap left tracks out."""
        return len(self.tracks) + self.skipped < self.total


def _retryable(error: BaseException) -> bool:
    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return True
    return isinstance(error, spotipy.SpotifyException) and (error.http_status == 429 or error.http_status >= 500)


def rate_limited(error: BaseException) -> bool:
    """Whether Spotify refused a request for its rate limit (so it certainly did not act on it)."""
    return isinstance(error, spotipy.SpotifyException) and error.http_status == 429


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
            raise SpotifyError(f"Spotify rate limit: it asks to wait {retry_after:.0f} s; try again later", 429)
        return retry_after
    return _BACKOFF(state)


def call_with_retries(call: Callable[[], T], retryable: Callable[[BaseException], bool] = _retryable) -> T:
    """`call()` under the one retry policy; `retryable` narrows it (writes retry only what Spotify refused)."""
    policy = retry(
        retry=retry_if_exception(retryable),
        wait=_wait,
        stop=stop_after_attempt(4) | stop_after_delay(MAX_TOTAL_WAIT_S),
        reraise=True,
    )
    return policy(call)()


NO_SUCH_TRACK = {400: "Spotify has no such track", 404: "Spotify has no such track"}


def as_spotify_error(error: Exception, messages: Mapping[int, str] = NO_SUCH_TRACK) -> SpotifyError:
    """A SpotifyError for people from what spotipy or requests raised; `messages` explains statuses."""
    if isinstance(error, spotipy.SpotifyOauthError):
        return SpotifyError(f"Spotify refused the client credentials ({error.error}); check them")
    if isinstance(error, spotipy.SpotifyException):
        status = error.http_status
        if status in messages:
            return SpotifyError(messages[status], status)
        if status == 429:
            return SpotifyError("Spotify is rate-limiting requests; try again in a minute", status)
        return SpotifyError(f"Spotify answered HTTP {status}; try again later", status)
    return SpotifyError(f"Spotify cannot be reached ({error.__class__.__name__}); try again later")


def slim_track(item: dict[str, Any] | None) -> dict[str, Any] | None:
    """A track object cut to what SpotifyTrack reads, so a million cached answers stay small
    (a full one carries, among others, every market it is sold in)."""
    if not item:
        return None
    album = item.get("album") or {}
    return {
        "id": item.get("id"),
        "name": item.get("name"),
        "duration_ms": item.get("duration_ms"),
        "external_urls": {"spotify": (item.get("external_urls") or {}).get("spotify")},
        "artists": [{"name": a.get("name")} for a in item.get("artists") or [] if a],
        "album": {
            "name": album.get("name"),
            "release_date": album.get("release_date"),
            "images": [{"url": i.get("url"), "width": i.get("width")} for i in album.get("images") or [] if i],
        },
    }


class ResponseCache:
    """Keeps API answers in process memory (the page; at most `max_entries`, the oldest written
    dropped first, so a page that runs for months stays small), or in an SQLite file when given one
    (ingestion runs: one file holds a catalogue's million answers without holding them in memory,
    and each batch is committed at once, so a killed run keeps every answer it was given)."""

    def __init__(self, path: Path | None = None, ttl_s: float = CACHE_TTL_S, max_entries: int = MEMORY_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._memory: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Several ingestion processes may share the cache folder: wait for each other's writes.
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS answer (key TEXT PRIMARY KEY, saved REAL NOT NULL, value TEXT NOT NULL)"
            )

    def get(self, key: str) -> tuple[bool, Any]:
        """(True, the answer) if `key` has a fresh one (None is an answer too), else (False, None)."""
        with self._lock:
            if self._db is None:
                hit = self._memory.get(key)
            else:
                row = self._db.execute("SELECT saved, value FROM answer WHERE key = ?", (key,)).fetchone()
                hit = (row[0], json.loads(row[1])) if row else None
        if hit is None or time.time() - hit[0] >= self.ttl_s:
            return False, None
        return True, hit[1]

    def put_many(self, answers: dict[str, Any]) -> None:
        """Keep answers (in one transaction on disk)."""
        now = time.time()
        with self._lock:
            if self._db is None:
                for key, value in answers.items():
                    self._memory.pop(key, None)  # written again: now the newest
                    self._memory[key] = (now, value)
                while len(self._memory) > self.max_entries:
                    del self._memory[next(iter(self._memory))]
                return
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO answer VALUES (?, ?, ?)",
                    [(key, now, json.dumps(value)) for key, value in answers.items()],
                )

    def get_or_call(self, key: str, call: Callable[[], T]) -> T:
        """The cached answer for `key`, else `call()`'s, which is then cached."""
        found, value = self.get(key)
        if not found:
            value = call()
            self.put_many({key: value})
        return value


class SpotifyClient:
    """Track search, lookups, playlists and albums with one retry policy and a response cache.

    `requests` counts the HTTP requests made to the Web API by kind ("lookup", "search",
    "collection"), retries included, so runs can report what they cost.
    """

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
        self.cache = ResponseCache(settings.cache_dir / "spotify.sqlite" if disk_cache else None)
        self.requests: Counter[str] = Counter()
        self._requests_lock = threading.Lock()
        # Spotify removed the several-tracks endpoint for apps in development mode (February
        # 2026; it answers 403 there): after one refusal, ids are looked up one at a time.
        self._several_tracks = True

    def _call(
        self, kind: str, call: Callable[[], dict[str, Any] | None], messages: Mapping[int, str] = NO_SUCH_TRACK
    ) -> Any:
        """One API call under the retry policy, counted under `kind`; `messages` explains refusals."""
        def attempt() -> dict[str, Any]:
            with self._requests_lock:
                self.requests[kind] += 1
            result = call()
            if not isinstance(result, dict):  # spotipy turns an unparsable body into None
                raise SpotifyError("Spotify sent a malformed response; try again later")
            return result

        try:
            return call_with_retries(attempt)
        except (spotipy.SpotifyException, spotipy.SpotifyOauthError, requests.RequestException) as error:
            raise as_spotify_error(error, messages) from error

    def search_tracks(self, query: str, limit: int = 10) -> list[SpotifyTrack]:
        """Tracks matching a free-text query, in Spotify's order (at most 10: Spotify's cap)."""
        if not query.strip():
            return []

        def ask() -> dict[str, Any]:
            found = self._call("search", lambda: self._api.search(q=query, type="track", limit=limit))
            return {"tracks": {"items": [slim_track(item) for item in (found.get("tracks") or {}).get("items") or []]}}

        answer = self.cache.get_or_call(f"search|{limit}|{query}", ask)
        items = (answer.get("tracks") or {}).get("items") or []
        return [SpotifyTrack.from_api(item) for item in items if item and item.get("id")]

    def track(self, ref: str) -> SpotifyTrack:
        """One track by id, URI or URL."""
        track_id = parse_track_id(ref)
        item = self.cache.get_or_call(
            f"track|{track_id}", lambda: slim_track(self._call("lookup", lambda: self._api.track(track_id)))
        )
        if item is None:  # a batched lookup found earlier that Spotify does not know it
            raise SpotifyError("Spotify has no such track", 404)
        return SpotifyTrack.from_api(item)

    def tracks_by_id(self, ids: Iterable[str]) -> Iterator[dict[str, SpotifyTrack | None]]:
        """Tracks for many ids, a batch at a time: first those answered before, then one request per
        50 ids. None stands for an id Spotify does not know.

        Each answer is cached per track id as it arrives, so a run that stops (or is killed) and
        starts again asks only for ids it has no answer for, whatever its batches are.
        """
        cached: dict[str, SpotifyTrack | None] = {}
        missing = []
        for track_id in dict.fromkeys(ids):
            found, item = self.cache.get(f"track|{track_id}")
            if not found:
                missing.append(track_id)
                continue
            cached[track_id] = SpotifyTrack.from_api(item) if item else None
            if len(cached) == CACHED_CHUNK:
                yield cached
                cached = {}
        if cached:
            yield cached
        for start in range(0, len(missing), LOOKUP_BATCH):
            batch = missing[start : start + LOOKUP_BATCH]
            items = self._lookup(batch)
            self.cache.put_many({f"track|{track_id}": item for track_id, item in zip(batch, items)})
            yield {track_id: SpotifyTrack.from_api(item) if item else None for track_id, item in zip(batch, items)}

    def _lookup(self, batch: list[str]) -> list[dict[str, Any] | None]:
        """Track objects for up to 50 ids, in their order (None where Spotify knows no such id)."""
        if self._several_tracks:
            try:
                items = self._call("lookup", lambda: self._api.tracks(batch)).get("tracks")
            except SpotifyError as error:
                if error.status == 403:
                    log.warning("Spotify refused the several-tracks endpoint (HTTP 403): one request per track now")
                    self._several_tracks = False
                elif error.status != 400:  # 400: an id in the batch is not one Spotify could issue
                    raise
            else:
                if not isinstance(items, list) or len(items) != len(batch):
                    raise SpotifyError("Spotify sent a malformed response; try again later")
                return [slim_track(item) if isinstance(item, dict) and item.get("id") else None for item in items]
        return [self._lookup_one(track_id) for track_id in batch]

    def _lookup_one(self, track_id: str) -> dict[str, Any] | None:
        try:
            return slim_track(self._call("lookup", lambda: self._api.track(track_id)))
        except SpotifyError as error:
            if error.status in (400, 404):
                return None
            raise

    def collection(self, ref: str, limit: int = DEFAULT_COLLECTION_CAP) -> SpotifyCollection:
        """The first `limit` tracks of a playlist or album, from its URL or URI.

        Raises SpotifyError saying what to do when Spotify will not share it: playlists that
        Spotify owns (editorial and algorithmic) have been closed to new apps since 2024-11-27.
        """
        kind, collection_id = parse_collection_ref(ref)
        if kind == "album":
            return self._album(collection_id, limit)
        return self._playlist(collection_id, limit)

    def _playlist(self, playlist_id: str, limit: int) -> SpotifyCollection:
        # Not cached: a playlist changes, and a user pasting it again expects what it holds now.
        messages = _playlist_messages(playlist_id)
        meta = self._call(
            "collection", lambda: self._api.playlist(playlist_id, fields="name,external_urls"), messages=messages
        )
        items: list[dict[str, Any]] = []
        skipped = total = offset = 0
        while len(items) < limit:
            page = self._call(
                "collection",
                lambda: self._api.playlist_items(
                    playlist_id, limit=PAGE_SIZE, offset=offset, additional_types=("track",)
                ),
                messages=messages,
            )
            entries = page.get("items") or []
            total = int(page.get("total") or 0)
            for entry in entries:
                if len(items) == limit:
                    break
                # Since February 2026 an entry holds its track under "item" ("track" is deprecated).
                item = (entry or {}).get("item") or (entry or {}).get("track")
                if item and item.get("id") and item.get("type", "track") == "track" and not entry.get("is_local"):
                    items.append(item)
                else:  # a local file, a podcast episode, or a track no longer on Spotify
                    skipped += 1
            offset += len(entries)
            if not entries or not page.get("next"):
                break
        url = (meta.get("external_urls") or {}).get("spotify") or f"https://open.spotify.com/playlist/{playlist_id}"
        name = meta.get("name") or ""
        return SpotifyCollection("playlist", playlist_id, name, url, self._keep(items), total, skipped)

    def _album(self, album_id: str, limit: int) -> SpotifyCollection:
        messages = {400: f"Spotify has no album {album_id}", 404: f"Spotify has no album {album_id}"}
        album = self.cache.get_or_call(
            f"album|{album_id}", lambda: self._call("collection", lambda: self._api.album(album_id), messages=messages)
        )
        # An album lists simplified track objects, which lack the album: give each the one they are on.
        about = {key: value for key, value in album.items() if key != "tracks"}
        page = album.get("tracks") or {}
        items: list[dict[str, Any]] = list(page.get("items") or [])
        while len(items) < limit and page.get("next") and page.get("items"):
            offset = len(items)
            def ask_page() -> dict[str, Any]:
                return self._call(
                    "collection", lambda: self._api.album_tracks(album_id, limit=PAGE_SIZE, offset=offset), messages
                )

            page = self.cache.get_or_call(f"album-tracks|{album_id}|{offset}", ask_page)
            items.extend(page.get("items") or [])
        taken = [{**item, "album": about} for item in items[:limit] if item and item.get("id")]
        url = (album.get("external_urls") or {}).get("spotify") or f"https://open.spotify.com/album/{album_id}"
        total = int(page.get("total") or len(items))
        skipped = min(len(items), limit) - len(taken)
        return SpotifyCollection("album", album_id, album.get("name") or "", url, self._keep(taken), total, skipped)

    def _keep(self, items: list[dict[str, Any]]) -> list[SpotifyTrack]:
        """Tracks from full track objects, cached by id: adding them as unseen songs asks nothing again."""
        self.cache.put_many({f"track|{item['id']}": slim_track(item) for item in items})
        return [SpotifyTrack.from_api(item) for item in items]


def _playlist_messages(playlist_id: str) -> dict[int, str]:
    """What Spotify's refusals of a playlist mean, and what to do instead."""
    advice = (
        "Copy its songs into a playlist of your own (in Spotify: select the songs, then Add to "
        "playlist > New playlist) and paste that playlist's link."
    )
    if playlist_id.startswith(SPOTIFY_OWNED_PLAYLIST_PREFIX):
        missing = (
            "This playlist is owned by Spotify (an editorial or algorithmic playlist such as Today's "
            "Top Hits, Discover Weekly or a Daily Mix), and Spotify has not let new apps read those "
            f"since 2024-11-27. {advice}"
        )
    else:
        missing = (
            "Spotify has no such playlist for this app: it may be private or deleted, or owned by "
            "Spotify (editorial and algorithmic playlists have been closed to new apps since "
            f"2024-11-27). {advice}"
        )
    refused = (
        "Spotify refused to list this playlist's songs (HTTP 403). Since March 2026 Spotify lets an "
        "app in development mode read only playlists its logged-in user owns or collaborates on, "
        "and Songspace reads playlists with its app credentials: this needs a Spotify app with "
        "extended quota. Albums are not limited so."
    )
    return {400: missing, 404: missing, 403: refused}
