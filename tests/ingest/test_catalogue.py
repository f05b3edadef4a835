"""Reading catalogues: column mapping, artists and years, renames, unreadable files, and every kind of
broken line or value, each costing only its own row."""

from __future__ import annotations

import datetime

import pandas as pd
import pytest

from ingest.catalogue import CatalogueError, parse_artists, parse_song_id, parse_year, read_catalogue

LYRICS = "a long enough line of lyrics here"
NEXT_YEAR = datetime.date.today().year + 1


def read_bytes(tmp_path, data: bytes, name: str = "c.csv", **options):
    path = tmp_path / name
    path.write_bytes(data)
    return read_catalogue(path, **options)


def reasons(problems) -> dict[int, list[tuple[str, str]]]:
    by_row: dict[int, list[tuple[str, str]]] = {}
    for problem in problems:
        by_row.setdefault(problem.row, []).append((problem.outcome, problem.reason))
    return by_row


@pytest.mark.parametrize(
    "value, expected",
    [
        ("['Simon', 'Garfunkel']", (["Simon", "Garfunkel"], None)),
        ("[\"Guns N' Roses\", 'Slash']", (["Guns N' Roses", "Slash"], None)),
        ("['AC\\\\DC']", (["AC\\DC"], None)),
        ("Earth, Wind & Fire", (["Earth, Wind & Fire"], None)),
        ("Ann; Bob", (["Ann", "Bob"], None)),
        (["Cy", " ", None], (["Cy"], None)),
        ("[]", ([], None)),
        ("['']", ([], None)),
        ("[' ', '']", ([], None)),
        ("   ", ([], None)),
        (None, ([], None)),
        ("['Ann', 'Bob'", (["Ann", "Bob"], "artists \"['Ann', 'Bob'\" is not a valid list; read as Ann; Bob")),
        ("[broken", (["broken"], "artists '[broken' is not a valid list; read as broken")),
        ("[[[[", ([], "artists '[[[[' is not a valid list; read as none")),
    ],
)
def test_artists_in_every_shape(value, expected):
    assert parse_artists(value) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        ("1999", 1999),
        (" 1999 ", 1999),
        ("1999.0", 1999),  # a spreadsheet's number
        (1999, 1999),
        (1999.0, 1999),
        ("1987-05-01", 1987),
        ("1987-05", 1987),
        ("1987-05-01T10:30:00Z", 1987),
        (datetime.date(1971, 2, 3), 1971),
        (pd.Timestamp("2001-09-30"), 2001),
        (str(NEXT_YEAR), NEXT_YEAR),  # announced releases
        ("soon", None),
        ("abc", None),
        ("0", None),
        ("-1999", None),
        ("99999", None),
        ("19991", None),
        ("1999-13-45", None),
        ("1999-02-30", None),
        (str(NEXT_YEAR + 1), None),
        ("3000", None),
        ("", None),
        (True, None),
        (float("nan"), None),
    ],
)
def test_years(value, expected):
    assert parse_year(value) == expected


@pytest.mark.parametrize(
    "value, expected",
    [("1", "1"), ("1.0", "1"), (1.0, "1"), (7, "7"), ("007", "007"), ("2.5", "2.5"), ("  ", None), (float("nan"), None)],
)
def test_song_ids(value, expected):
    assert parse_song_id(value) == expected


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
    with pytest.raises(CatalogueError, match="missing.csv"):
        read_catalogue(tmp_path / "missing.csv")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(CatalogueError, match="cannot read catalogue"):
        read_catalogue(tmp_path / "folder.csv")
    with pytest.raises(CatalogueError, match="empty"):
        read_bytes(tmp_path, b"")
    with pytest.raises(CatalogueError, match="empty"):
        read_bytes(tmp_path, b"\n\r\n")
    with pytest.raises(CatalogueError, match="header opens a quoted field"):
        read_bytes(tmp_path, b'id,"title,lyrics\n1,A,b\n')
    with pytest.raises(CatalogueError, match="UTF-16"):
        read_bytes(tmp_path, "title,lyrics\nA,b\n".encode("utf-16"))
    with pytest.raises(CatalogueError, match="cannot read catalogue"):
        read_bytes(tmp_path, b"PAR1 but not really", "c.parquet")
    with pytest.raises(CatalogueError, match="JSON array"):
        read_bytes(tmp_path, b'[{"title": "A"},\n {"title": "B"}]\n', "c.json")


