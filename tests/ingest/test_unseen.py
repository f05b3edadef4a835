"""Unseen songs: fetched from the fakes or given by hand, embedded, inserted once, usable as seeds."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from ingest.context import open_songspace
from ingest.covers import CoverError
from ingest.lrclib import LrclibClient
from ingest.pipeline import Ingestor
from ingest.spotify import SpotifyClient, SpotifyError
from ingest.unseen import UnseenSongError, add_spotify_collection, add_spotify_track, add_user_song, catalogue_match
from search.index import COVER, LYRICS
from search.recommend import recommend, seed_query
from tests.conftest import CITY_LYRICS, SEA_LYRICS, make_cover
from tests.fakes import CATALOGUE_TRACKS, HOSTILE_TITLE, TRACKS


@pytest.fixture
def songspace(online_settings, themed_rows, write_catalogue):
    songspace = open_songspace(online_settings)
    Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False).run(write_catalogue(themed_rows))
    yield songspace
    songspace.close()


def clients(songspace):
    return SpotifyClient(songspace.settings), LrclibClient(songspace.settings)


def test_spotify_track_is_fetched_embedded_inserted_and_recommends(songspace, services):
    spotify, lyrics = clients(songspace)
    before = songspace.index.count()
    added = add_spotify_track(songspace, f"https://open.spotify.com/track/{TRACKS[0].id}?si=x", spotify, lyrics)
    assert added.inserted and songspace.index.count() == before + 1
    assert set(added.point.vectors) == {LYRICS, COVER}
    payload = added.point.payload
    assert payload["source"] == "spotify" and payload["spotify_id"] == TRACKS[0].id
    assert payload["spotify_url"].startswith("https://open.spotify.com/track/")
    assert payload["cover_url"].endswith("-300.png")
    assert payload["duration_ms"] == TRACKS[0].duration_ms  # kept for playlists out (M3U8, JSPF)
    assert "lyrics from LRCLIB" in added.message
    results = recommend(songspace.index, seed_query([added.point]), 0.7, k=3)
    assert all(r.point_id != added.point.point_id for r in results)
    assert results[0].payload["genre"] == "sea"  # harbour lyrics and a blue cover


def test_asking_again_inserts_nothing(songspace, services):
    spotify, lyrics = clients(songspace)
    first = add_spotify_track(songspace, TRACKS[1].id, spotify, lyrics)
    count, requests = songspace.index.count(), len(services.requests)
    again = add_spotify_track(songspace, f"spotify:track:{TRACKS[1].id}", spotify, lyrics)
    assert not again.inserted and again.point.point_id == first.point.point_id
    assert songspace.index.count() == count
    assert len(services.requests) == requests  # known songs are not fetched again
    assert again.point.payload["artists"] == ["Métro Boys"]


@pytest.mark.parametrize("track, note", [(TRACKS[3], "instrumental"), (TRACKS[4], "lyrics not found")])
def test_without_lyrics_the_song_goes_in_by_cover(songspace, services, track, note):
    added = add_spotify_track(songspace, track.id, *clients(songspace))
    assert set(added.point.vectors) == {COVER}
    assert note in added.message and "recommended by cover only" in added.message


def test_without_a_cover_the_song_goes_in_by_lyrics(songspace, services):
    added = add_spotify_track(songspace, TRACKS[5].id, *clients(songspace))
    assert set(added.point.vectors) == {LYRICS}
    assert "no cover on Spotify" in added.message


def test_lyrics_service_down_still_adds_by_cover(songspace, services):
    services.faults["/api/get"] = [(503, {}, None)] * 5
    added = add_spotify_track(songspace, TRACKS[0].id, *clients(songspace))
    assert set(added.point.vectors) == {COVER} and "unavailable" in added.message


def test_spotify_errors_reach_the_caller(songspace, services):
    with pytest.raises(SpotifyError, match="no such track"):
        add_spotify_track(songspace, "1" * 22, *clients(songspace))


def test_user_song_by_hand(songspace):
    added = add_user_song(songspace, HOSTILE_TITLE, "Mallory", lyrics=CITY_LYRICS[0], cover_bytes=make_cover((90, 90, 90), 9))
    assert added.inserted and set(added.point.vectors) == {LYRICS, COVER}
    assert added.point.payload["source"] == "user" and added.point.payload["title"] == HOSTILE_TITLE
    again = add_user_song(songspace, HOSTILE_TITLE, "Mallory", lyrics=CITY_LYRICS[0], cover_bytes=make_cover((90, 90, 90), 9))
    assert not again.inserted
    results = recommend(songspace.index, seed_query([added.point]), 0.5, k=3)
    assert results[0].payload["genre"] == "city"


def test_user_song_needs_something_to_recommend_from(songspace):
    with pytest.raises(UnseenSongError, match="neither lyrics nor a cover"):
        add_user_song(songspace, "Empty", "Nobody", lyrics="", cover_bytes=None)


def png_of(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "cover, reason",
    [
        (make_cover((90, 90, 90), 9) + bytes(11 * 1024 * 1024), "byte cap"),
        (b"GIF89a, or any other bytes named cover.png", "not a readable image"),
        (png_of(8000, 8000), "pixel cap"),
        (make_cover((90, 90, 90), 9)[:300], "could not be decoded"),
    ],
    ids=["too-big", "not-an-image", "too-many-pixels", "truncated"],
)
def test_a_refused_upload_is_an_error_and_writes_nothing(songspace, cover, reason):
    count = songspace.index.count()
    with pytest.raises(UnseenSongError, match=f"uploaded cover cannot be used: .*{reason}"):
        add_user_song(songspace, "Skyline", "Tower Tones", lyrics=CITY_LYRICS[1], cover_bytes=cover)
    assert songspace.index.count() == count
    assert not (songspace.settings.cache_dir / "uploads").exists()


def test_uploads_are_readable_only_by_the_call_that_added_them(songspace):
    add_user_song(songspace, "Skyline", "Tower Tones", lyrics=CITY_LYRICS[1], cover_bytes=make_cover((90, 90, 90), 12))
    (upload,) = (songspace.settings.cache_dir / "uploads").iterdir()
    with pytest.raises(CoverError, match="COVER_ROOTS"):
        songspace.fetcher.load(str(upload))


def test_a_visitor_cannot_overwrite_a_catalogue_song(online_settings, write_catalogue):
    """A catalogue row without an id or Spotify id: a hand-added song with its title and artist
    finds the catalogue song, and a different song never takes its point."""
    rows = [{"title": f"Sea Song {i}", "artist": "Sea Band", "genre": "sea", "lyrics": text} for i, text in enumerate(SEA_LYRICS)]
    songspace = open_songspace(online_settings)
    try:
        Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False).run(write_catalogue(rows))
        before = {p: payload for p, payload in songspace.index.scroll_payloads()}
        same = add_user_song(songspace, "sea song 0", "SEA BAND", lyrics=CITY_LYRICS[0])
        assert not same.inserted and same.message == "already in the catalogue"
        assert same.point.payload["genre"] == "sea" and same.point.payload["source"] == "catalogue"
        other = add_user_song(songspace, "Sea Song 0", "Another Band", lyrics=CITY_LYRICS[1])
        assert other.inserted and other.point.point_id not in before
        after = dict(songspace.index.scroll_payloads())
        assert all(after[p] == payload for p, payload in before.items())  # every catalogue song untouched
    finally:
        songspace.close()


def test_a_spotify_track_that_the_catalogue_has_is_not_added_twice(online_settings, write_catalogue, services):
    rows = [{"id": "h1", "title": TRACKS[0].title, "artist": TRACKS[0].artists[0], "genre": "sea", "lyrics": SEA_LYRICS[0]}]
    songspace = open_songspace(online_settings)
    try:
        Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False).run(write_catalogue(rows))
        added = add_spotify_track(songspace, TRACKS[0].id, *clients(songspace))
        assert not added.inserted and added.point.payload["song_id"] == "h1"
        assert songspace.index.count() == 1
    finally:
        songspace.close()


ALBUM = CATALOGUE_TRACKS[60:64]  # an album of four tracks with covers and no lyrics anywhere
ALBUM_URL = f"https://open.spotify.com/album/{ALBUM[0].album_id}"


def test_a_collection_is_added_once_in_its_order(songspace, services):
    spotify, lyrics = clients(songspace)
    before = songspace.index.count()
    followed = []
    added = add_spotify_collection(songspace, ALBUM_URL, spotify, lyrics, progress=lambda *step: followed.append(step))
    assert [song.point.payload["spotify_id"] for song in added.songs] == [t.id for t in ALBUM]
    assert [(done, total, track.id) for done, total, track in followed] == [(i + 1, 4, t.id) for i, t in enumerate(ALBUM)]
    assert songspace.index.count() == before + 4 and all(song.inserted for song in added.songs)
    assert all(set(song.point.vectors) == {COVER} for song in added.songs)
    assert added.lines() == [
        "album 'Catalogue Album 1': 4 of its songs are seeds",
        "4 added to the catalogue, 0 were in it already",
        "4 without lyrics (none found, or instrumental): recommended from by their cover",
    ]
    again = add_spotify_collection(songspace, ALBUM_URL, spotify, lyrics)
    assert not any(song.inserted for song in again.songs) and songspace.index.count() == before + 4


def test_with_inserting_off_only_stored_tracks_come_back(songspace, services):
    spotify, lyrics = clients(songspace)
    first = add_spotify_track(songspace, ALBUM[2].id, spotify, lyrics)
    count = songspace.index.count()
    added = add_spotify_collection(songspace, ALBUM_URL, spotify, lyrics, insert=False)
    assert [song.point.point_id for song in added.songs] == [first.point.point_id]
    assert [track.id for track in added.not_stored] == [ALBUM[0].id, ALBUM[1].id, ALBUM[3].id]
    assert songspace.index.count() == count
    assert "3 not in the catalogue were left out: adding songs is turned off here" in added.lines()


def test_tracks_with_nothing_to_recommend_from_are_left_out_with_the_reason(songspace, services):
    services.faults["/covers/"] = [(404, {}, None)] * 20
    spotify, lyrics = clients(songspace)
    count = songspace.index.count()
    added = add_spotify_collection(songspace, ALBUM_URL, spotify, lyrics, limit=2)
    assert added.songs == [] and [track.id for track, _ in added.refused] == [ALBUM[0].id, ALBUM[1].id]
    assert songspace.index.count() == count
    assert "left out: 'Catalogue Song 1-0': neither lyrics nor a cover could be had, so there is nothing to recommend from" in added.lines()
    assert "only its first 2 songs were taken; it has 4 entries" in added.lines()


def test_a_visitor_cannot_overwrite_another_visitors_song(songspace):
    first = add_user_song(songspace, "My Song", "Me", lyrics=SEA_LYRICS[0])
    second = add_user_song(songspace, "my song", "ME", lyrics=CITY_LYRICS[0])
    assert first.inserted and not second.inserted and second.message == "already added by a visitor"
    (stored,) = songspace.index.get([first.point.point_id])
    assert stored.payload["lyrics_excerpt"].startswith(SEA_LYRICS[0][:40])  # the first one stays


def test_a_song_loaded_on_the_page_counts_as_the_catalogues(settings, themed_rows, write_catalogue):
    """A visitor's new song must not duplicate one that a catalogue loaded on the page already holds."""
    songspace = open_songspace(settings)
    try:
        Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False).run(
            write_catalogue(themed_rows[:2]), source="upload"
        )
        match = catalogue_match(songspace.index, "SEA song 0", ["sea band 0", "Someone Else"])
        assert match is not None and match.payload["song_id"] == "sea-0"
        assert catalogue_match(songspace.index, "Sea Song 0", ["Someone Else"]) is None
    finally:
        songspace.close()
