"""The shipped sample catalogue and its builder."""

from __future__ import annotations


import pandas as pd
import pytest
from PIL import Image

from ingest.catalogue import read_catalogue
from ingest.sample import DEFAULT_SOURCE, SAMPLE_DIR, artist_names, build, clean_hymn_lyrics, draw_cover, words_year

CATALOGUE = SAMPLE_DIR / "hymns.csv"


def test_every_song_has_title_artist_lyrics_and_a_generated_cover():
    songs, problems = read_catalogue(CATALOGUE)
    assert len(songs) >= 280 and problems == []
    for song in songs:
        assert song.title and song.artists and song.lyrics and song.genre
        assert song.extra["cover_generated"] is True
        assert "public domain" in song.extra["credit"].lower()
        with Image.open(SAMPLE_DIR / song.cover) as cover:
            assert cover.size == (320, 320)
        assert not set("\\_`") & set(song.lyrics)
    assert len({s.song_id for s in songs}) == len(songs)


def test_parsing_helpers():
    assert artist_names("Luther, Martin (1483-1546);Watts, Isaac (1674-1748)") == ["Martin Luther", "Isaac Watts"]
    assert artist_names("") == ["Unknown"]
    assert words_year(["Words: Germanus of Constantinople (634-734).  Translated by John Mason Neale, 1862."]) == 1862
    assert words_year(["Music: 'Tune' 1609."]) is None
    assert clean_hymn_lyrics("1. Our hope\\-when we go_ down\n\n2. Heavy\\- hearted") == "Our hope-when we go down\n\nHeavy-hearted"


def test_covers_look_alike_within_a_genre_and_differ_by_title():
    a, b = draw_cover("Silent Night", "Christmas"), draw_cover("Joy to the World", "Christmas")
    other = draw_cover("Silent Night", "Easter")
    assert a.tobytes() != b.tobytes()
    colours = [im.resize((1, 1)).getpixel((0, 0)) for im in (a, b, other)]
    same = sum(abs(x - y) for x, y in zip(colours[0], colours[1]))
    different = sum(abs(x - y) for x, y in zip(colours[0], colours[2]))
    assert same < different
    assert draw_cover("Silent Night", "Christmas").tobytes() == a.tobytes()  # deterministic


@pytest.mark.skipif(not DEFAULT_SOURCE.is_file(), reason="the Open Hymnal source is not beside the project")
def test_builder_reproduces_the_shipped_catalogue(tmp_path):
    built = build(DEFAULT_SOURCE, tmp_path)
    shipped = pd.read_csv(CATALOGUE)
    assert pd.read_csv(tmp_path / "hymns.csv").equals(shipped) and len(built) == len(shipped)
    for name in shipped["cover_path"][:25]:
        assert (tmp_path / name).read_bytes() == (SAMPLE_DIR / name).read_bytes()
