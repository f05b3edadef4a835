"""Spotify through spotipy's real HTTP stack and our retry layer, against the loopback fake: tracks
one and many at a time, search, playlists and albums."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from ingest.spotify import SpotifyClient, SpotifyError, parse_collection_ref, parse_track_id
from tests.fakes import BOX_SET_ID, CATALOGUE_TRACKS, ROAD_TRIP_ID, TODAYS_TOP_HITS_ID, TRACKS, USER_ID

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


def test_many_tracks_50_to_a_request_in_order_with_unknown_ids(client_settings, services):
    ids = [t.id for t in CATALOGUE_TRACKS[:110]] + ["0" * 22, HARBOUR.id]
    answers: dict = {}
    for batch in SpotifyClient(client_settings).tracks_by_id(ids):
        answers.update(batch)
    assert services.count("/v1/tracks/?") == 3
    assert answers["0" * 22] is None
    assert answers[HARBOUR.id].title == "Harbour Lights"
    assert [answers[t.id].title for t in CATALOGUE_TRACKS[:110]] == [t.title for t in CATALOGUE_TRACKS[:110]]


def test_answers_are_kept_per_track_whatever_the_batches(client_settings, services):
    ids = [t.id for t in CATALOGUE_TRACKS[:130]]
    list(SpotifyClient(client_settings, disk_cache=True).tracks_by_id(ids[:70]))
    since = len(services.requests)
    later = SpotifyClient(client_settings, disk_cache=True)  # a new run: nothing in memory
    answers = {k: v for batch in later.tracks_by_id(ids[30:]) for k, v in batch.items()}
    asked = [i for path in services.requests[since:] if path.startswith("/v1/tracks/?") for i in path.split("ids=")[1].split(",")]
    assert asked == ids[70:]  # 60 ids: two requests
    assert later.requests["lookup"] == 2 and len(answers) == 100 and all(answers.values())


def test_a_known_unknown_id_is_not_asked_for_again(client_settings, services):
    client = SpotifyClient(client_settings, disk_cache=True)
    list(client.tracks_by_id(["0" * 22]))
    with pytest.raises(SpotifyError, match="no such track"):
        SpotifyClient(client_settings, disk_cache=True).track("0" * 22)
    assert services.count("/v1/tracks") == 1


def test_429_on_a_batch_honours_retry_after(client_settings, services):
    services.faults["/v1/tracks/?"] = [(429, {"Retry-After": "1"}, None)]
    started = time.monotonic()
    answers = next(SpotifyClient(client_settings).tracks_by_id([HARBOUR.id]))
    assert answers[HARBOUR.id].title == "Harbour Lights" and time.monotonic() - started >= 1.0
    assert services.count("/v1/tracks/?") == 2


def test_without_the_several_tracks_endpoint_tracks_are_looked_up_one_by_one(client_settings, services):
    # Spotify removed it for apps in development mode (February 2026): it answers 403 there.
    services.faults["/v1/tracks/?"] = [(403, {}, None)] * 10
    client = SpotifyClient(client_settings)
    ids = [HARBOUR.id, "0" * 22, TRACKS[1].id]
    answers = {k: v for batch in client.tracks_by_id(ids) for k, v in batch.items()}
    assert answers[HARBOUR.id].title == "Harbour Lights" and answers["0" * 22] is None
    assert answers[TRACKS[1].id].title == "Neon Avenue"
    list(client.tracks_by_id([TRACKS[2].id]))
    assert services.count("/v1/tracks/?") == 1  # refused once, not asked again
    assert services.count("/v1/tracks/") - services.count("/v1/tracks/?") == 4


@pytest.mark.parametrize(
    "ref",
    [
        f"https://open.spotify.com/playlist/{ROAD_TRIP_ID}?si=abc",
        f"https://open.spotify.com/intl-fr/playlist/{ROAD_TRIP_ID}",
        f"spotify:playlist:{ROAD_TRIP_ID}",
        f"spotify:user:{USER_ID}:playlist:{ROAD_TRIP_ID}",
    ],
)
def test_playlist_refs(ref):
    assert parse_collection_ref(ref) == ("playlist", ROAD_TRIP_ID)


@pytest.mark.parametrize("ref", [f"https://open.spotify.com/album/{BOX_SET_ID}", f"spotify:album:{BOX_SET_ID}"])
def test_album_refs(ref):
    assert parse_collection_ref(ref) == ("album", BOX_SET_ID)


@pytest.mark.parametrize("ref", [HARBOUR.id, f"https://open.spotify.com/track/{HARBOUR.id}", "https://evil.example/playlist/" + ROAD_TRIP_ID, ""])
def test_other_refs_are_not_collections(ref):
    with pytest.raises(SpotifyError, match="not a Spotify playlist or album"):
        parse_collection_ref(ref)


def test_playlist_tracks_up_to_the_cap(client_settings, services):
    playlist = SpotifyClient(client_settings).collection(f"https://open.spotify.com/playlist/{ROAD_TRIP_ID}")
    assert (playlist.kind, playlist.name, playlist.total) == ("playlist", "Road Trip", 123)
    # The local file, the removed track and the episode are skipped; the cap is 100 tracks.
    assert [t.id for t in playlist.tracks] == [t.id for t in CATALOGUE_TRACKS[:100]]
    assert playlist.skipped == 3 and playlist.truncated
    assert playlist.tracks[0].cover_url().endswith(f"/covers/{BOX_SET_ID}-300.png")
    assert playlist.url == f"https://open.spotify.com/playlist/{ROAD_TRIP_ID}"
    assert services.count(f"/v1/playlists/{ROAD_TRIP_ID}/items") == 3  # pages of 50


def test_whole_playlist_under_a_higher_cap(client_settings, services):
    playlist = SpotifyClient(client_settings).collection(f"spotify:playlist:{ROAD_TRIP_ID}", limit=500)
    assert [t.id for t in playlist.tracks] == [t.id for t in CATALOGUE_TRACKS[:120]]
    assert not playlist.truncated


def test_album_tracks_carry_the_album(client_settings, services):
    album = SpotifyClient(client_settings).collection(f"https://open.spotify.com/album/{BOX_SET_ID}", limit=55)
    box_set = [t for t in CATALOGUE_TRACKS if t.album_id == BOX_SET_ID]
    assert (album.kind, album.name, album.total, album.truncated) == ("album", box_set[0].album, 60, True)
    assert [t.id for t in album.tracks] == [t.id for t in box_set[:55]]
    assert {(t.album, t.year, t.cover_url()) for t in album.tracks} == {
        (box_set[0].album, 1960, f"{services.url}/covers/{BOX_SET_ID}-300.png")
    }
    assert services.count(f"/v1/albums/{BOX_SET_ID}") == 2  # the album with 50 tracks, then the rest


def test_a_playlist_owned_by_spotify_is_explained(client_settings, services):
    with pytest.raises(SpotifyError) as raised:
        SpotifyClient(client_settings).collection(f"https://open.spotify.com/playlist/{TODAYS_TOP_HITS_ID}")
    message = str(raised.value)
    assert "owned by Spotify" in message and "2024-11-27" in message and "playlist of your own" in message


def test_an_unknown_playlist_is_explained(client_settings, services):
    with pytest.raises(SpotifyError, match="no such playlist.*playlist of your own"):
        SpotifyClient(client_settings).collection(f"spotify:playlist:{'1' * 22}")


def test_a_refused_playlist_is_explained(client_settings, services):
    services.faults[f"/v1/playlists/{ROAD_TRIP_ID}/items"] = [(403, {}, None)]
    with pytest.raises(SpotifyError, match="development mode.*extended quota"):
        SpotifyClient(client_settings).collection(f"spotify:playlist:{ROAD_TRIP_ID}")


def test_collection_tracks_are_not_fetched_again_one_by_one(client_settings, services):
    client = SpotifyClient(client_settings)
    album = client.collection(f"spotify:album:{BOX_SET_ID}", limit=3)
    since = len(services.requests)
    assert [client.track(t.id) for t in album.tracks] == album.tracks
    assert len(services.requests) == since


def test_the_in_memory_cache_keeps_the_newest_answers_slimmed(client_settings, services):
    # The page's client lives as long as the page: what every visitor searched for must not pile up.
    client = SpotifyClient(client_settings)
    client.cache.max_entries = 2
    for query in ("harbour", "neon", "café zoë", "café zoë"):
        client.search_tracks(query)
    assert client.search_tracks("harbour")[0].title == "Harbour Lights"  # dropped as the oldest: asked again
    assert services.count("/v1/search") == 4
    found, answer = client.cache.get("search|10|café zoë")
    assert found and len(client.cache._memory) == 2
    assert "uri" not in answer["tracks"]["items"][0]  # kept as SpotifyTrack reads it, not whole
