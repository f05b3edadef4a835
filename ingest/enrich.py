"""Filling a catalogue's missing covers, metadata and Spotify links from Spotify.

Songs whose Spotify id is known are looked up by id, 50 to a request; a catalogue id shaped like a
Spotify track id (22 base62 characters, as in the original prototype's dataset) counts as known
once Spotify confirms it. Only songs without an id are searched for, by title and artist, and a
search result is attached only when the normalised title and an artist match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ingest.catalogue import RowProblem, Song
from ingest.spotify import SpotifyClient, SpotifyError, SpotifyTrack, is_track_id
from search.index import normalise_text

DURATION_SAME_RECORDING_MS = 2000
_VERSION_SUFFIX = re.compile(r"\s+(-\s+.*|\((?:feat|with|remaster|live|\d{4}).*\))$", re.IGNORECASE)


@dataclass
class EnrichSummary:
    """How enrichment went, and what it cost in requests to Spotify."""

    songs: int = 0
    by_id: int = 0  # found by their Spotify id
    matched: int = 0  # found by search, title and artist checked
    missed: int = 0
    ambiguous: int = 0
    unknown_ids: int = 0  # ids Spotify does not know (any more)
    not_tried: int = 0
    lookup_requests: int = 0
    search_requests: int = 0

    @property
    def requests_per_1000_songs(self) -> float:
        """Requests to the Web API (lookups and searches, retries included) per 1,000 songs."""
        return 1000 * (self.lookup_requests + self.search_requests) / self.songs if self.songs else 0.0

    def line(self) -> str:
        """The summary line printed after ingestion."""
        line = (
            f"spotify by id {self.by_id}  matched {self.matched}  missed {self.missed}  "
            f"ambiguous {self.ambiguous}  unknown ids {self.unknown_ids}  requests "
            f"{self.lookup_requests} lookups + {self.search_requests} searches "
            f"({self.requests_per_1000_songs:.1f} per 1,000 songs)"
        )
        return line + (f"  not tried {self.not_tried} (Spotify unavailable)" if self.not_tried else "")


def comparable_title(title: str) -> str:
    """A title without version suffixes (' - Remastered 2011', '(feat. X)'), normalised."""
    return normalise_text(_VERSION_SUFFIX.sub("", title))


def is_match(song: Song, track: SpotifyTrack) -> bool:
    """Same normalised title and at least one shared normalised artist."""
    if comparable_title(song.title) != comparable_title(track.title):
        return False
    wanted = {normalise_text(a) for a in song.artists}
    return bool(wanted & {normalise_text(a) for a in track.artists})


def known_spotify_id(song: Song) -> str | None:
    """The Spotify track id to look a song up by: its spotify_id, else a catalogue id shaped like one."""
    if song.spotify_id:
        return song.spotify_id if is_track_id(song.spotify_id) else None
    return song.song_id if is_track_id(song.song_id) else None


def _complete(song: Song) -> bool:
    return bool(song.spotify_id and song.spotify_url and song.cover and song.album and song.year)


def _attach(song: Song, track: SpotifyTrack, track_id: str) -> None:
    """Fill what the song lacks from the track; the catalogue's own values win."""
    song.spotify_id = song.spotify_id or track_id
    song.spotify_url = song.spotify_url or track.url
    song.cover = song.cover or track.cover_url()
    song.album = song.album or track.album
    song.year = song.year or track.year


def enrich(songs: list[Song], spotify: SpotifyClient, problems: list[RowProblem]) -> EnrichSummary:
    """Attach Spotify ids, links, covers, albums and years to songs that lack them, in place."""
    summary = EnrichSummary(songs=len(songs))
    before = dict(spotify.requests)
    by_id: dict[str, list[Song]] = {}
    to_search: list[Song] = []
    for song in songs:
        track_id = known_spotify_id(song)
        if track_id is None:
            if not song.spotify_id or not song.cover:
                to_search.append(song)
        elif not _complete(song):
            by_id.setdefault(track_id, []).append(song)
    searched = 0
    try:
        for answers in spotify.tracks_by_id(list(by_id)):
            for track_id, track in answers.items():
                for song in by_id.pop(track_id):
                    _attach_by_id(song, track_id, track, summary, problems, to_search)
        for song in to_search:
            _search(song, spotify, summary, problems)
            searched += 1
    except SpotifyError as error:
        left = [song for songs_of_id in by_id.values() for song in songs_of_id] + to_search[searched:]
        summary.not_tried = len(left)
        first = left[0]
        problems.append(
            RowProblem(
                first.row, first.song_id, first.title, "kept",
                f"not enriched: {error} ({len(left)} songs not tried; run again to finish, answers so far are kept)",
            )
        )
    summary.lookup_requests = spotify.requests["lookup"] - before.get("lookup", 0)
    summary.search_requests = spotify.requests["search"] - before.get("search", 0)
    return summary


def _attach_by_id(
    song: Song,
    track_id: str,
    track: SpotifyTrack | None,
    summary: EnrichSummary,
    problems: list[RowProblem],
    to_search: list[Song],
) -> None:
    if track is None:
        summary.unknown_ids += 1
        reason = f"Spotify does not know the id {track_id}"
        problems.append(RowProblem(song.row, song.song_id, song.title, "kept", reason))
        if not song.spotify_id:  # only a catalogue id that looked like a Spotify id: search instead
            to_search.append(song)
        return
    summary.by_id += 1
    # The id is the catalogue's own, so no title check is needed (a failed one cost covers before).
    _attach(song, track, track_id)


def _search(song: Song, spotify: SpotifyClient, summary: EnrichSummary, problems: list[RowProblem]) -> None:
    query = f"track:{_VERSION_SUFFIX.sub('', song.title)} artist:{' '.join(song.artists[:1])}"
    matches = [t for t in spotify.search_tracks(query, limit=5) if is_match(song, t)]
    if not matches:
        summary.missed += 1
        return
    first = matches[0]
    if any(abs((t.duration_ms or 0) - (first.duration_ms or 0)) > DURATION_SAME_RECORDING_MS for t in matches[1:]):
        summary.ambiguous += 1
        reason = f"Spotify match ambiguous ({len(matches)} recordings)"
        problems.append(RowProblem(song.row, song.song_id, song.title, "kept", reason))
        return
    summary.matched += 1
    _attach(song, first, first.id)