def test_limit_and_short_lyrics(write_catalogue):
    rows = [{"title": f"T{i}", "artist": "A", "lyrics": "la" if i == 0 else "long enough lyrics for a song"} for i in range(5)]
    songs, problems = read_catalogue(write_catalogue(rows), limit=3)
    assert [s.title for s in songs] == ["T0", "T1", "T2"]
    assert songs[0].lyrics is None and problems[0].reason.startswith("lyrics too short")


def test_a_field_too_many_costs_only_its_own_row(tmp_path):
    data = (
        b"id,title,artist,lyrics\n"
        b"a1,First,Ann,one\n"
        b"a2,Second,Bob,two,stray\n"
        b"a3,Third,Cy,three\n"
    )
    songs, problems = read_bytes(tmp_path, data)
    assert [(s.row, s.song_id, s.title, s.artists) for s in songs] == [(1, "a1", "First", ["Ann"]), (3, "a3", "Third", ["Cy"])]
    assert reasons(problems)[2] == [("rejected", "line 3: 5 fields where the header has 4")]


def test_extra_fields_in_the_first_rows_never_shift_the_columns(tmp_path):
    # pandas takes the first column as an index here, and reads every value one column to the left
    data = (
        b"id,title,artist,lyrics\n"
        b"b1,First,Ann,one,x\n"
        b"b2,Second,Bob,two,y\n"
        b"b3,Third,Cy,three\n"
    )
    songs, problems = read_bytes(tmp_path, data)
    assert [(s.row, s.song_id, s.title) for s in songs] == [(3, "b3", "Third")]
    assert [(p.row, p.outcome, p.reason) for p in problems[:2]] == [
        (1, "rejected", "line 2: 5 fields where the header has 4"),
        (2, "rejected", "line 3: 5 fields where the header has 4"),
    ]


def test_too_few_fields_and_harmless_trailing_commas(tmp_path):
    data = (
        b"id,title,lyrics\n"
        b"c1,Short\n"
        b"c2,Trailing," + LYRICS.encode() + b",,\n"
        b"c3,Spill," + LYRICS.encode() + b",,x\n"
        b"lonely\n"
    )
    songs, problems = read_bytes(tmp_path, data)
    assert [(s.row, s.title, s.lyrics) for s in songs] == [(2, "Trailing", LYRICS)]
    assert reasons(problems) == {
        1: [("rejected", "line 2: 2 fields where the header has 3")],
        3: [("rejected", "line 4: 5 fields where the header has 3")],
        4: [("rejected", "line 5: 1 field where the header has 3")],
    }


def test_multiline_lyrics_and_meaningful_numbers(tmp_path):
    data = (
        b"id,title,lyrics\n"
        b'd1,Verse,"first line of the song\n\nsecond verse, with a comma\nand ""quotes"""\n'
        b"\n   \n"  # blank lines are not rows
        b'd2,Broken,"spread over\nthree lines",extra\n'
        b"d3,After,plain lyrics without any newline\n"
    )
    songs, problems = read_bytes(tmp_path, data)
    assert [(s.row, s.song_id) for s in songs] == [(1, "d1"), (3, "d3")]
    assert songs[0].lyrics == 'first line of the song\n\nsecond verse, with a comma\nand "quotes"'
    assert reasons(problems) == {2: [("rejected", "lines 8-9: 4 fields where the header has 3")]}


