"""Describing a theme: songs whose lyrics mean it, and songs that use its words."""

from __future__ import annotations

from ingest.context import open_songspace
from ingest.pipeline import Ingestor
from search.recommend import recommend
from tests.conftest import CITY_LYRICS, SEA_LYRICS


def test_a_description_finds_songs_by_their_words_too(settings, write_catalogue):
    rows = [{"id": f"s{i}", "title": f"Song {i}", "artist": f"A{i}", "lyrics": text}
            for i, text in enumerate(SEA_LYRICS + CITY_LYRICS)]
    rows.append({"id": "tn", "title": "Back Home", "artist": "Porch Band",
                 "lyrics": "Rolling down the highway, the radio is playing, I am going back to Tennessee tonight"})
    songspace = open_songspace(settings)
    try:
        Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False).run(write_catalogue(rows))
        query = songspace.text_query("songs that mention Tennessee")
        words_only = recommend(songspace.index, query, 1.0, k=3, words_weight=1.0)
        assert words_only[0].song_id == "tn" and words_only[0].words_score == 1.0
        assert all(r.words_score == 0.0 for r in words_only[1:])  # no other song says it
        hybrid = recommend(songspace.index, query, 1.0, k=3, words_weight=songspace.settings.words_weight)
        assert hybrid[0].song_id == "tn"
        dense_only = recommend(songspace.index, query, 1.0, k=9, words_weight=0.0)
        assert all(r.words_score is None for r in dense_only)
    finally:
        songspace.close()
