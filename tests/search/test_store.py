"""`python -m search.store`: list, find, status and delete on a real store holding the themed songs."""

from __future__ import annotations

import json

import pytest

from ingest.context import open_songspace
from ingest.pipeline import Ingestor
from ingest.unseen import add_user_song
from search import __main__ as search_command
from search.store import main
from tests.conftest import SEA_LYRICS

THEMED_IDS = {f"{theme}-{i}" for theme in ("sea", "city") for i in range(4)}


@pytest.fixture
def stored(settings, themed_rows, write_catalogue, monkeypatch):
    """The eight themed songs and one song a visitor added; the commands' environment points at them."""
    songspace = open_songspace(settings)
    try:
        Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False).run(write_catalogue(themed_rows))
        add_user_song(songspace, "Harbour Visitor", "Someone Else", lyrics=SEA_LYRICS[2] + " and the gulls")
        encoders = songspace.index.encoders
    finally:
        songspace.close()
    for name, value in {
        "QDRANT_PATH": str(settings.qdrant_path), "QDRANT_COLLECTION": settings.collection,
        "SONGSPACE_CACHE_DIR": str(settings.cache_dir), "QDRANT_URL": settings.qdrant_url or "",
    }.items():
        monkeypatch.setenv(name, value)
    return settings, encoders


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def listed(capsys, *argv: str) -> list[dict]:
    status, out, _ = run(capsys, "list", "--json", *argv)
    assert status == 0
    return json.loads(out)


def one_line_error(err: str) -> str:
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ")
    return line


def test_status_names_the_store_and_what_it_holds(stored, capsys):
    settings, encoders = stored
    status, out, _ = run(capsys, "status", "--json")
    state = json.loads(out)
    assert status == 0 and state["exists"] and state["songs"] == 9 and state["collection"] == settings.collection
    assert state["sources"] == {"catalogue": 8, "user": 1}
    assert (state["encoders"]["text"], state["encoders"]["image"]) == (encoders.text, encoders.image)
    assert state["centred"] == []  # fewer than 32 songs: nothing to learn a centre from
    assert state["store"] == settings.store_label
    status, out, _ = run(capsys, "status")
    lines = out.splitlines()
    assert f"collection: {settings.collection!r}, 9 songs" in lines and "sources: catalogue 8, user 1" in lines
    assert "centred: not yet (each modality is centred once 32 songs have it)" in lines
    assert any(line.startswith(f"encoders: lyrics {encoders.text}") for line in lines)


def test_list_with_filters(stored, capsys):
    assert {song["song_id"] for song in listed(capsys, "--limit", "100", "--source", "catalogue")} == THEMED_IDS
    assert {song["song_id"] for song in listed(capsys, "--genre", "SEA")} == {f"sea-{i}" for i in range(4)}
    assert {song["song_id"] for song in listed(capsys, "--year", "1991-1992")} == {"sea-1", "sea-2", "city-1", "city-2"}
    (visitor,) = listed(capsys, "--source", "user")
    assert visitor["title"] == "Harbour Visitor" and visitor["song_id"] is None and visitor["point_id"]
    status, out, err = run(capsys, "list", "--limit", "3")
    rows = out.splitlines()
    assert status == 0 and rows[0].split() == ["id", "source", "year", "genre", "title", "—", "artists"] and len(rows) == 4
    assert err.strip() == "3 of 9 songs shown; --limit shows more"
    status, out, err = run(capsys, "list", "--genre", "city", "--year", "2030")
    assert status == 0 and out.strip() == f"nothing matched: no song in collection {stored[0].collection!r} has genre city and year 2030"
    status, out, err = run(capsys, "list", "--genre", "jazz")
    assert status == 2 and out == "" and one_line_error(err).endswith("known genres: city, sea")


def test_find_by_title_or_artist(stored, capsys):
    status, out, _ = run(capsys, "find", "sea sonng 2", "--json")  # a typo and another case
    found = json.loads(out)
    assert status == 0 and found[0]["song_id"] == "sea-2" and found[0]["title"] == "Sea Song 2"
    status, out, _ = run(capsys, "find", "someone else")
    assert status == 0 and out.splitlines()[1].endswith("Harbour Visitor — Someone Else")
    status, out, err = run(capsys, "find", "zzzz qqqq")
    assert status == 4 and out == "" and "matches 'zzzz qqqq'" in one_line_error(err)


def test_delete_by_id_needs_yes(stored, capsys):
    status, out, err = run(capsys, "delete", "--id", "sea-0")
    assert status == 2 and out.splitlines()[1].split()[:2] == ["sea-0", "catalogue"]
    assert one_line_error(err) == "error: nothing was deleted: add --yes to delete 1 song"
    assert len(listed(capsys, "--limit", "100")) == 9
    (visitor,) = listed(capsys, "--source", "user")
    status, out, _ = run(capsys, "delete", "--id", "sea-0", visitor["point_id"], "--yes")
    assert status == 0 and out.splitlines()[-1] == "deleted 2 songs"
    assert {song["song_id"] for song in listed(capsys, "--limit", "100")} == THEMED_IDS - {"sea-0"}
    assert search_command.main(["--song-id", "sea-0"]) == 4


