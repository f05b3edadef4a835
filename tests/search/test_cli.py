"""`python -m search` and `python -m search.eval` on small real catalogues."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.context import open_songspace
from ingest.pipeline import Ingestor
from search import eval as search_eval
from search.__main__ import main
from search.cli import run_command
from search.settings import DEFAULT_LYRICS_WEIGHT
from tests.conftest import CITY_LYRICS, SEA_LYRICS, make_cover
from tests.fakes import TRACKS
from tests.search.test_recommend import assert_same_top

PROJECT = Path(__file__).resolve().parents[2]
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


@pytest.fixture
def fresh_store(tmp_path, monkeypatch):
    """The environment of a fresh machine: a store and cache folders that do not exist yet."""
    for name, value in {
        "QDRANT_PATH": str(tmp_path / "store"), "SONGSPACE_CACHE_DIR": str(tmp_path / "cache"), "QDRANT_URL": "",
    }.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(err: str) -> str:
    """The single `error: ...` line a failed command prints, with no traceback."""
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ")
    return line


def table(out: str) -> list[list[str]]:
    """The rows of the result table (after the header lines), split on runs of spaces."""
    lines = out.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["#", "score"])
    return [line.split() for line in lines[start:]]


def test_song_id_as_table_and_json(ingested, capsys):
    status, out, err = run(capsys, "--song-id", "sea-0", "-k", "3")
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "seed: Sea Song 0 — Sea Band 0 (sea-0)"
    assert lines[1] == "weights: lyrics 0.60 (words 0.2 of it), cover 0.40"
    rows = table(out)
    assert rows[0] == ["#", "score", "lyrics", "words", "cover", "id", "title", "—", "artists"] and len(rows) == 4
    ids = [row[5] for row in rows[1:]]
    assert all(i.startswith(("sea-", "city-")) for i in ids) and "sea-0" not in ids
    status, out, err = run(capsys, "--song-id", "sea-0", "-k", "5", "--lyrics-weight", "1", "--json")
    results = json.loads(out)
    assert status == 0 and len(results) == 5 and set(results[0]) == FIELDS
    assert err.startswith("seed: Sea Song 0")  # the header goes to stderr, stdout is JSON only
    assert results[0]["title"].startswith("Sea Song") and results[0]["score"] == pytest.approx(0.8 * results[0]["lyrics_score"] + 0.2 * (results[0]["words_score"] or 0), abs=1e-5)
    assert "sea-0" not in {r["song_id"] for r in results}


def test_the_table_ids_name_songs_again(ingested, capsys):
    _, out, _ = run(capsys, "--song-id", "sea-0", "--json")
    first = json.loads(out)[0]
    _, by_point_id, _ = run(capsys, "--song-id", first["point_id"], "--json")
    _, by_song_id, _ = run(capsys, "--song-id", first["song_id"], "--json")
    assert json.loads(by_point_id) == json.loads(by_song_id)
    assert first["song_id"] not in {r["song_id"] for r in json.loads(by_point_id)}


def test_exclude_artist_and_text(ingested, capsys):
    _, out, _ = run(capsys, "--song-id", "sea-0", "--exclude-artist", "--json")
    assert all(r["artists"] != ["Sea Band 0"] for r in json.loads(out))
    _, out, err = run(capsys, "--text", "skyscrapers and traffic downtown", "-k", "2", "--json")
    results = json.loads(out)
    assert results[0]["title"].startswith("City Song") and results[0]["cover_score"] is None
    assert "no cover: ranked by lyrics only" in err.splitlines()


def test_genres_match_in_any_case_and_unknown_ones_are_named(ingested, capsys):
    status, out, _ = run(capsys, "--song-id", "sea-0", "--genre", "CITY", "--json")
    assert status == 0 and {r["song_id"] for r in json.loads(out)} == {f"city-{i}" for i in range(4)}
    status, out, err = run(capsys, "--song-id", "sea-0", "--genre", "christmas")
    assert status == 2 and out == ""
    assert one_line_error(err) == "error: no genre 'christmas' in collection '" + ingested.collection + "'; known genres: city, sea"


def test_nothing_matched_says_why(ingested, capsys):
    status, out, err = run(capsys, "--song-id", "sea-0", "--year", "2030")
    assert status == 0 and err == ""
    assert out.splitlines()[-1] == f"nothing matched: no song in collection {ingested.collection!r} has year 2030"
    status, out, err = run(capsys, "--song-id", "sea-0", "--genre", "sea", "--exclude-artist", "--year", "1990-1992", "--json")
    # sea-0 (the seed), sea-1 and sea-2 are sea songs of 1990-1992; sea-2 shares the seed's artist
    assert status == 0 and {r["song_id"] for r in json.loads(out)} == {"sea-1"}
    status, out, err = run(capsys, "--song-id", "sea-0", "--genre", "sea", "--exclude-artist", "--year", "1990", "--json")
    assert status == 0 and json.loads(out) == []
    assert err.splitlines()[-1] == "nothing matched: every song that passes the filters is a seed or by the seed's artists"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--song-id", "sea-0", "--lyrics-weight", "1.5"], "argument --lyrics-weight: expected a number from 0 to 1, got '1.5'"),
        (["--song-id", "sea-0", "--lyrics-weight", "-0.1"], "argument --lyrics-weight: expected a number from 0 to 1"),
        (["--text", ""], "argument --text: expected some text, got nothing"),
        (["--text", "   "], "argument --text: expected some text, got nothing"),
        (["--song-id", "sea-0", "--year", "abc"], "argument --year: expected a year YYYY or a range YYYY-YYYY, got 'abc'"),
        (["--song-id", "sea-0", "--year", "2020-1990"], "argument --year: '2020-1990' ends before it starts"),
        (["--song-id", "sea-0", "--diversity", "5"], "argument --diversity: expected a number from 0 to 1, got '5'"),
        (["--song-id", "sea-0", "--diversity", "nan"], "argument --diversity: expected a number from 0 to 1"),
        (["--song-id", "sea-0", "-k", "0"], "argument -k: expected a whole number of at least 1, got '0'"),
        (["--song-id", "sea-0", "-k", "two"], "argument -k: expected a whole number of at least 1, got 'two'"),
        (["--song-id", "sea-0", "--text", "both"], "argument --text: not allowed with argument --song-id"),
        (["--text", "sea", "--not-song-id", "sea-0"], "--not-song-id goes with liked songs"),
        (["--song-id", "sea-0", "--not-song-id", "sea-0"], "'sea-0' is both liked (--song-id) and disliked (--not-song-id)"),
        (["--spotify", "garbage"], "argument --spotify: 'garbage' is not a Spotify track"),
        (["--spotify", "https://example.org/track/4uLU6hMCjMI75M1A2tKUQC"], "argument --spotify: 'https://example.org/track/"),
        (["--spotify-playlist", "https://example.org/x"], "argument --spotify-playlist: 'https://example.org/x' is not a Spotify playlist or album"),
        ([], "one of the arguments --song-id --text --spotify --spotify-playlist is required"),
    ],
)
def test_argument_mistakes_are_one_line_usage_errors(fresh_store, capsys, argv, message):
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert one_line_error(err).startswith(f"error: {message}")
    assert list(fresh_store.iterdir()) == []  # checked before anything was opened


@pytest.mark.parametrize("argv", [["--spotify", TRACKS[0].id], ["--spotify-playlist", f"spotify:album:{TRACKS[0].id}"]])
def test_spotify_seeds_without_credentials_create_nothing(fresh_store, capsys, monkeypatch, argv):
    for name in ("SPOTIPY_CLIENT_ID", "SPOTIPY_CLIENT_SECRET"):
        monkeypatch.setenv(name, "")
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert one_line_error(err).startswith(f"error: {argv[0]} needs Spotify: set SPOTIPY_CLIENT_ID")
    assert list(fresh_store.iterdir()) == []  # no collection made, no encoder chosen, no cache


def test_an_export_path_that_is_a_folder_is_a_usage_error(fresh_store, capsys):
    (fresh_store / "mix.csv").mkdir()
    status, out, err = run(capsys, "--song-id", "sea-0", "--export", str(fresh_store / "mix.csv"))
    assert status == 2 and out == "" and "is a folder" in one_line_error(err)
    assert [p.name for p in fresh_store.iterdir()] == ["mix.csv"]


@pytest.mark.parametrize(
    ("name", "value"), [("COVER_MAX_BYTES", "10MB"), ("LYRICS_LONG_TEXT", "bogus"), ("QDRANT_ENGINE", "nope")]
)
def test_bad_settings_are_usage_errors_naming_the_setting(fresh_store, capsys, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    status, out, err = run(capsys, "--song-id", "sea-0")
    assert status == 2 and out == ""
    assert one_line_error(err).startswith(f"error: {name}={value!r} is not valid")
    assert list(fresh_store.iterdir()) == []


def test_unknown_song_and_empty_store(ingested, capsys, monkeypatch):
    status, _, err = run(capsys, "--song-id", "nope")
    assert status == 4 and "no song with id 'nope'" in one_line_error(err)
    monkeypatch.setenv("QDRANT_COLLECTION", "never_made")
    status, _, err = run(capsys, "--song-id", "sea-0")
    assert status == 3 and "python -m ingest" in one_line_error(err)


def test_a_collection_without_songs_is_empty(ingested, capsys):
    songspace = open_songspace(ingested)
    songspace.index.delete([point_id for point_id, _ in songspace.index.scroll_payloads([])])
    songspace.close()
    status, out, err = run(capsys, "--text", "the sea")
    assert status == 3 and out == ""
    assert one_line_error(err) == (
        f"error: collection {ingested.collection!r} in the {ingested.store_label} is empty: load a catalogue "
        "with `python -m ingest CATALOGUE` (for example data/sample/hymns.csv)"
    )


def test_spotify_track(ingested, services, capsys, monkeypatch):
    for name, value in services.env().items():
        monkeypatch.setenv(name, value)
    status, out, err = run(capsys, "--spotify", f"spotify:track:{TRACKS[0].id}", "-k", "3", "--json")
    assert status == 0 and "lyrics from LRCLIB" in err
    assert json.loads(out)[0]["title"].startswith("Sea Song")
    status, out, err = run(capsys, "--spotify", TRACKS[5].id, "-k", "3")  # Bare Sleeve has no cover
    assert status == 0 and "no cover: ranked by lyrics only" in out.splitlines()
    status, _, err = run(capsys, "--spotify", "https://example.org/not-spotify")
    assert status == 2 and "not a Spotify track" in one_line_error(err)


def test_json_stdout_is_json_on_a_fresh_machine(tmp_path, services):
    """A fresh store and torch cache: the encoder choice tries ResNet-50's download, whose notice must
    not land among the results (the download goes to a closed local port, so nothing leaves)."""
    env = {
        **os.environ, **services.env(),
        "QDRANT_PATH": str(tmp_path / "store"), "QDRANT_COLLECTION": "fresh", "SONGSPACE_CACHE_DIR": str(tmp_path / "cache"),
        "TORCH_HOME": str(tmp_path / "torch"), "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
    }
    for name in ("QDRANT_URL", "IMAGE_ENCODER", "RESNET50_WEIGHTS"):
        env.pop(name, None)
    process = subprocess.run(
        [sys.executable, "-m", "search", "--spotify", TRACKS[0].id, "--json"],
        check=False, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert process.returncode == 0, process.stderr
    assert 'Downloading: "https://download.pytorch.org' in process.stderr  # the attempt was made
    assert json.loads(process.stdout) == []  # the only song is the seed


def test_unexpected_failures_say_where_to_look(capsys, monkeypatch):
    monkeypatch.delenv("SONGSPACE_DEBUG", raising=False)
    assert run_command(lambda: {}["missing"]) == 1
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith("error: unexpected KeyError: 'missing'.") and "SONGSPACE_DEBUG=1" in line
    monkeypatch.setenv("SONGSPACE_DEBUG", "1")
    with pytest.raises(KeyError):
        run_command(lambda: {}["missing"])


def test_help_shows_defaults_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert f"(default: {DEFAULT_LYRICS_WEIGHT})" in out and "(default: 10)" in out
    for code in ("0", "1", "2", "3", "4"):
        assert any(line.split()[:1] == [code] for line in out.split("exit codes:")[1].splitlines())


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
    methods = {"lyrics", "lyrics_dense", "words", "cover", "fused", "fused_dense", "tfidf", "seed_concat"}
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


def test_eval_mistakes_are_usage_errors(tmp_path, themed_rows, write_catalogue, capsys):
    catalogue = write_catalogue(themed_rows)
    cases = [
        ([str(tmp_path / "nope.csv")], f"error: argument catalogue: no catalogue file at {tmp_path / 'nope.csv'}"),
        ([str(catalogue), "--label", "nosuch"], f"error: no song in {catalogue} has a 'nosuch' label; fields with values: "),
        ([str(catalogue), "--json", str(tmp_path / "no" / "eval.json")], f"error: --json {tmp_path / 'no' / 'eval.json'}: there is no folder"),
    ]
    for argv, message in cases:
        assert search_eval.main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and one_line_error(captured.err).startswith(message)
    assert {p.name for p in tmp_path.iterdir()} == {"catalogue.csv", *(r["cover_path"] for r in themed_rows)}


@pytest.fixture
def thirty(settings, tmp_path, write_catalogue, monkeypatch):
    """40 songs (enough to be centred) with lyrics mixed from the two themes, covers in two colours."""
    rows = []
    for i, (a, b) in enumerate(itertools.islice(itertools.product(range(8), range(8)), 40)):
        texts = SEA_LYRICS + CITY_LYRICS
        (tmp_path / f"t{i}.png").write_bytes(make_cover((20, 60, 200) if a < 4 else (90, 90, 90), i))
        rows.append({"id": f"t{i}", "title": f"Mixed {i}", "artist": f"Band {i % 7}", "genre": "mix",
                     "lyrics": f"{texts[a]}\n{texts[b]}", "cover_path": f"t{i}.png"})
    songspace = open_songspace(settings)
    Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False).run(write_catalogue(rows))
    songspace.close()
    for name, value in {
        "QDRANT_ENGINE": settings.engine, "QDRANT_PATH": str(settings.qdrant_path), "QDRANT_COLLECTION": settings.collection,
        "SONGSPACE_CACHE_DIR": str(settings.cache_dir), "QDRANT_URL": settings.qdrant_url or "",
    }.items():
        monkeypatch.setenv(name, value)
    return settings


def test_liked_and_disliked_songs_give_the_exact_top_20(thirty, capsys):
    """The issue's case, against the brute-force oracle of the search tests (the documented rule)."""
    import numpy as np

    from search.index import COVER as C, LYRICS as L, WORDS, SongPoint, open_index
    from tests.search.test_recommend import Oracle, allowed_by
    from search.recommend import Filters

    status, out, err = run(capsys, "--song-id", "t1", "--song-id", "t9", "--not-song-id", "t20",
                           "--lyrics-weight", "0.3", "-k", "20", "--json")
    assert status == 0, err
    results = json.loads(out)
    assert "seed: Mixed 1" in err and "; not Mixed 20" in err
    index = open_index(thirty)
    try:
        hits = index.engine.retrieve([i for i, _ in index.scroll_payloads([])], True, [L, C, WORDS])
    finally:
        index.close()
    raw = [SongPoint(h.point_id, h.payload, {m: v for m, v in h.vectors.items() if m in (L, C)}, h.vectors.get(WORDS)) for h in hits]
    assert len(raw) == 40  # at least 32 songs a modality: each is centred on the mean of all
    centres = {m: np.mean([p.vectors[m] for p in raw if m in p.vectors], axis=0) for m in (L, C)}
    oracle = Oracle(raw, centres)
    ids = {p.payload["song_id"]: p.point_id for p in raw}
    liked, disliked = [ids["t1"], ids["t9"]], [ids["t20"]]
    vectors, words = oracle.seed(liked, disliked)
    expected = oracle.ranking(vectors, words, 0.3, 0.2, allowed_by(Filters(), set(liked) | set(disliked)))
    got = [(r["point_id"], r["score"]) for r in results]
    assert len(got) == 20 and not {"t1", "t9", "t20"} & {r["song_id"] for r in results}
    assert_same_top(got, expected, 20)


