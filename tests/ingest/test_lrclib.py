"""LRCLIB lookups against the loopback fake: exact get, checked search, instrumental, not found."""

from __future__ import annotations

import pytest

from ingest.lrclib import LrclibClient, LyricsUnavailable
from tests.fakes import TRACKS


def test_found_by_exact_get(client_settings, services):
    track = TRACKS[0]
    lyrics = LrclibClient(client_settings).find(track.title, track.artists, track.album, track.duration_ms / 1000)
    assert lyrics.text == track.lyrics and lyrics.via == "get"


def test_found_by_search_with_a_match_check(client_settings, services):
    track = TRACKS[2]  # non-ASCII names; /api/get does not know it
    lyrics = LrclibClient(client_settings).find(track.title, track.artists, track.album, track.duration_ms / 1000)
    assert lyrics.text == track.lyrics and lyrics.via == "search"


def test_search_hit_for_another_artist_is_not_taken(client_settings, services):
    track = TRACKS[2]
    assert LrclibClient(client_settings).find(track.title, ["Someone Else"], None, None) is None


def test_instrumental(client_settings, services):
    track = TRACKS[3]
    lyrics = LrclibClient(client_settings).find(track.title, track.artists, track.album, track.duration_ms / 1000)
    assert lyrics.instrumental and lyrics.text is None


def test_not_found(client_settings, services):
    track = TRACKS[4]
    assert LrclibClient(client_settings).find(track.title, track.artists, track.album, 240) is None


def test_server_errors_are_retried_then_reported(client_settings, services):
    services.faults["/api/get"] = [(500, {}, None)]
    track = TRACKS[0]
    assert LrclibClient(client_settings).find(track.title, track.artists).text == track.lyrics
    services.faults["/api/get"] = [(503, {}, None)] * 5
    with pytest.raises(LyricsUnavailable):
        LrclibClient(client_settings).find(track.title, track.artists)
