"""Reading catalogues: column mapping, artists and years, renames, unreadable files."""

from __future__ import annotations

import pytest

from ingest.catalogue import CatalogueError, parse_artists, parse_year, read_catalogue


@pytest.mark.parametrize(
    "value, expected",
    [
        ("['Simon', 'Garfunkel']", ["Simon", "Garfunkel"]),
        ("Earth, Wind & Fire", ["Earth, Wind & Fire"]),
        ("Ann; Bob", ["Ann", "Bob"]),
        (["Cy", " "], ["Cy"]),
        ("[broken", ["broken"]),
        (None, []),
    ],
)
def test_artists_in_every_shape(value, expected):
    assert parse_artists(value) == expected


@pytest.mark.parametrize("value, expected", [("1999", 1999), ("1987-05-01", 1987), ("soon", None), ("3000", None), ("", None)])
def test_years(value, expected):
    assert parse_year(value) == expected


def test_rename_and_formats(write_catalogue):
    rows = [{"track": "Song A", "who": "Ann", "words": "a long enough line of lyrics here", "kind": "pop"}]
    for name in ("c.csv", "c.parquet", "c.jsonl"):
        songs, problems = read_catalogue(write_catalogue(rows, name), rename={"track": "title", "who": "artists", "words": "lyrics", "kind": "genre"})
        assert problems == []
        assert (songs[0].title, songs[0].artists, songs[0].genre) == ("Song A", ["Ann"], "pop")
        assert songs[0].lyrics.startswith("a long")


def test_clear_errors_for_unusable_catalogues(write_catalogue, tmp_path):
    with pytest.raises(CatalogueError, match="no title column"):
        read_catalogue(write_catalogue([{"lyrics": "x"}]))
    with pytest.raises(CatalogueError, match="lacks"):
        read_catalogue(write_catalogue([{"title": "x"}]), rename={"nope": "lyrics"})
    with pytest.raises(CatalogueError, match="not one of"):
        read_catalogue(write_catalogue([{"title": "x", "w": "y"}]), rename={"w": "words"})
    (tmp_path / "c.txt").write_text("hello")
    with pytest.raises(CatalogueError, match="not CSV, Parquet or JSON lines"):
        read_catalogue(tmp_path / "c.txt")


def test_limit_and_short_lyrics(write_catalogue):
    rows = [{"title": f"T{i}", "artist": "A", "lyrics": "la" if i == 0 else "long enough lyrics for a song"} for i in range(5)]
    songs, problems = read_catalogue(write_catalogue(rows), limit=3)
    assert [s.title for s in songs] == ["T0", "T1", "T2"]
    assert songs[0].lyrics is None and problems[0].reason.startswith("lyrics too short")
