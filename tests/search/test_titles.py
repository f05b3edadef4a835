"""Finding catalogue songs by title and artist, tolerant of case, accents and typos."""

from __future__ import annotations

import numpy as np

from search.index import LYRICS, IndexEncoders, SongPoint, open_index, song_point_id
from search.titles import TitleIndex


def test_find_tolerates_case_accents_and_typos(engine_settings):
    index = open_index(engine_settings)
    try:
        index.ensure(IndexEncoders("t", 2, "i", 2))
        songs = [("Déjà Vu", ["Beyoncé"], "pop", 2006), ("Amazing Grace", ["John Newton"], "hymn", 1779), ("Halo", ["Beyoncé"], "pop", 2008)]
        index.upsert([
            SongPoint(song_point_id(spotify_id=None, song_id=None, artists=a, title=t),
                      {"title": t, "artists": a, "genre": g, "year": y}, {LYRICS: np.array([1.0, 0.0], dtype=np.float32)})
            for t, a, g, y in songs
        ])
        titles = TitleIndex(index)
        assert titles.find("deja vu")[0].title == "Déjà Vu"
        assert titles.find("amazng grce")[0].title == "Amazing Grace"
        assert {m.title for m in titles.find("beyonce")} >= {"Déjà Vu", "Halo"}
        assert titles.find("zzzzqqq") == [] and titles.find("  ") == []
        assert titles.genres == ["hymn", "pop"] and titles.years == (1779, 2008)
        index.upsert([SongPoint(song_point_id(spotify_id="x" * 22, song_id=None, artists=[], title=""),
                                {"title": "Brand New", "artists": ["Newcomer"]}, {LYRICS: np.array([0.0, 1.0], dtype=np.float32)})])
        assert titles.find("brand new")[0].title == "Brand New"  # reloaded when the count changed
    finally:
        index.close()
