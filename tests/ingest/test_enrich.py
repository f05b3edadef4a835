"""Enrichment at catalogue scale against the loopback fake: lookups by id 50 at a time, search only
for songs without an id, answers kept per track on disk, each album cover fetched and embedded once."""

from __future__ import annotations

import csv
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from ingest.catalogue import RowProblem, Song
from ingest.encoders import image_encoder
from ingest.enrich import enrich
from ingest.spotify import SpotifyClient
from search.index import COVER, LYRICS
from tests.conftest import CITY_LYRICS, SEA_LYRICS
from tests.fakes import CATALOGUE_TRACKS, PASS, TRACKS, FakeTrack, fake_spotify_id

AUDIO_FEATURES = ["danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness",
                  "instrumentalness", "liveness", "valence", "tempo", "duration_ms"]


def looked_up_ids(services, since: int = 0) -> list[list[str]]:
    """The ids of each several-tracks request the fake received, in order."""
    return [
        parse_qs(urlsplit(path).query)["ids"][0].split(",")
        for path in services.requests[since:] if path.startswith("/v1/tracks/?")
    ]


def song_for(track: FakeTrack, row: int, title: str | None = None) -> Song:
    """A catalogue row for a Spotify track in the prototype's shape: its id, no album, no cover."""
    return Song(row=row, title=title or track.title, artists=track.artists[:1], song_id=track.id, lyrics=SEA_LYRICS[0])


def test_known_ids_are_looked_up_50_at_a_time_and_never_searched(client_settings, services):
    tracks = CATALOGUE_TRACKS[:120]
    # Catalogue titles that Spotify spells otherwise: with a known id no title match is needed.
    songs = [song_for(t, i, title=f"Something Else {i}" if i % 10 == 0 else None) for i, t in enumerate(tracks)]
    summary = enrich(songs, SpotifyClient(client_settings, disk_cache=True), [])
    assert [len(batch) for batch in looked_up_ids(services)] == [50, 50, 20]
    assert services.count("/v1/search") == 0
    assert (summary.by_id, summary.matched, summary.missed, summary.unknown_ids) == (120, 0, 0, 0)
    assert (summary.lookup_requests, summary.search_requests) == (3, 0)
    for song, track in zip(songs, tracks):
        assert song.spotify_id == track.id
        assert song.spotify_url == f"https://open.spotify.com/track/{track.id}"
        assert song.cover == f"{services.url}/covers/{track.album_id}-300.png"
        assert (song.album, song.year) == (track.album, int(track.release_date[:4]))
    assert "spotify by id 120  matched 0" in summary.line()
    assert "requests 3 lookups + 0 searches (25.0 per 1,000 songs)" in summary.line()


def test_unknown_ids_are_reported_and_catalogue_ids_fall_back_to_search(client_settings, services):
    harbour = TRACKS[0]
    gone = fake_spotify_id("a track Spotify removed")
    by_catalogue_id = Song(row=1, title=harbour.title, artists=harbour.artists, song_id=gone)
    by_spotify_id = Song(row=2, title="Kept As Is", artists=["Someone"], spotify_id=fake_spotify_id("another gone"))
    problems: list[RowProblem] = []
    summary = enrich([by_catalogue_id, by_spotify_id], SpotifyClient(client_settings, disk_cache=True), problems)
    assert (summary.unknown_ids, summary.matched, summary.by_id) == (2, 1, 0)
    assert by_catalogue_id.spotify_id == harbour.id  # found by search, title and artist checked
    assert by_spotify_id.spotify_id == fake_spotify_id("another gone") and by_spotify_id.cover is None
    assert services.count("/v1/search") == 1  # the explicit Spotify id is the catalogue's word: not searched
    assert sorted(p.reason for p in problems) == sorted(
        f"Spotify does not know the id {i}" for i in (gone, fake_spotify_id("another gone"))
    )


def test_search_results_still_need_a_matching_title_and_artist(client_settings, services):
    wrong_artist = Song(row=1, title="Neon Avenue", artists=["Somebody Else"])
    right = Song(row=2, title="NEON avenue (feat. Nobody)", artists=["Metro Boys"])
    summary = enrich([wrong_artist, right], SpotifyClient(client_settings), [])
    assert (summary.matched, summary.missed) == (1, 1)
    assert wrong_artist.spotify_id is None and right.spotify_id == TRACKS[1].id


def test_songs_that_lack_nothing_cost_no_request(client_settings, services):
    track = CATALOGUE_TRACKS[0]
    song = Song(row=1, title=track.title, artists=track.artists, spotify_id=track.id, spotify_url="https://open.spotify.com/track/x",
                cover="cover.png", album="Mine", year=2001)
    summary = enrich([song], SpotifyClient(client_settings), [])
    assert services.count("/v1/") == 0 and summary.requests_per_1000_songs == 0.0
    assert (song.album, song.cover) == ("Mine", "cover.png")