@pytest.mark.parametrize("suffix", [".csv", ".m3u8", ".jspf"])
def test_results_are_exported_as_playlists(thirty, capsys, tmp_path, suffix):
    target = tmp_path / f"mix{suffix}"
    status, out, err = run(capsys, "--song-id", "t3", "-k", "5", "--json", "--export", str(target))
    assert status == 0 and f"wrote 5 songs to {target}" in err
    titles = [r["title"] for r in json.loads(out)]
    text = target.read_text(encoding="utf-8")
    if suffix == ".csv":
        import csv as csv_module

        assert [row["title"] for row in csv_module.DictReader(text.splitlines())] == titles
    elif suffix == ".m3u8":
        lines = text.splitlines()
        assert lines[0] == "#EXTM3U" and [l.split(" - ", 1)[1] for l in lines if l.startswith("#EXTINF")] == titles
    else:
        assert [t["title"] for t in json.loads(text)["playlist"]["track"]] == titles


def test_export_and_seed_mistakes_are_one_line_errors(thirty, capsys, tmp_path):
    status, _, err = run(capsys, "--song-id", "t3", "--export", str(tmp_path / "mix.txt"))
    assert status == 2 and ".txt" in one_line_error(err)
    status, _, err = run(capsys, "--song-id", "t3", "--export", str(tmp_path / "nowhere" / "mix.csv"))
    assert status == 2 and "no folder" in one_line_error(err)
    status, _, err = run(capsys, "--song-id", "t3", "--not-song-id", "nope")
    assert status == 4 and "'nope'" in one_line_error(err)
    status, _, err = run(capsys, "--text", "sea", "--not-song-id", "t3")
    assert status == 2 and "not --text" in one_line_error(err)