def test_delete_of_an_unknown_id_deletes_nothing(stored, capsys):
    status, out, err = run(capsys, "delete", "--id", "sea-1", "nope", "--yes")
    assert status == 4 and out == "" and one_line_error(err).startswith("error: no song with id 'nope'")
    assert len(listed(capsys, "--limit", "100")) == 9


def test_delete_what_visitors_added(stored, capsys):
    status, out, err = run(capsys, "delete", "--source", "user")
    assert status == 2 and out == ""
    assert one_line_error(err) == "error: nothing was deleted: add --yes to delete 1 song from source 'user'"
    assert run(capsys, "delete", "--source", "user", "--yes")[1].strip() == "deleted 1 song from source 'user'"
    assert {song["source"] for song in listed(capsys, "--limit", "100")} == {"catalogue"}
    status, _, err = run(capsys, "delete", "--source", "user", "--yes")
    assert status == 0 and "nothing to delete" in err


def test_delete_the_collection(stored, capsys):
    settings, _ = stored
    assert run(capsys, "delete", "--all")[0] == 2
    assert json.loads(run(capsys, "status", "--json")[1])["songs"] == 9
    status, out, _ = run(capsys, "delete", "--all", "--yes")
    assert status == 0 and out.strip() == f"deleted collection {settings.collection!r} and its 9 songs"
    state = json.loads(run(capsys, "status", "--json")[1])
    assert not state["exists"] and state["songs"] == 0 and state["encoders"] is None
    status, _, err = run(capsys, "list")
    assert status == 3 and "is empty: load a catalogue" in one_line_error(err)
    assert run(capsys, "delete", "--all", "--yes")[0] == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["delete"], "one of the arguments --id --source --all is required"),
        (["delete", "--source", "visitors"], "argument --source: invalid choice: 'visitors'"),
        (["list", "--limit", "0"], "argument --limit: expected a whole number of at least 1, got '0'"),
        (["list", "--year", "1999-1990"], "argument --year: '1999-1990' ends before it starts"),
        (["find", ""], "argument query: expected some text, got nothing"),
    ],
)
def test_mistakes_are_one_line_usage_errors(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "store"))
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == "" and one_line_error(err).startswith(f"error: {message}")
    assert list(tmp_path.iterdir()) == []


def older_store(folder, rows, raw_vectors, centres) -> None:
    """A collection as the Songspace before the engines left it: local mode, `lyrics` and `cover`
    stored centred, the centres as plain lists in the metadata, no fused or words vectors."""
    import numpy as np
    from qdrant_client import QdrantClient, models

    from search.index import song_point_id

    client = QdrantClient(path=str(folder))
    client.create_collection(
        "songs",
        vectors_config={m: models.VectorParams(size=len(c), distance=models.Distance.COSINE) for m, c in centres.items()},
        metadata={"encoders": {"text": "all-MiniLM-L6-v2", "text_dim": 384, "image": "efficientnet-lite0", "image_dim": 1280,
                               "long_text": "windows"}, "encoder_notice": "older", "centres": {m: c.tolist() for m, c in centres.items()}},
    )
    points = []
    for row, vectors in zip(rows, raw_vectors):
        centred = {m: (v - centres[m]) / np.linalg.norm(v - centres[m]) for m, v in vectors.items()}
        points.append(models.PointStruct(
            id=song_point_id(spotify_id=None, song_id=row["id"], artists=[], title=""),
            payload={"song_id": row["id"], "title": row["title"], "artists": [row["artist"]], "source": "catalogue"},
            vector={m: v.tolist() for m, v in centred.items()},
        ))
    client.upsert("songs", points)
    client.close()