def test_a_stopped_run_resumes_without_asking_again(client_settings, services):
    tracks = CATALOGUE_TRACKS[:150]
    # The first batch is answered; then Spotify goes down and every try of the second fails.
    services.faults["/v1/tracks/?"] = [PASS] + [(503, {}, None)] * 4
    problems: list[RowProblem] = []
    summary = enrich([song_for(t, i) for i, t in enumerate(tracks)], SpotifyClient(client_settings, disk_cache=True), problems)
    assert summary.by_id == 50 and summary.not_tried == 100
    assert "100 songs not tried" in problems[-1].reason
    answered = set(looked_up_ids(services)[0])

    # Run again as a new process would (a new client, nothing in memory), in another order so that
    # the batches fall elsewhere: only the ids without an answer are asked for.
    since = len(services.requests)
    again = [song_for(t, i) for i, t in enumerate(reversed(tracks))]
    summary = enrich(again, SpotifyClient(client_settings, disk_cache=True), [])
    asked = [i for batch in looked_up_ids(services, since) for i in batch]
    assert sorted(asked) == sorted({t.id for t in tracks} - answered)
    assert summary.lookup_requests == 2 and summary.by_id == 150 and summary.not_tried == 0
    assert all(song.cover and song.spotify_id == song.song_id for song in again)


def test_a_failed_batch_is_retried_by_one_policy_only(client_settings, services):
    services.faults["/v1/tracks/?"] = [(503, {}, None)]
    songs = [song_for(t, i) for i, t in enumerate(CATALOGUE_TRACKS[:60])]
    summary = enrich(songs, SpotifyClient(client_settings), [])
    assert summary.by_id == 60
    assert services.count("/v1/tracks/?") == 3  # two batches, one of them tried twice: spotipy retried nothing
    assert summary.lookup_requests == 3


def prototype_catalogue(tracks: list[FakeTrack], path: Path, renamed: set[int]) -> Path:
    """Rows in the shape of the prototype's songs_with_attributes_and_lyrics.csv: the Spotify id as
    `id`, `album_name` mostly empty, `artists` as a stringified list or plain, 12 audio features,
    lyrics, and no covers."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "name", "album_name", "artists", *AUDIO_FEATURES, "lyrics"])
        writer.writeheader()
        for i, track in enumerate(tracks):
            row = {
                "id": track.id,
                # Two titles as the catalogue spells them, unlike Spotify: a title match would fail.
                "name": track.title.replace("Song", "Tune") if i in renamed else track.title,
                "album_name": track.album if i % 5 < 2 else "",
                "artists": str(track.artists) if i % 2 else track.artists[0],
                "lyrics": f"{(SEA_LYRICS + CITY_LYRICS)[i % 8]}, verse {i} of the catalogue",
            }
            row.update({name: round(0.001 * (i * 7 + n) % 1, 3) for n, name in enumerate(AUDIO_FEATURES)})
            writer.writerow(row)
    return path


@pytest.fixture
def command_env(monkeypatch, services, tmp_path):
    """The ingestion command's environment: the fakes, an embedded store and a cache in tmp_path."""
    for name in ("QDRANT_URL", "QDRANT_API_KEY", "QDRANT_ENGINE", "RESNET50_WEIGHTS", "TEXT_ENCODER"):
        monkeypatch.delenv(name, raising=False)
    env = {
        **services.env(),
        "QDRANT_PATH": str(tmp_path / "store"),
        "QDRANT_COLLECTION": "prototype",
        "SONGSPACE_CACHE_DIR": str(tmp_path / "cache"),
        "IMAGE_ENCODER": "efficientnet-lite0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_the_prototype_dataset_shape_loads_by_id(command_env, services, tmp_path, capsys):
    from ingest.__main__ import main
    from ingest.context import open_songspace
    from search.settings import load_settings

    tracks = CATALOGUE_TRACKS[:150]
    catalogue = prototype_catalogue(tracks, tmp_path / "seed.csv", renamed={7, 77})
    albums = {t.album_id for t in tracks}
    embedded: list[int] = []
    hook = image_encoder("efficientnet-lite0", None).model.register_forward_hook(
        lambda module, inputs, output: embedded.append(len(inputs[0]))
    )
    try:
        assert main([str(catalogue), "--spotify", "--no-progress", "--problems", str(tmp_path / "problems.csv")]) == 0
        out = capsys.readouterr().out
        assert services.count("/v1/tracks") <= 4 and services.count("/v1/search") == 0
        assert "spotify by id 150  matched 0  missed 0  ambiguous 0  unknown ids 0" in out
        assert "requests 3 lookups + 0 searches (20.0 per 1,000 songs)" in out
        # Each album's cover is downloaded once and embedded once, however many songs share it.
        assert services.count("/covers/") == len(albums) == 24
        assert sum(embedded) == len(albums)

        songspace = open_songspace(load_settings())
        try:
            points = songspace.index.get([i for i, _ in songspace.index.scroll_payloads()])
        finally:
            songspace.close()
        assert len(points) == 150
        assert all({LYRICS, COVER} <= set(p.vectors) for p in points)
        by_id = {p.payload["spotify_id"]: p.payload for p in points}
        assert set(by_id) == {t.id for t in tracks}
        for i in (7, 77):
            assert by_id[tracks[i].id]["title"] == tracks[i].title.replace("Song", "Tune")
            assert by_id[tracks[i].id]["cover_url"].endswith(f"/covers/{tracks[i].album_id}-300.png")
        assert all(by_id[t.id]["album"] == t.album and by_id[t.id]["year"] == int(t.release_date[:4]) for t in tracks)

        # Again: every answer comes from the disk caches, nothing is fetched or embedded.
        requests_before, embedded_before = len(services.requests), sum(embedded)
        assert main([str(catalogue), "--spotify", "--no-progress"]) == 0
        assert "requests 0 lookups + 0 searches (0.0 per 1,000 songs)" in capsys.readouterr().out
        assert len(services.requests) == requests_before and sum(embedded) == embedded_before
    finally:
        hook.remove()
