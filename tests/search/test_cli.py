"""`python -m search` and `python -m search.eval` on small real catalogues."""

from __future__ import annotations

import itertools
import json

import pytest

from ingest.context import open_songspace
from ingest.pipeline import Ingestor
from search import eval as search_eval
from search.settings import DEFAULT_LYRICS_WEIGHT
from search.__main__ import main
from tests.conftest import CITY_LYRICS, SEA_LYRICS, make_cover
from tests.fakes import TRACKS

FIELDS = {"point_id", "song_id", "title", "artists", "score", "lyrics_score", "cover_score", "words_score"}


@pytest.fixture
def ingested(settings, themed_rows, write_catalogue, monkeypatch):
    songspace = open_songspace(settings)
    Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False).run(write_catalogue(themed_rows))
    songspace.close()
    for name, value in {
        "QDRANT_PATH": str(settings.qdrant_path), "QDRANT_COLLECTION": settings.collection,
        "SONGSPACE_CACHE_DIR": str(settings.cache_dir), "QDRANT_URL": settings.qdrant_url or "",
    }.items():
        monkeypatch.setenv(name, value)
    return settings


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_song_id_as_table_and_json(ingested, capsys):
    status, out, _ = run(capsys, "--song-id", "sea-0", "-k", "3")
    assert status == 0
    lines = out.strip().splitlines()
    assert lines[0].split()[:4] == ["#", "score", "lyrics", "cover"] and len(lines) == 4
    status, out, _ = run(capsys, "--song-id", "sea-0", "-k", "5", "--lyrics-weight", "1", "--json")
    results = json.loads(out)
    assert status == 0 and len(results) == 5 and set(results[0]) == FIELDS
    assert results[0]["title"].startswith("Sea Song") and results[0]["score"] == pytest.approx(0.8 * results[0]["lyrics_score"] + 0.2 * (results[0]["words_score"] or 0), abs=1e-5)
    assert "sea-0" not in {r["song_id"] for r in results}


def test_exclude_artist_and_text(ingested, capsys):
    _, out, _ = run(capsys, "--song-id", "sea-0", "--exclude-artist", "--json")
    assert all(r["artists"] != ["Sea Band 0"] for r in json.loads(out))
    _, out, _ = run(capsys, "--text", "skyscrapers and traffic downtown", "-k", "2", "--json")
    results = json.loads(out)
    assert results[0]["title"].startswith("City Song") and results[0]["cover_score"] is None


def test_unknown_song_and_empty_store(ingested, capsys, monkeypatch):
    status, _, err = run(capsys, "--song-id", "nope")
    assert status == 4 and "no song with id 'nope'" in err
    monkeypatch.setenv("QDRANT_COLLECTION", "never_made")
    status, _, err = run(capsys, "--song-id", "sea-0")
    assert status == 3 and "python -m ingest" in err


def test_spotify_track(ingested, services, capsys, monkeypatch):
    for name, value in services.env().items():
        monkeypatch.setenv(name, value)
    status, out, err = run(capsys, "--spotify", f"spotify:track:{TRACKS[0].id}", "-k", "3", "--json")
    assert status == 0 and "lyrics from LRCLIB" in err
    assert json.loads(out)[0]["title"].startswith("Sea Song")
    status, _, err = run(capsys, "--spotify", "https://example.org/not-spotify")
    assert status == 4 and "not a Spotify track" in err


def test_eval_reports_every_method(tmp_path, write_catalogue, monkeypatch, capsys):
    rows = []
    for theme, lines, colour in (("sea", SEA_LYRICS, (20, 60, 200)), ("city", CITY_LYRICS, (90, 90, 90))):
        for i, (a, b) in enumerate(itertools.permutations(range(4), 2)):  # 12 songs a theme
            (tmp_path / f"{theme}{i}.png").write_bytes(make_cover(colour, i))
            rows.append({"id": f"{theme}{i}", "title": f"{theme} {i}", "artist": f"{theme} artist {i}",
                         "genre": theme, "lyrics": f"{lines[a]}\n{lines[b]}", "cover_path": f"{theme}{i}.png"})
    monkeypatch.setenv("SONGSPACE_CACHE_DIR", str(tmp_path / "cache"))
    out_json = tmp_path / "eval.json"
    assert search_eval.main([str(write_catalogue(rows)), "--label", "genre", "--json", str(out_json)]) == 0
    results = json.loads(out_json.read_text())
    methods = {"lyrics", "lyrics_dense", "words", "cover", "fused", "tfidf", "seed_concat"}
    assert set(results) == methods | {"default_lyrics_weight", "words_weight", "songs"}
    assert results["default_lyrics_weight"] == DEFAULT_LYRICS_WEIGHT and results["songs"] == 24
    assert all({"macro_p_at_10", "micro_p_at_10"} <= set(results[m]) for m in methods)
    curve = results["fused"]["curve"]
    assert [p["lyrics_weight"] for p in curve] == sorted({round(0.1 * i, 1) for i in range(11)} | {DEFAULT_LYRICS_WEIGHT})
    at_default = next(p for p in curve if p["lyrics_weight"] == DEFAULT_LYRICS_WEIGHT)
    assert results["fused"]["macro_p_at_10"] == at_default["macro_p_at_10"]  # what users get, not the best
    assert results["fused"]["oracle"]["macro_p_at_10"] == max(p["macro_p_at_10"] for p in curve)
    assert results["lyrics"]["macro_p_at_10"] > 0.9  # sea and city lyrics are easy to tell apart
    assert results["tfidf"]["macro_p_at_10"] > 0.6
    out = capsys.readouterr().out
    assert "| lyrics (dense + words" in out and "an oracle figure" in out
