"""Finding catalogue songs by title and artist, on every engine: in memory (tolerant of case,
accents and typos) and through the store's full-text index (as on a server)."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from search.index import LYRICS, IndexEncoders, SongPoint, open_index, song_point_id
from search.titles import TitleIndex

SONGS = [
    ("Déjà Vu", ["Beyoncé"], "pop", 2006),
    ("Amazing Grace", ["John Newton"], "hymn", 1779),
    ("Halo", ["Beyoncé"], "pop", 2008),
    ("Grace Kelly", ["Mika"], "pop", 2007),
]


@pytest.fixture
def index(engine_settings):
    index = open_index(engine_settings)
    index.ensure(IndexEncoders("t", 2, "i", 2))
    index.upsert([
        SongPoint(song_point_id(spotify_id=None, song_id=None, artists=a, title=t),
                  {"title": t, "artists": a, "genre": g, "year": y}, {LYRICS: np.array([1.0, 0.0], dtype=np.float32)})
        for t, a, g, y in SONGS
    ])
    yield index
    index.close()


def test_in_memory_search_tolerates_case_accents_and_typos(index):
    titles = TitleIndex(index)
    assert titles.find("deja vu")[0].title == "Déjà Vu"
    assert titles.find("amazng grce")[0].title == "Amazing Grace"
    assert {m.title for m in titles.find("beyonce")} >= {"Déjà Vu", "Halo"}
    assert titles.find("zzzzqqq") == [] and titles.find("  ") == []
    assert titles.genres == ["hymn", "pop"] and titles.years == (1779, 2008)
    index.upsert([SongPoint(song_point_id(spotify_id="x" * 22, song_id=None, artists=[], title=""),
                            {"title": "Brand New", "artists": ["Newcomer"], "genre": "indie", "year": 2030},
                            {LYRICS: np.array([0.0, 1.0], dtype=np.float32)})])
    assert titles.find("brand new")[0].title == "Brand New"  # reloaded when the count changed
    assert "indie" in titles.genres and titles.years == (1779, 2030)


def test_full_text_search_finds_songs_containing_the_words(index):
    titles = TitleIndex(index, in_memory=False)
    assert {m.title for m in titles.find("GRACE")} == {"Grace Kelly", "Amazing Grace"}
    assert [m.title for m in titles.find("halo beyonce")] == ["Halo"]  # title and artist words together
    assert titles.find("déjà")[0].title == "Déjà Vu"  # accents folded on both sides
    assert titles.find("kelly mika zzz") == []  # every word must be there


def test_words_as_typed_outrank_words_within_a_typo(engine_settings):
    index = open_index(engine_settings)
    try:
        index.ensure(IndexEncoders("t", 2, "i", 2))
        titles = ["River Fire 1207", "River Fire 1201", "River Fire 21223", "Fire River 2207", "Rivers of Fire"]
        index.upsert([
            SongPoint(song_point_id(spotify_id=None, song_id=f"r{i}", artists=[], title=""),
                      {"title": t, "artists": [f"Artist {i}"]}, {LYRICS: np.array([1.0, 0.0], dtype=np.float32)})
            for i, t in enumerate(titles)
        ])
        search = TitleIndex(index)
        assert search.find("rivr fire 1207")[0].title == "River Fire 1207"  # river within a typo; 1207 as typed
        assert search.find("River Fire 1201")[0].title == "River Fire 1201"
        assert {m.title for m in search.find("fire")} == set(titles)
    finally:
        index.close()


def test_the_loaded_titles_hold_nothing_for_the_cycle_collector(index):
    # A page with 100k songs paused every visitor for each full collection over them (0.15 s here).
    titles = TitleIndex(index)
    assert [m.artists for m in titles.find("beyonce")] == [["Beyoncé"], ["Beyoncé"]]
    gc.collect()
    gc.collect()  # a tuple is untracked once the tuples inside it are
    assert titles._titles.songs and not any(gc.is_tracked(song) for song in titles._titles.songs)


def test_a_short_title_is_found_among_more_songs_holding_its_word_than_are_ranked(engine_settings):
    # More songs hold "fire" than the index ranks (500): the song titled just "Fire" must still be first.
    index = open_index(engine_settings)
    try:
        index.ensure(IndexEncoders("t", 2, "i", 2))
        titles = [f"Fire in the sky {i}" for i in range(700)] + ["Fire"]
        index.upsert([
            SongPoint(song_point_id(spotify_id=None, song_id=f"f{i}", artists=[], title=""),
                      {"title": t, "artists": ["Band"]}, {LYRICS: np.array([1.0, 0.0], dtype=np.float32)})
            for i, t in enumerate(titles)
        ])
        assert TitleIndex(index).find("fire")[0].title == "Fire"
    finally:
        index.close()
