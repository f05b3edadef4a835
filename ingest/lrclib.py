"""Lyrics for songs outside the catalogue, from LRCLIB (no key): exact lookup, then a checked search."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from search.index import normalise_text
from search.settings import Settings

USER_AGENT = "Songspace (content-based music recommender)"
DURATION_TOLERANCE_S = 5


class LyricsUnavailable(Exception):
    """LRCLIB could not be asked (down, timing out or answering nonsense)."""


@dataclass(frozen=True)
class Lyrics:
    """What LRCLIB knows of a track: its plain lyrics, or that it is instrumental."""

    text: str | None
    instrumental: bool
    via: str  # "get" or "search"


def _retryable(error: BaseException) -> bool:
    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return True
    return isinstance(error, requests.HTTPError) and error.response is not None and error.response.status_code >= 500


def _matches(record: dict[str, Any], title: str, artists: list[str], duration_s: float | None) -> bool:
    """A search hit is the same song: same normalised title, a shared artist, a close duration."""
    if normalise_text(str(record.get("trackName") or "")) != normalise_text(title):
        return False
    found_artist = normalise_text(str(record.get("artistName") or ""))
    if not any(normalise_text(a) and normalise_text(a) in found_artist for a in artists):
        return False
    found_duration = record.get("duration")
    if duration_s and isinstance(found_duration, (int, float)):
        return abs(found_duration - duration_s) <= DURATION_TOLERANCE_S
    return True


class LrclibClient:
    """Looks up plain lyrics on LRCLIB."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.base_url = settings.lrclib_url
        self.timeout = settings.http_timeout_s
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT

    @retry(
        retry=retry_if_exception(_retryable),
        wait=wait_exponential_jitter(initial=0.3, max=3),
        stop=stop_after_attempt(3),
        reraise=True,
    )
    def _get_json(self, path: str, params: dict[str, Any]) -> Any:
        response = self.session.get(f"{self.base_url}{path}", params=params, timeout=self.timeout)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def _ask(self, path: str, params: dict[str, Any]) -> Any:
        try:
            return self._get_json(path, params)
        except (requests.RequestException, ValueError) as error:
            raise LyricsUnavailable(f"LRCLIB could not be asked ({error.__class__.__name__})") from error

    @staticmethod
    def _lyrics(record: dict[str, Any], via: str) -> Lyrics | None:
        if record.get("instrumental"):
            return Lyrics(None, True, via)
        text = (record.get("plainLyrics") or "").strip()
        return Lyrics(text, False, via) if text else None

    def find(
        self, title: str, artists: list[str], album: str | None = None, duration_s: float | None = None
    ) -> Lyrics | None:
        """Lyrics for a track, or None when LRCLIB has none; raises LyricsUnavailable if it is down."""
        params: dict[str, Any] = {"track_name": title, "artist_name": ", ".join(artists)}
        if album:
            params["album_name"] = album
        if duration_s:
            params["duration"] = round(duration_s)
        record = self._ask("/api/get", params)
        if isinstance(record, dict):
            found = self._lyrics(record, "get")
            if found:
                return found
        hits = self._ask("/api/search", {"track_name": title, "artist_name": artists[0] if artists else ""})
        for hit in hits if isinstance(hits, list) else []:
            if isinstance(hit, dict) and _matches(hit, title, artists, duration_s):
                found = self._lyrics(hit, "search")
                if found:
                    return found
        return None
