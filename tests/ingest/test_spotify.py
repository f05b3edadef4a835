"""Spotify through spotipy's real HTTP stack and our retry layer, against the loopback fake."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from ingest.spotify import SpotifyClient, SpotifyError, parse_track_id
from tests.fakes import TRACKS

HARBOUR = TRACKS[0]


@pytest.mark.parametrize(
    "ref",
    [
        HARBOUR.id,
        f"spotify:track:{HARBOUR.id}",
        f"https://open.spotify.com/track/{HARBOUR.id}",
        f"https://open.spotify.com/track/{HARBOUR.id}?si=abc123&utm_source=copy",
        f"https://open.spotify.com/intl-de/track/{HARBOUR.id}",
    ],
)
def test_track_by_every_id_form(client_settings, services, ref):
    track = SpotifyClient(client_settings).track(ref)
    assert (track.id, track.title, track.artists, track.album, track.year) == (HARBOUR.id, "Harbour Lights", ["The Tides"], "Salt", 1999)
    assert track.duration_ms == 201000
    assert track.url == f"https://open.spotify.com/track/{HARBOUR.id}"
    assert [w for w, _ in track.covers] == [64, 300, 640]
    assert track.cover_url().endswith("-300.png")  # the smallest at least 224 wide


@pytest.mark.parametrize("ref", ["", "hello", "spotify:album:4uLU6hMCjMI75M1A2tKUQC", "https://open.spotify.com/album/4uLU6hMCjMI75M1A2tKUQC", "https://evil.example/track/4uLU6hMCjMI75M1A2tKUQC"])
def test_anything_else_is_a_clear_error(ref):
    with pytest.raises(SpotifyError, match="not a Spotify track"):
        parse_track_id(ref)


def test_search_gives_candidates_with_non_ascii_names(client_settings, services):
    results = SpotifyClient(client_settings).search_tracks("café zoë")
    assert [(t.title, t.artists, t.album) for t in results] == [("Café Déjà Vu", ["Zoë Ångström"], "Été")]
    assert results[0].year == 2020


def test_track_without_images_has_no_cover(client_settings, services):
    track = SpotifyClient(client_settings).track(TRACKS[5].id)
    assert track.covers == [] and track.cover_url() is None


def test_responses_are_cached_in_process(client_settings, services):
    client = SpotifyClient(client_settings)
    client.track(HARBOUR.id)
    client.track(f"spotify:track:{HARBOUR.id}")
    assert services.count(f"/v1/tracks/{HARBOUR.id}") == 1


def test_responses_are_cached_on_disk_for_ingestion(client_settings, services):
    SpotifyClient(client_settings, disk_cache=True).search_tracks("harbour")
    SpotifyClient(client_settings, disk_cache=True).search_tracks("harbour")
    assert services.count("/v1/search") == 1


def test_429_honours_retry_after(client_settings, services):
    services.faults["/v1/tracks/"] = [(429, {"Retry-After": "1"}, None)]
    started = time.monotonic()
    track = SpotifyClient(client_settings).track(HARBOUR.id)
    assert track.title == "Harbour Lights"
    assert time.monotonic() - started >= 1.0
    assert services.count("/v1/tracks/") == 2  # one refused, one retried: spotipy retried nothing itself


def test_long_retry_after_gives_up_with_a_clear_message(client_settings, services):
    services.faults["/v1/tracks/"] = [(429, {"Retry-After": "3600"}, None)]
    with pytest.raises(SpotifyError, match="rate limit"):
        SpotifyClient(client_settings).track(HARBOUR.id)
    assert services.count("/v1/tracks/") == 1


def test_500_then_success(client_settings, services):
    services.faults["/v1/search"] = [(500, {}, None), (502, {}, b"bad gateway")]
    assert SpotifyClient(client_settings).search_tracks("neon")[0].title == "Neon Avenue"
    assert services.count("/v1/search") == 3


def test_persistent_failure_is_reported_after_bounded_retries(client_settings, services):
    services.faults["/v1/search"] = [(503, {}, None)] * 10
    with pytest.raises(SpotifyError, match="HTTP 503"):
        SpotifyClient(client_settings).search_tracks("neon")
    assert services.count("/v1/search") == 4


def test_timeout_is_retried(client_settings, services):
    services.faults["/v1/tracks/"] = [(0, {"sleep": "1.5"}, None)]
    client = SpotifyClient(replace(client_settings, http_timeout_s=0.5))
    assert client.track(HARBOUR.id).title == "Harbour Lights"


def test_malformed_json_is_an_error_not_a_crash(client_settings, services):
    services.faults["/v1/tracks/"] = [(200, {}, b"{not json")] * 4
    with pytest.raises(SpotifyError, match="malformed"):
        SpotifyClient(client_settings).track(HARBOUR.id)


def test_unknown_track(client_settings, services):
    with pytest.raises(SpotifyError, match="no such track"):
        SpotifyClient(client_settings).track("0" * 22)


def test_bad_credentials(client_settings, services):
    with pytest.raises(SpotifyError, match="credentials"):
        SpotifyClient(replace(client_settings, spotify_client_secret="wrong")).track(HARBOUR.id)


def test_without_credentials_spotify_says_so(client_settings):
    with pytest.raises(SpotifyError, match="SPOTIPY_CLIENT_ID"):
        SpotifyClient(replace(client_settings, spotify_client_id=None))