def test_a_quote_never_closed_loses_only_its_row(tmp_path):
    data = (
        b"id,title,lyrics\r\n"
        b"e1,One," + LYRICS.encode() + b"\r\n"
        b'e2,"Two,' + LYRICS.encode() + b"\r\n"
        b"e3,Three," + LYRICS.encode() + b"\r\n"
        b"e4,Four," + LYRICS.encode() + b"\r\n"
    )
    songs, problems = read_bytes(tmp_path, data)
    assert [(s.row, s.title, s.lyrics) for s in songs] == [(1, "One", LYRICS), (3, "Three", LYRICS), (4, "Four", LYRICS)]
    assert reasons(problems) == {2: [("rejected", "line 3: a quoted field opens here and is never closed")]}


def test_a_row_that_is_no_csv_at_all_is_rejected(tmp_path):
    songs, problems = read_bytes(tmp_path, b"id,title\nf1,Carriage\rreturn\nf2,Fine\n")
    assert [s.title for s in songs] == ["Fine"]
    assert problems[0].row == 1 and problems[0].reason.startswith("line 2: not readable as CSV")


def test_encodings_bom_nul_and_crlf(tmp_path):
    data = (
        b"\xef\xbb\xbfid,title,lyrics\r\n"  # a UTF-8 byte-order mark
        b"g1,Caf\xe9 Ol\xe9," + LYRICS.encode() + b"\r\n"  # Windows-1252
        b"g2,Beyonc\xc3\xa9 \x93live\x94," + LYRICS.encode() + b"\r\n"  # UTF-8 and Windows-1252 on one line
        b"g3,Nul\x00led," + LYRICS.encode() + b"\x00\r\n"
        b"\x00\x00\x00\r\n"  # a run of NULs, as a crashed writer leaves: blank once they are removed
        b"g4,Clean \xc3\xa9," + LYRICS.encode() + b"\r\n"
    )
    songs, problems = read_bytes(tmp_path, data)
    assert [(s.song_id, s.title, s.lyrics) for s in songs] == [
        ("g1", "Café Olé", LYRICS),
        ("g2", "Beyoncé \u201clive\u201d", LYRICS),
        ("g3", "Nulled", LYRICS),
        ("g4", "Clean é", LYRICS),
    ]
    assert reasons(problems) == {
        1: [("kept", "line 2: bytes that are not UTF-8 read as Windows-1252")],
        2: [("kept", "line 3: bytes that are not UTF-8 read as Windows-1252")],
        3: [("kept", "line 4: NUL bytes removed")],
    }


def test_fields_over_the_csv_modules_limit(tmp_path):
    lyrics = "la " * 100_000  # 300 KB, over the csv module's default 128 KiB
    songs, problems = read_bytes(tmp_path, f'id,title,lyrics\nh1,Long,"{lyrics}"\nh2,Next,{LYRICS}\n'.encode())
    assert [s.title for s in songs] == ["Long", "Next"] and problems == []
    assert songs[0].lyrics == lyrics.strip()


def test_header_only_and_whitespace_fields(tmp_path):
    assert read_bytes(tmp_path, b"id,title,lyrics\n") == ([], [])
    songs, problems = read_bytes(tmp_path, b"id,title,lyrics,genre\ni1,   ,x,pop\ni2,Kept,   ,  \n")
    assert [(s.title, s.lyrics, s.genre) for s in songs] == [("Kept", None, None)]
    assert reasons(problems) == {1: [("rejected", "no title")]}


def test_duplicate_column_names_read_as_one(tmp_path):
    songs, _ = read_bytes(tmp_path, b"id,title,Title,lyrics\nj1,,Second,x\nj2,First,Ignored,y\n")
    assert [s.title for s in songs] == ["Second", "First"]


def test_first_non_empty_cover_column_left_to_right(tmp_path):
    data = (
        b"id,title,cover_path,image_url,cover_url\n"
        b"k1,Path only,k1.png,,\n"
        b"k2,Url only,,,http://example.org/k2.png\n"
        b"k3,Both,k3.png,,http://example.org/k3.png\n"
        b"k4,Image,  ,http://example.org/k4.png,\n"
        b"k5,None,,,\n"
    )
    songs, _ = read_bytes(tmp_path, data)
    assert [s.cover for s in songs] == ["k1.png", "http://example.org/k2.png", "k3.png", "http://example.org/k4.png", None]
    songs, _ = read_bytes(tmp_path, data, rename={"image_url": "cover"})  # an explicit choice is the only one
    assert [s.cover for s in songs] == [None, None, None, "http://example.org/k4.png", None]