def test_an_older_local_store_migrates_exactly_and_regains_its_words(settings, themed_rows, write_catalogue, tmp_path, monkeypatch, capsys):
    import numpy as np

    from search.index import COVER, LYRICS, open_index

    songspace = open_songspace(settings)  # the same songs, embedded as the older version did
    try:
        Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False).run(write_catalogue(themed_rows))
        ids = [i for i, _ in songspace.index.scroll_payloads()]
        raw = {h.point_id: {m: v for m, v in h.vectors.items() if m in (LYRICS, COVER)}
               for h in songspace.index.engine.retrieve(ids, False, [LYRICS, COVER])}
    finally:
        songspace.close()
    payloads = {p["song_id"]: i for i, p in open_index_payloads(settings)}
    rng = np.random.default_rng(0)
    centres = {LYRICS: rng.normal(size=384).astype(np.float32) * 0.02, COVER: rng.normal(size=1280).astype(np.float32) * 0.02}
    centres = {m: c + np.mean([v[m] for v in raw.values()], axis=0) for m, c in centres.items()}
    older_store(tmp_path / "older", themed_rows, [raw[payloads[r["id"]]] for r in themed_rows], centres)

    target = tmp_path / "target"
    for name, value in {"QDRANT_ENGINE": "edge", "QDRANT_PATH": str(target), "QDRANT_COLLECTION": "songs",
                        "SONGSPACE_CACHE_DIR": str(settings.cache_dir), "QDRANT_URL": ""}.items():
        monkeypatch.setenv(name, value)
    status, out, err = run(capsys, "migrate", "--from", str(tmp_path / "older"))
    assert status == 0, err
    assert "copied 8 songs" in out and "older Songspace" in out and "8 songs with lyrics have no words vector yet" in out
    status, out, err = run(capsys, "migrate", "--from", str(tmp_path / "older"))
    assert status == 2 and "already holds songs" in one_line_error(err)

    index = open_index(settings.__class__(engine="edge", qdrant_path=target, collection="songs"))
    try:
        for hit in index.engine.retrieve(list(raw), False, [LYRICS, COVER]):
            for m in (LYRICS, COVER):  # the encoders' vectors, recovered exactly from the centred ones
                assert np.allclose(hit.vectors[m], raw[hit.point_id][m], atol=1e-5)
        assert all(np.allclose(index.centres[m], centres[m], atol=1e-6) for m in (LYRICS, COVER))
        assert index.centring_final  # the older version's centres, frozen
    finally:
        index.close()
    from ingest.__main__ import main as ingest_main

    monkeypatch.setenv("COVER_ALLOWED_HOSTS", "127.0.0.1")
    assert ingest_main([str(write_catalogue(themed_rows)), "--no-progress"]) == 0
    assert "inserted 0  updated 8" in capsys.readouterr().out  # the words are added, nothing duplicated
    index = open_index(settings.__class__(engine="edge", qdrant_path=target, collection="songs"))
    try:
        assert index.count() == 8 and all(p.words for p in index.get(list(raw)))
    finally:
        index.close()


def open_index_payloads(settings):
    from search.index import open_index

    index = open_index(settings)
    try:
        return list(index.scroll_payloads())
    finally:
        index.close()


def test_optimize_builds_on_edge_and_says_when_the_engine_does_it_itself(stored, capsys, monkeypatch, tmp_path):
    from dataclasses import replace

    from search.index import open_index

    settings, encoders = stored
    status, out, _ = run(capsys, "optimize")
    assert status == 0 and out.strip() in {"optimized", "already optimal"}
    local = replace(settings, engine="local", qdrant_path=tmp_path / "local", qdrant_url=None)
    index = open_index(local)
    try:
        index.ensure(encoders, "a local-mode collection")
    finally:
        index.close()
    monkeypatch.setenv("QDRANT_ENGINE", "local")
    monkeypatch.setenv("QDRANT_PATH", str(local.qdrant_path))
    monkeypatch.setenv("QDRANT_URL", "")
    status, out, _ = run(capsys, "optimize")
    assert status == 0 and out.startswith("nothing to do: local mode")


def test_optimize_of_a_missing_collection_is_a_store_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("QDRANT_ENGINE", "edge")
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "store"))
    monkeypatch.setenv("QDRANT_URL", "")
    status, out, err = run(capsys, "optimize")
    assert status == 3 and out == "" and "does not exist" in one_line_error(err)


def test_status_of_an_older_collection_says_to_migrate_it(tmp_path, monkeypatch, capsys):
    import numpy as np

    from search.index import COVER, LYRICS

    rng = np.random.default_rng(1)
    vectors = [{LYRICS: (v := rng.normal(size=384).astype(np.float32)) / np.linalg.norm(v),
                COVER: (c := rng.normal(size=1280).astype(np.float32)) / np.linalg.norm(c)} for _ in range(2)]
    rows = [{"id": f"o{i}", "title": f"Old {i}", "artist": "Old Band"} for i in range(2)]
    older_store(tmp_path / "older", rows, vectors, {LYRICS: np.zeros(384, np.float32) + 0.01, COVER: np.zeros(1280, np.float32) + 0.01})
    for name, value in {"QDRANT_ENGINE": "local", "QDRANT_PATH": str(tmp_path / "older"), "QDRANT_COLLECTION": "songs",
                        "QDRANT_URL": ""}.items():
        monkeypatch.setenv(name, value)
    status, out, err = run(capsys, "status")
    assert status == 0, err
    assert "made by an older Songspace" in out and "search.store migrate" in out