def test_a_spotify_album_is_the_seed(thirty, services, monkeypatch, capsys):
    from tests.fakes import CATALOGUE_TRACKS, TODAYS_TOP_HITS_ID

    for name, value in services.env().items():
        monkeypatch.setenv(name, value)
    album = CATALOGUE_TRACKS[60].album_id
    status, out, err = run(capsys, "--spotify-playlist", f"https://open.spotify.com/album/{album}", "-k", "5", "--json")
    assert status == 0, err
    assert "album 'Catalogue Album 1': 4 of its songs are seeds" in err
    assert len(json.loads(out)) == 5 and not {r["title"] for r in json.loads(out)} & {t.title for t in CATALOGUE_TRACKS[60:64]}
    status, _, err = run(capsys, "--spotify-playlist", f"https://open.spotify.com/playlist/{TODAYS_TOP_HITS_ID}")
    assert status == 4 and "Spotify" in one_line_error(err)


def test_outside_text_stays_on_its_row_and_sends_the_terminal_nothing(capsys):
    from search.cli import fail, format_table

    hostile = "Top line\n\nBottom \x1b]0;retitled\x07\x1b[2J\r\u2028end"
    lines = format_table(["id", "title — artists"], [["a", hostile], ["b", "Plain"]]).splitlines()
    assert len(lines) == 3 and lines[1].startswith("a   Top line Bottom ") and lines[2] == "b   Plain"
    assert not any(char in "\n".join(lines) for char in "\x1b\x07\r\u2028")
    fail(f"no genre in {hostile}", 2)
    assert one_line_error(capsys.readouterr().err).startswith("error: no genre in Top line Bottom ")


def test_a_reader_that_stops_reading_is_no_failure():
    """`python -m search.store list | head -1`: the command stops quietly, as a shell expects of a pipe."""
    writer = "import sys\nfrom search.cli import run_command\nsys.exit(run_command(lambda: [print('x' * 100) for _ in range(100_000)] and 0))"
    process = subprocess.Popen([sys.executable, "-c", writer], cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.readline()
    process.stdout.close()  # what `head -1` does once it has its line
    status = process.wait(timeout=60)
    assert process.stderr.read() == b"" and status == 141