def test_bad_values_are_dropped_and_reported(tmp_path):
    data = (
        b"id,title,artists,year\n"
        b"1.0,Float id,['Ann'],1999.0\n"
        b"1,Same id,['Bob'],1999\n"
        b"2,Bad year,['Cy'],1999-13-45\n"
        b"3,Future,['Di'],2999\n"
        b"4,Broken list,\"['Ed', 'Flo'\",abc\n"
    )
    songs, problems = read_bytes(tmp_path, data)
    assert [(s.row, s.song_id, s.artists, s.year) for s in songs] == [
        (1, "1", ["Ann"], 1999),
        (3, "2", ["Cy"], None),
        (4, "3", ["Di"], None),
        (5, "4", ["Ed", "Flo"], None),
    ]
    assert reasons(problems) == {
        2: [("rejected", "duplicate id of row 1")],
        3: [("kept", "year '1999-13-45' is not a year from 1000 to next year or a valid date; left out")],
        4: [("kept", "year '2999' is not a year from 1000 to next year or a valid date; left out")],
        5: [
            ("kept", "year 'abc' is not a year from 1000 to next year or a valid date; left out"),
            ("kept", "artists \"['Ed', 'Flo'\" is not a valid list; read as Ed; Flo"),
        ],
    }


def test_json_lines_with_broken_lines(tmp_path):
    data = (
        b'{"id": "m1", "title": "One", "artists": ["Ann", "Bob"], "year": 1999}\n'
        b"\n"
        b'{"id": "m2", "title": "Two"\n'
        b'["not", "an", "object"]\n'
        b'{"id": 3.0, "title": "Caf\xe9", "extra": {"nested": true}}\n'
    )
    songs, problems = read_bytes(tmp_path, data, "c.jsonl")
    assert [(s.row, s.song_id, s.title, s.artists, s.year) for s in songs] == [
        (1, "m1", "One", ["Ann", "Bob"], 1999),
        (4, "3", "Café", [], None),
    ]
    assert reasons(problems) == {
        2: [("rejected", "line 3: not valid JSON (Expecting ',' delimiter at column 28)")],
        3: [("rejected", "line 4: a JSON list, not an object")],
        4: [("kept", "line 5: bytes that are not UTF-8 read as Windows-1252")],
    }


def test_parquet_with_odd_types(tmp_path):
    frame = pd.DataFrame(
        {
            "id": [1, None, 3, 4],  # floats once a null is among them
            "title": ["Ints", "No id", None, "Dates"],
            "artists": [["Ann", "Bob"], [], ["Cy"], None],
            "year": pd.array([1999, None, 2001, None], dtype="Int64"),
            "lyrics": [LYRICS, None, LYRICS, float("nan")],
        }
    )
    frame.to_parquet(tmp_path / "c.parquet")
    songs, problems = read_catalogue(tmp_path / "c.parquet")
    assert [(s.row, s.song_id, s.title, s.artists, s.year, s.lyrics) for s in songs] == [
        (1, "1", "Ints", ["Ann", "Bob"], 1999, LYRICS),
        (2, None, "No id", [], None, None),
        (4, "4", "Dates", [], None, None),
    ]
    assert reasons(problems) == {3: [("rejected", "no title")]}


def test_limit_counts_unreadable_rows(tmp_path):
    songs, problems = read_bytes(tmp_path, b"id,title\nn1,A\nn2,B,x\nn3,C\nn4,D\n", limit=3)
    assert [s.row for s in songs] == [1, 3] and [p.row for p in problems] == [2]


def test_a_one_column_catalogue(tmp_path):
    songs, problems = read_bytes(tmp_path, b"title\nOne\nTwo,extra\n")
    assert [s.title for s in songs] == ["One"]
    assert reasons(problems) == {2: [("rejected", "line 3: 2 fields where the header has 1")]}
