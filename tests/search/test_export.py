"""Exports read back with real parsers: csv, json, and M3U8's line structure; outside text with line
breaks, quotes, commas, formulas and markup comes back as it went in (or defused, for formulas)."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone

import pytest

from search.export import ExportError, export_format, render_export, to_jspf, write_export
from search.recommend import Recommendation

SPOTIFY_ID = "4uLU6hMCjMI75M1A2tKUQC"


def result(point_id: str, title: str, artists: list[str], score: float, **payload) -> Recommendation:
    song_id = payload.pop("song_id", None)
    return Recommendation(
        point_id=point_id, song_id=song_id, title=title, artists=artists, score=score,
        lyrics_score=payload.pop("lyrics_score", None), cover_score=payload.pop("cover_score", None),
        words_score=payload.pop("words_score", None), payload=payload,
    )


RESULTS = [
    result(
        "9b2f7c1e-0000-5000-8000-000000000001", "Harbour Lights", ["The Tides"], 0.812345678,
        song_id="sea-1", album="Salt", year=1999, spotify_id=SPOTIFY_ID, duration_ms=201400,
        lyrics_score=0.9, cover_score=0.7, words_score=0.25,
        spotify_url=f"https://open.spotify.com/track/{SPOTIFY_ID}?si=tracking",
    ),
    result(
        "9b2f7c1e-0000-5000-8000-000000000002", 'Line one\nLine two\r\n#EXTINF:1,"forged", ok', ["Zoë, Ångström", "B\u2028C"],
        -0.05, song_id="café #2/ü", album="<img src=x onerror=alert(1)>", lyrics_score=-0.05,
    ),
    result("9b2f7c1e-0000-5000-8000-000000000003", "=HYPERLINK(\"http://evil.example\")", [], 0.5, album="@SUM(A1)"),
]


def test_csv_round_trips_through_a_csv_reader(tmp_path):
    path = tmp_path / "results.csv"
    write_export(RESULTS, path)
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    first, second, third = rows
    assert (first["title"], first["artists"], first["album"], first["year"]) == ("Harbour Lights", "The Tides", "Salt", "1999")
    assert float(first["score"]) == pytest.approx(0.812345678, abs=1e-6)
    assert (float(first["lyrics_score"]), float(first["words_score"]), float(first["cover_score"])) == (0.9, 0.25, 0.7)
    assert first["spotify_url"] == f"https://open.spotify.com/track/{SPOTIFY_ID}"  # without the tracking query
    assert first["song_id"] == "sea-1"
    assert second["title"] == 'Line one\nLine two\r\n#EXTINF:1,"forged", ok'
    assert second["artists"] == "Zoë, Ångström; B\u2028C" and second["album"] == "<img src=x onerror=alert(1)>"
    assert second["score"] == "-0.050000" and second["cover_score"] == "" and second["spotify_url"] == ""
    # Spreadsheet formulas are shown as text, not run.
    assert third["title"] == "'=HYPERLINK(\"http://evil.example\")" and third["album"] == "'@SUM(A1)"
    assert third["song_id"] == "" and third["year"] == ""


def test_m3u8_keeps_every_entry_on_its_two_lines():
    text = render_export(RESULTS, "mix.M3U8", title="My\nmix").decode("utf-8")
    lines = text.split("\n")
    assert lines[:2] == ["#EXTM3U", "#PLAYLIST:My mix"] and lines[-1] == ""
    entries = lines[2:-1]
    assert len(entries) == 2 * len(RESULTS)
    infos, locations = entries[0::2], entries[1::2]
    assert all(line.startswith("#EXTINF:") for line in infos)
    assert not any(line.startswith("#") for line in locations)
    assert "\r" not in text and "\u2028" not in text
    assert infos[0] == "#EXTINF:201,The Tides - Harbour Lights"
    assert infos[1] == '#EXTINF:-1,Zoë, Ångström, B C - Line one Line two #EXTINF:1,"forged", ok'
    assert infos[2] == '#EXTINF:-1,=HYPERLINK("http://evil.example")'
    assert locations == [
        f"https://open.spotify.com/track/{SPOTIFY_ID}",
        "songspace:song:caf%C3%A9%20%232%2F%C3%BC",
        "songspace:point:9b2f7c1e-0000-5000-8000-000000000003",
    ]


def test_jspf_is_xspf_in_json():
    created = datetime(2026, 5, 1, 12, 30, tzinfo=timezone.utc)
    playlist = json.loads(to_jspf(RESULTS, title="My mix", created=created))["playlist"]
    assert (playlist["title"], playlist["creator"], playlist["date"]) == ("My mix", "Songspace", "2026-05-01T12:30:00+00:00")
    first, second, third = playlist["track"]
    assert (first["title"], first["creator"], first["album"], first["duration"]) == ("Harbour Lights", "The Tides", "Salt", 201400)
    assert first["location"] == [f"https://open.spotify.com/track/{SPOTIFY_ID}"]
    assert first["identifier"] == ["songspace:song:sea-1", f"https://open.spotify.com/track/{SPOTIFY_ID}"]
    extension = first["extension"]["urn:x-songspace:recommendation"]
    assert extension == [{"rank": 1, "score": 0.812345678, "lyrics_score": 0.9, "words_score": 0.25, "cover_score": 0.7,
                          "song_id": "sea-1", "point_id": RESULTS[0].point_id, "year": 1999}]
    assert second["title"] == 'Line one\nLine two\r\n#EXTINF:1,"forged", ok' and second["creator"] == "Zoë, Ångström, B\u2028C"
    assert second["album"] == "<img src=x onerror=alert(1)>" and "location" not in second and "duration" not in second
    assert third["identifier"] == ["songspace:point:9b2f7c1e-0000-5000-8000-000000000003"]
    assert third["extension"]["urn:x-songspace:recommendation"][0]["rank"] == 3


def test_every_format_by_its_extension(tmp_path):
    for name, mime, first_bytes in (("a.csv", "text/csv", b"rank,title"), ("b.m3u8", "audio/x-mpegurl", b"#EXTM3U\n"),
                                    ("c.jspf", "application/jspf+json", b'{\n  "playlist"')):
        write_export(RESULTS[:1], tmp_path / "out" / name)
        assert (tmp_path / "out" / name).read_bytes().startswith(first_bytes)
        assert export_format(name)[0] == mime
    assert json.loads(render_export([], "empty.jspf"))["playlist"]["track"] == []


@pytest.mark.parametrize("name", ["results.txt", "results", "results.m3u"])
def test_other_extensions_are_refused(name, tmp_path):
    with pytest.raises(ExportError, match=r"\.csv, \.m3u8 or \.jspf"):
        write_export(RESULTS, tmp_path / name)
    assert not (tmp_path / name).exists()
