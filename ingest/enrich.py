"""Filling a catalogue's missing covers and Spotify links from Spotify search, with a match check."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ingest.catalogue import RowProblem, Song
from ingest.spotify import SpotifyClient, SpotifyError, SpotifyTrack
from search.index import normalise_text

DURATION_SAME_RECORDING_MS = 2000
_VERSION_SUFFIX = re.compile(r"\s+(-\s+.*|\((?:feat|with|remaster|live|\d{4}).*\))$", re.IGNORECASE)


@dataclass
class EnrichSummary:
    """How enrichment went."""

    matched: int = 0
    missed: int = 0
    ambiguous: int = 0
    not_tried: int = 0

    def line(self) -> str:
        """The summary line printed after ingestion."""
        line = f"spotify matched {self.matched}  missed {self.missed}  ambiguous {self.ambiguous}"
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


def enrich(songs: list[Song], spotify: SpotifyClient, problems: list[RowProblem]) -> EnrichSummary:
    """Attach a Spotify id, link and (if missing) cover to songs that lack them, in place."""
    summary = EnrichSummary()
    pending = [s for s in songs if not s.spotify_id or not s.cover]
    for position, song in enumerate(pending):
        try:
            query = f"track:{_VERSION_SUFFIX.sub('', song.title)} artist:{' '.join(song.artists[:1])}"
            candidates = spotify.search_tracks(query, limit=5)
        except SpotifyError as error:
            summary.not_tried = len(pending) - position
            problems.append(RowProblem(song.row, song.song_id, song.title, "kept", f"not enriched: {error}"))
            break
        matches = [t for t in candidates if is_match(song, t)]
        first = matches[0] if matches else None
        if first is None:
            summary.missed += 1
            continue
        if any(abs((t.duration_ms or 0) - (first.duration_ms or 0)) > DURATION_SAME_RECORDING_MS for t in matches[1:]):
            summary.ambiguous += 1
            problems.append(
                RowProblem(song.row, song.song_id, song.title, "kept", f"Spotify match ambiguous ({len(matches)} recordings)")
            )
            continue
        summary.matched += 1
        song.spotify_id = song.spotify_id or first.id
        song.spotify_url = song.spotify_url or first.url
        song.cover = song.cover or first.cover_url()
        song.album = song.album or first.album
        song.year = song.year or first.year
    return summary
