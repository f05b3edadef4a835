"""Ingestion end to end: a small catalogue with bad rows, covers over loopback HTTP, re-runs and resumes."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ingest.context import open_songspace
from ingest.pipeline import Ingestor
from search.index import COVER, LYRICS, open_index
from tests.conftest import SEA_LYRICS, drop_collection, make_cover, store_settings

PROJECT = Path(__file__).resolve().parents[2]


def enriched_run(settings, catalogue: Path):
    """One ingestion run with Spotify enrichment, against the fake."""
    from ingest.spotify import SpotifyClient

    songspace = open_songspace(settings)
    try:
        ingestor = Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False)
        return ingestor.run(catalogue, spotify=SpotifyClient(settings))
    finally:
        songspace.close()


def run_ingest(settings, catalogue: Path, embed_aside: bool | None = None, **options):
    songspace = open_songspace(settings)
    try:
        ingestor = Ingestor(songspace.index, songspace.embedder, songspace.fetcher, batch_size=4, progress=False,
                            embed_aside=embed_aside)
        summary = ingestor.run(catalogue, problems_path=catalogue.parent / "problems.csv", **options)
        points = {p.payload["title"]: p for p in songspace.index.get([i for i, _ in songspace.index.scroll_payloads()])}
        return summary, points
    finally:
        songspace.close()


@pytest.fixture
def messy_catalogue(themed_rows, write_catalogue, cover_server, settings):
    server = cover_server.url
    cover_server.files["/ok.png"] = (200, "image/png", make_cover((200, 0, 0), 7))
    cover_server.files["/page.html"] = (200, "text/html", b"<html></html>")
    cover_server.files["/huge.png"] = (200, "image/png", b"\x89PNG" + b"0" * 70_000)
    extra = [
        {"id": "url-1", "title": "Over HTTP", "artist": "Web Band", "lyrics": SEA_LYRICS[0] + " again", "cover_path": f"{server}/ok.png"},
        {"id": "no-title", "title": "", "artist": "Nobody", "lyrics": SEA_LYRICS[1]},
        {"id": "empty", "title": "Nothing Usable", "artist": "Nobody", "lyrics": "la la"},
        {"id": "sea-0", "title": "Duplicate Id", "artist": "Nobody", "lyrics": SEA_LYRICS[2]},
        {"id": "c404", "title": "Cover 404", "artist": "Web Band", "lyrics": SEA_LYRICS[3] + " once more", "cover_path": f"{server}/gone.png"},
        {"id": "chtml", "title": "Cover Is A Page", "artist": "Web Band", "lyrics": SEA_LYRICS[1] + " and more", "cover_path": f"{server}/page.html"},
        {"id": "chuge", "title": "Cover Too Big", "artist": "Web Band", "lyrics": "", "cover_path": f"{server}/huge.png"},
        {"id": "nolyr", "title": "Cover Only", "artist": "Web Band", "lyrics": "", "cover_path": f"{server}/ok.png", "year": "not a year"},
    ]
    return write_catalogue(themed_rows + extra)


@pytest.fixture
def small_cap(settings):
    return replace(settings, cover_max_bytes=60_000)


def test_ingests_good_rows_reports_bad_ones_and_loses_nothing(small_cap, messy_catalogue):
    summary, points = run_ingest(small_cap, messy_catalogue)
    assert (summary.read, summary.inserted, summary.rejected) == (16, 12, 4)
    assert summary.cover_missing == 2 and summary.lyrics_missing == 1
    assert len(points) == 12
    assert set(points["Sea Song 0"].vectors) == {LYRICS, COVER}
    assert set(points["Over HTTP"].vectors) == {LYRICS, COVER}
    assert set(points["Cover 404"].vectors) == {LYRICS}  # kept without a cover, never a filler vector
    assert set(points["Cover Is A Page"].vectors) == {LYRICS}
    assert set(points["Cover Only"].vectors) == {COVER}
    payload = points["Sea Song 1"].payload
    assert payload["artists"] == ["Sea Band 1"] and payload["genre"] == "sea" and payload["year"] == 1991
    assert payload["source"] == "catalogue" and payload["song_id"] == "sea-1"
    assert len(payload["lyrics_hash"]) == 64 and len(payload["cover_hash"]) == 64
    assert "year" not in points["Cover Only"].payload

    with summary.problems_path.open() as handle:
        problems = {row["row"]: row for row in csv.DictReader(handle)}
    assert problems["10"]["reason"] == "no title"
    assert problems["11"]["outcome"] == "rejected" and "neither lyrics nor cover" in problems["11"]["reason"]
    assert problems["12"]["reason"] == "duplicate id of row 1"
    assert problems["13"]["outcome"] == "kept" and "404" in problems["13"]["reason"]
    assert problems["14"]["outcome"] == "kept" and "not an image" in problems["14"]["reason"]
    assert problems["15"]["outcome"] == "rejected" and "cap" in problems["15"]["reason"]


def test_a_catalogue_prepared_in_worker_processes_is_stored_as_in_threads(small_cap, messy_catalogue, tmp_path, monkeypatch):
    """As beside a GPU (worker processes, each batch embedded in a thread of its own, the store in a
    process of its own) and as on a CPU. Centres final after 2 songs, so that the later batches are
    written in the background, as in a large catalogue."""
    final_at_two(monkeypatch)
    monkeypatch.setattr("ingest.preparation.PROCESS_CHUNK", 3)  # several chunks a batch, put back in order
    in_threads, threads_points = run_ingest(small_cap, messy_catalogue)
    # Another store and embedding cache, so that every cover is prepared again, in the workers.
    elsewhere = replace(store_settings("edge", tmp_path / "processes"), cover_max_bytes=small_cap.cover_max_bytes,
                        prepare_processes=2, store_process=True)
    in_processes, processes_points = run_ingest(elsewhere, messy_catalogue, embed_aside=True)
    assert (in_processes.read, in_processes.inserted, in_processes.rejected, in_processes.cover_missing) == (
        in_threads.read, in_threads.inserted, in_threads.rejected, in_threads.cover_missing)
    assert [(p.row, p.outcome, p.reason) for p in in_processes.problems] == [
        (p.row, p.outcome, p.reason) for p in in_threads.problems]
    assert processes_points.keys() == threads_points.keys()
    for title, point in processes_points.items():
        alike = threads_points[title]
        assert point.payload == alike.payload, title
        assert point.vectors.keys() == alike.vectors.keys(), title
        for modality, vector in point.vectors.items():
            assert np.allclose(vector, alike.vectors[modality], atol=1e-5), (title, modality)


def test_rerun_is_idempotent_and_costs_no_model_time(small_cap, messy_catalogue, cover_server):
    run_ingest(small_cap, messy_catalogue)
    hits = dict(cover_server.hits)
    summary, points = run_ingest(small_cap, messy_catalogue)
    assert (summary.inserted, summary.updated, summary.unchanged) == (0, 0, 12)
    assert summary.model_seconds == 0.0
    assert len(points) == 12
    assert cover_server.hits["/ok.png"] == hits["/ok.png"]  # served from the disk cache


def test_changes_update_in_place_and_embed_only_what_changed(settings, themed_rows, write_catalogue):
    catalogue = write_catalogue(themed_rows)
    _, before = run_ingest(settings, catalogue)
    themed_rows[0]["genre"] = "ocean"  # payload only
    themed_rows[1]["lyrics"] = "\n\n".join(SEA_LYRICS[2:])  # new lyrics, same cover
    summary, after = run_ingest(settings, write_catalogue(themed_rows))
    assert (summary.inserted, summary.updated, summary.unchanged) == (0, 2, 6)
    assert len(after) == 8
    assert after["Sea Song 0"].payload["genre"] == "ocean"
    assert np.allclose(after["Sea Song 0"].vectors[LYRICS], before["Sea Song 0"].vectors[LYRICS])
    assert not np.allclose(after["Sea Song 1"].vectors[LYRICS], before["Sea Song 1"].vectors[LYRICS])
    assert np.allclose(after["Sea Song 1"].vectors[COVER], before["Sea Song 1"].vectors[COVER], atol=1e-6)


def test_prototype_shape_loads_as_it_is(settings, write_catalogue, cover_server):
    cover_server.files["/p.png"] = (200, "image/png", make_cover((9, 90, 9), 4))
    rows = [
        {"id": "x1", "name": "Proto One", "album_name": "Alb", "artists": "['Ann', 'Bob']", "lyrics": SEA_LYRICS[0], "album_cover": f"{cover_server.url}/p.png"},
        {"id": "x2", "name": "Proto Two", "album_name": "Alb", "artists": "['Cy']", "lyrics": SEA_LYRICS[1], "album_cover": f"{cover_server.url}/p.png"},
    ]
    summary, points = run_ingest(settings, write_catalogue(rows, "proto.parquet"))
    assert summary.inserted == 2
    assert points["Proto One"].payload["artists"] == ["Ann", "Bob"]
    assert points["Proto One"].payload["album"] == "Alb"
    assert set(points["Proto Two"].vectors) == {LYRICS, COVER}


def test_dry_run_stores_nothing(settings, themed_rows, write_catalogue):
    summary, points = run_ingest(settings, write_catalogue(themed_rows, "c.jsonl"), dry_run=True)
    assert summary.read == 8 and summary.inserted == 0 and points == {}


def ingest_command(catalogue: Path, settings, *args: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "QDRANT_ENGINE": settings.engine,
        "QDRANT_PATH": str(settings.qdrant_path),
        "QDRANT_COLLECTION": settings.collection,
        "SONGSPACE_CACHE_DIR": str(settings.cache_dir),
        "COVER_ALLOWED_HOSTS": "127.0.0.1",
    }
    if settings.qdrant_url:
        env["QDRANT_URL"] = settings.qdrant_url
    return subprocess.Popen(
        [sys.executable, "-m", "ingest", str(catalogue), "--no-progress", "--batch-size", "4", *args],
        cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def stored_songs(settings) -> list[dict]:
    index = open_index(settings)
    try:
        return [payload for _, payload in index.scroll_payloads()]
    finally:
        index.close()


def test_command_killed_while_writing_points_completes_on_rerun(settings, tmp_path, write_catalogue):
    lines = [f"{SEA_LYRICS[i % 4]} verse {i} " * 3 for i in range(60)]
    rows = [{"id": f"k{i}", "title": f"Kill {i}", "artist": f"A{i % 5}", "lyrics": text} for i, text in enumerate(lines)]
    catalogue = write_catalogue(rows)
    process = ingest_command(catalogue, settings)
    cache = settings.cache_dir / "embeddings.sqlite"
    deadline = time.time() + 120
    embedded = 0
    while time.time() < deadline and process.poll() is None:
        if cache.exists():
            try:
                embedded = sqlite3.connect(cache).execute("SELECT count(*) FROM embedding").fetchone()[0]
            except sqlite3.Error:
                embedded = 0
        if embedded >= 16:  # batches of 4: earlier batches are stored while later ones embed
            break
        time.sleep(0.02)
    assert process.poll() is None, f"the run ended before it could be killed: {process.communicate()}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    half_written = stored_songs(settings)
    assert 0 < len(half_written) < 60  # killed while points were being written

    rerun = ingest_command(catalogue, settings)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "read 60  inserted" in out
    songs = stored_songs(settings)
    assert len(songs) == 60 and len({p["song_id"] for p in songs}) == 60  # the exact count, no duplicates
    summary, points = run_ingest(settings, catalogue)
    assert len(points) == 60 and summary.unchanged == 60


def test_centring_is_never_switched_off_for_good(settings, write_catalogue, cover_server):
    rows = [{"id": f"c{i}", "title": f"Centre {i}", "artist": f"A{i % 7}", "lyrics": f"{SEA_LYRICS[i % 4]} line {i}"} for i in range(40)]
    broken = [{"id": f"b{i}", "title": f"Broken {i}", "artist": "B", "cover_url": f"{cover_server.url}/missing{i}.png"} for i in range(5)]
    run_ingest(settings, write_catalogue(broken, "broken.csv"))  # a first run whose rows are all rejected
    run_ingest(settings, write_catalogue(rows), limit=10)  # then one with too few songs to learn from
    songspace = open_songspace(settings)
    try:
        assert songspace.index.centring() == {} and songspace.index.count() == 10
    finally:
        songspace.close()
    run_ingest(settings, write_catalogue(rows))
    songspace = open_songspace(settings)
    try:
        assert songspace.index.centring() == {LYRICS: {"songs": 40, "final": False}}
        (first,) = songspace.index.find("song_id", "c0")
        raw = songspace.index.engine.retrieve([first.point_id], False, [LYRICS])[0].vectors[LYRICS]
        centred = raw - songspace.index.centres[LYRICS]
        assert np.allclose(first.vectors[LYRICS], centred / np.linalg.norm(centred), atol=1e-5)  # the early songs too
    finally:
        songspace.close()


def test_command_exit_codes(settings, tmp_path, write_catalogue):
    bad = tmp_path / "catalogue.csv"
    bad.write_bytes(b"")  # an empty file has no header: unreadable
    process = ingest_command(bad, settings)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2 and "cannot read catalogue" in err
    missing = ingest_command(tmp_path / "none.csv", settings)
    _, err = missing.communicate(timeout=300)
    assert missing.returncode == 2 and "none.csv" in err


def test_spotify_enrichment_fills_covers_and_links(online_settings, services, write_catalogue):
    from ingest.spotify import SpotifyClient
    from tests.fakes import TRACKS

    rows = [
        {"id": "e1", "title": "Harbour Lights - Remastered 2009", "artist": "The Tides", "lyrics": SEA_LYRICS[0]},
        {"id": "e2", "title": "Cafe Deja Vu", "artist": "Zoe Angstrom", "lyrics": SEA_LYRICS[1]},
        {"id": "e3", "title": "Neon Avenue", "artist": "Somebody Else", "lyrics": SEA_LYRICS[2]},
        {"id": "e4", "title": "Not On Spotify", "artist": "Nobody", "lyrics": SEA_LYRICS[3]},
    ]
    catalogue = write_catalogue(rows)
    summary, _ = run_ingest(online_settings, catalogue)  # first without Spotify: ids by catalogue id
    assert summary.inserted == 4
    songspace = open_songspace(online_settings)
    try:
        ingestor = Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False)
        summary = ingestor.run(catalogue, spotify=SpotifyClient(online_settings, disk_cache=True))
        points = {p.payload["song_id"]: p for p in songspace.index.get([i for i, _ in songspace.index.scroll_payloads()])}
    finally:
        songspace.close()
    enrichment = summary.enrichment
    assert (enrichment.matched, enrichment.missed, enrichment.ambiguous) == (2, 2, 0)
    assert len(points) == 4  # moved to Spotify identities, not duplicated
    assert points["e1"].payload["spotify_id"] == TRACKS[0].id
    assert points["e1"].payload["cover_url"].endswith("-300.png") and COVER in points["e1"].vectors
    assert points["e2"].payload["spotify_id"] == TRACKS[2].id  # accents and case do not matter
    assert "spotify_id" not in points["e3"].payload  # wrong artist: not attached
    assert any(line.startswith("spotify by id 0  matched 2  missed 2  ambiguous 0") for line in summary.lines())


def test_enrichment_in_any_order_never_makes_a_second_point(online_settings, services, write_catalogue):
    from tests.fakes import TRACKS

    rows = [
        {"id": "e1", "title": "Harbour Lights", "artist": "The Tides", "lyrics": SEA_LYRICS[0]},
        {"id": "e2", "title": "Cafe Deja Vu", "artist": "Zoe Angstrom", "lyrics": SEA_LYRICS[1]},
        {"id": "e3", "title": "Neon Avenue", "artist": "Metro Boys", "lyrics": SEA_LYRICS[2]},
    ]
    catalogue = write_catalogue(rows)

    services.faults["/v1/search"] = [(503, {}, None)] * 40  # Spotify down: nothing enriched, songs kept
    assert enriched_run(online_settings, catalogue).enrichment.not_tried == 3
    services.faults.clear()
    enriched_run(online_settings, catalogue)
    summary, points = run_ingest(online_settings, catalogue)  # then a plain run, without Spotify
    assert len(points) == 3 and summary.unchanged == 3  # enrichment is kept, never duplicated
    assert points["Harbour Lights"].payload["spotify_id"] == TRACKS[0].id
    assert COVER in points["Harbour Lights"].vectors
    assert sorted(p.payload["song_id"] for p in points.values()) == ["e1", "e2", "e3"]


@pytest.mark.parametrize("spotify_first", [False, True])
def test_songs_without_an_id_keep_one_point_whatever_the_order_of_runs(online_settings, services, write_catalogue, spotify_first):
    from tests.fakes import TRACKS

    rows = [  # no id column: each song is known by its artists and title until Spotify gives it an id
        {"title": "Harbour Lights", "artist": "The Tides", "lyrics": SEA_LYRICS[0]},
        {"title": "Cafe Deja Vu", "artist": "Zoe Angstrom", "lyrics": SEA_LYRICS[1]},
        {"title": "Not On Spotify", "artist": "Nobody", "lyrics": SEA_LYRICS[2]},
    ]
    catalogue = write_catalogue(rows)

    runs = [lambda: enriched_run(online_settings, catalogue), lambda: run_ingest(online_settings, catalogue)[0]]
    for run in runs if spotify_first else runs[::-1]:
        run()
    summary = enriched_run(online_settings, catalogue) if spotify_first else run_ingest(online_settings, catalogue)[0]
    assert summary.unchanged == 3
    stored = stored_songs(online_settings)
    assert sorted(p["title"] for p in stored) == ["Cafe Deja Vu", "Harbour Lights", "Not On Spotify"]  # none twice
    assert next(p for p in stored if p["title"] == "Harbour Lights")["spotify_id"] == TRACKS[0].id


def test_two_rows_that_spotify_matches_to_one_track_stay_two_songs(online_settings, services, write_catalogue):
    from ingest.spotify import SpotifyClient
    from tests.fakes import TRACKS

    rows = [  # both titles match the one Spotify track (version suffixes are ignored when matching)
        {"id": "h1", "title": "Harbour Lights", "artist": "The Tides", "lyrics": SEA_LYRICS[0]},
        {"id": "h2", "title": "Harbour Lights - Remastered 2009", "artist": "The Tides", "lyrics": SEA_LYRICS[1]},
    ]

    def enriched_run(rows):
        songspace = open_songspace(online_settings)
        try:
            ingestor = Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False)
            return ingestor.run(write_catalogue(rows), spotify=SpotifyClient(online_settings))
        finally:
            songspace.close()

    def holder(summary):
        (problem,) = summary.problems
        assert problem.outcome == "kept" and "not used for this one" in problem.reason
        return problem

    summary = enriched_run(rows)  # in one run: the first row keeps the track
    stored = {p["song_id"]: p for p in stored_songs(online_settings)}
    assert summary.inserted == 2 and set(stored) == {"h1", "h2"}  # neither row replaced the other
    assert stored["h1"]["spotify_id"] == TRACKS[0].id and "spotify_id" not in stored["h2"]
    assert holder(summary).song_id == "h2" and "row 1" in holder(summary).reason

    drop_collection(online_settings)
    shutil.rmtree(online_settings.qdrant_path, ignore_errors=True)
    enriched_run(rows[1:])  # the second song first, alone: it gets the track
    summary = enriched_run(rows)  # then both: the stored song keeps it, whatever the rows' order
    stored = {p["song_id"]: p for p in stored_songs(online_settings)}
    assert (summary.inserted, summary.unchanged) == (1, 1) and set(stored) == {"h1", "h2"}
    assert stored["h2"]["spotify_id"] == TRACKS[0].id and "spotify_id" not in stored["h1"]
    assert holder(summary).song_id == "h1" and "Remastered" in holder(summary).reason
    summary = enriched_run(rows[:1])  # and a run without the song that holds the track
    assert holder(summary).song_id == "h1" and {p["song_id"] for p in stored_songs(online_settings)} == {"h1", "h2"}


def test_add_stores_several_songs_at_once_each_at_its_own_point(settings):
    from ingest.catalogue import Song

    songs = [  # songs from outside a catalogue have no row of their own
        Song(row=0, title=f"Visitor Song {i}", artists=["Guest"], lyrics=SEA_LYRICS[i]) for i in range(3)
    ]
    songspace = open_songspace(settings)
    try:
        ingestor = Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False)
        summary, prepared = ingestor.add(songs, "user")
        assert summary.inserted == 3 and len({p.point_id for p in prepared}) == 3
        stored = {p.point_id: p.payload["title"] for p in songspace.index.get([p.point_id for p in prepared])}
        assert [stored[p.point_id] for p in prepared] == [s.title for s in songs]
        assert songspace.index.count() == 3
    finally:
        songspace.close()


def test_parts_together_equal_a_whole_run(tmp_path, write_catalogue):
    from ingest.pipeline import CentresNotReady, Part
    from tests.conftest import store_settings

    rows = []
    for i in range(60):
        cover = tmp_path / f"p{i}.png"
        cover.write_bytes(make_cover((20 + 3 * i, 60, 200 - 2 * i), i))
        rows.append({"id": f"p{i}", "title": f"Part Song {i}", "artist": f"A{i % 9}",
                     "lyrics": f"{SEA_LYRICS[i % 4]} and line {i} of {60 - i}", "cover_path": cover.name})
    catalogue = write_catalogue(rows)
    whole, parted = store_settings("edge", tmp_path / "whole"), store_settings("edge", tmp_path / "parted")
    run_ingest(whole, catalogue)
    songspace = open_songspace(parted)
    try:
        ingestor = Ingestor(songspace.index, songspace.embedder, songspace.fetcher, batch_size=8, progress=False)
        for early in (2, 3):  # a part that starts before part 1 has learned the centres is refused
            with pytest.raises(CentresNotReady, match="run part 1/3"):
                ingestor.run(catalogue, part=Part(early, 3))
        assert songspace.index.count() == 0  # nothing stored before the centres exist
    finally:
        songspace.close()

    songspace = open_songspace(parted)
    try:
        ingestor = Ingestor(songspace.index, songspace.embedder, songspace.fetcher, batch_size=8, progress=False)
        sizes = [ingestor.run(catalogue, part=Part(i, 3)).read for i in (1, 2, 3)]
    finally:
        songspace.close()
    assert sum(sizes) == 60 and all(10 < size < 30 for size in sizes)  # a share each, by identity

    def contents(settings):
        index = open_index(settings)
        try:
            points = index.get([i for i, _ in index.scroll_payloads()])
            return {p.point_id: p for p in points}, index.centres, index.count()
        finally:
            index.close()

    (a, centres_a, count_a), (b, centres_b, count_b) = contents(whole), contents(parted)
    assert count_a == count_b == 60 and set(a) == set(b)  # the same songs, none twice
    for modality in (LYRICS, COVER):
        assert np.allclose(centres_a[modality], centres_b[modality], atol=1e-6)
    for point_id, point in a.items():
        assert point.payload == b[point_id].payload
        for modality in (LYRICS, COVER):
            assert np.allclose(point.vectors[modality], b[point_id].vectors[modality], atol=1e-5)


def test_each_part_stores_its_share_when_the_centre_sample_is_smaller_than_the_catalogue(tmp_path, write_catalogue, monkeypatch):
    """Below CENTRE_SAMPLE songs part 1 stores the whole catalogue as its sample, so the test above
    cannot see the shares; here the sample is 40 of 60 songs and every part must store the rest."""
    import ingest.pipeline
    from ingest.pipeline import Part
    from tests.conftest import store_settings

    monkeypatch.setattr(ingest.pipeline, "CENTRE_SAMPLE", 40)
    rows = [{"id": f"q{i}", "title": f"Share Song {i}", "artist": f"A{i % 9}", "lyrics": f"{SEA_LYRICS[i % 4]} and line {i} of {60 - i}"}
            for i in range(60)]
    catalogue = write_catalogue(rows)
    settings = store_settings("edge", tmp_path / "shares")
    songspace = open_songspace(settings)
    try:
        ingestor = Ingestor(songspace.index, songspace.embedder, songspace.fetcher, batch_size=8, progress=False)
        first = ingestor.run(catalogue, part=Part(1, 3))
        after_first = songspace.index.count()
        assert 40 <= after_first < 60 and songspace.index.centres_shared
        assert songspace.index.centring() == {LYRICS: {"songs": 40, "final": True}}  # no covers: cover waits for some
        assert any("centres learned from 40 songs" in line for line in first.lines())
        rest = [ingestor.run(catalogue, part=Part(i, 3)) for i in (2, 3)]
        assert first.read + sum(r.read for r in rest) == 60
        assert sum(r.inserted for r in rest) == 60 - after_first  # the songs no earlier part stored
        payloads = [payload for _, payload in songspace.index.scroll_payloads(["song_id", "centring"])]
        assert sorted(p["song_id"] for p in payloads) == sorted(f"q{i}" for i in range(60))  # each once
        assert {p["centring"] for p in payloads} == {songspace.index.centring_version}  # all under the frozen centres
    finally:
        songspace.close()


def test_a_part_is_written_as_i_of_n():
    from ingest.pipeline import Part

    assert str(Part.parse("2/5")) == "2/5"
    for bad in ("0/3", "4/3", "1", "a/b", "1/0", "-1/2"):
        with pytest.raises(ValueError, match="I/N"):
            Part.parse(bad)


def test_the_problems_file_never_hands_a_spreadsheet_a_formula(tmp_path):
    import csv as csv_module

    from ingest.catalogue import RowProblem
    from ingest.pipeline import write_problems

    path = tmp_path / "problems.csv"
    write_problems([RowProblem(3, "=HYPERLINK(\"http://evil\")", "@SUM(A1)", "rejected", "-1 cover")], path)
    (row,) = csv_module.DictReader(path.open(encoding="utf-8"))
    assert row == {"row": "3", "song_id": "'=HYPERLINK(\"http://evil\")", "title": "'@SUM(A1)", "outcome": "rejected",
                   "reason": "'-1 cover"}


def test_batches_are_reported_once_stored_and_a_failed_background_write_stops_the_run(
    settings, themed_rows, write_catalogue, monkeypatch
):
    """With background writers, `on_batch` still means stored, and a write's error reaches the caller."""
    # Final centres from the first batch on (2 songs), so that the later batches are written in the background.
    final_at_two(monkeypatch)
    catalogue = write_catalogue(themed_rows)
    songspace = open_songspace(settings)
    try:
        index = songspace.index
        ingestor = Ingestor(index, songspace.embedder, songspace.fetcher, batch_size=2, progress=False, writers=1)
        upsert, writes = index.engine.upsert, []

        def upsert_then_fail(points):
            writes.append(len(points))
            if len(writes) == 4:  # the first batch, its rewrite under the learned centres, the second batch, then this
                raise OSError("the disk is full")
            time.sleep(0.2)  # a slow store: a batch reported before its write lands would be seen
            upsert(points)

        monkeypatch.setattr(index.engine, "upsert", upsert_then_fail)
        reported: list[tuple[int, int]] = []
        told = 0

        def on_batch(songs: int) -> None:
            nonlocal told
            told += songs
            reported.append((told, index.count()))

        with pytest.raises(OSError, match="the disk is full"):
            ingestor.run(catalogue, on_batch=on_batch)
        assert reported == [(2, 2), (4, 4)], "each batch is reported once it is in the store, never before"
    finally:
        songspace.close()


def final_at_two(monkeypatch) -> None:
    """Centres learned from 2 songs and final from then on (rather than from 32 and 512)."""
    import ingest.pipeline
    import search.index

    monkeypatch.setattr(search.index, "MIN_CENTRE_SONGS", 2)
    monkeypatch.setattr(search.index, "CENTRE_SONGS", 2)
    monkeypatch.setattr(ingest.pipeline, "CENTRE_SONGS", 2)


@pytest.mark.parametrize(("coverless", "rewritten"), [(0, 2), (3, 2 + 5)])
def test_no_more_songs_than_the_centres_need_are_stored_before_them(
    settings, themed_rows, write_catalogue, monkeypatch, coverless, rewritten
):
    """Songs stored before a centre is learned are written again under it: however large the
    batch, the songs stored up to the one that brings each modality to CENTRE_SONGS (here 2). With
    covers on every song, both centres are learned from songs 1-2 (written again); with none on
    songs 1-3, lyrics from songs 1-2 (written again), then covers from songs 4-5 (1-5 written again)."""
    final_at_two(monkeypatch)
    rows = [{**row, "cover_path": ""} if n < coverless else row for n, row in enumerate(themed_rows)]
    catalogue = write_catalogue(rows)
    songspace = open_songspace(settings)
    try:
        index = songspace.index
        written: list[str] = []
        upsert = index.engine.upsert

        def counting_upsert(points):
            written.extend(p.point_id for p in points)
            upsert(points)

        monkeypatch.setattr(index.engine, "upsert", counting_upsert)
        Ingestor(index, songspace.embedder, songspace.fetcher, batch_size=8, progress=False).run(catalogue)
        assert len(written) == len(themed_rows) + rewritten and len(set(written)) == len(themed_rows)
        assert index.centring() == {LYRICS: {"songs": 2, "final": True}, COVER: {"songs": 2, "final": True}}
        payloads = [payload for _, payload in index.scroll_payloads(["centring"])]
        assert {p["centring"] for p in payloads} == {index.centring_version} and len(payloads) == len(themed_rows)
    finally:
        songspace.close()


def test_an_interruption_drops_the_batches_queued_for_the_encoders(settings, themed_rows, write_catalogue, monkeypatch):
    """Ctrl-C (or an error) while batches wait for the encoders' thread (as beside a GPU): none
    of them starts after it."""
    final_at_two(monkeypatch)
    catalogue = write_catalogue(themed_rows)
    songspace = open_songspace(settings)
    try:
        ingestor = Ingestor(songspace.index, songspace.embedder, songspace.fetcher, batch_size=1, progress=False,
                            writers=4, embed_aside=True)
        embed, to_embed = ingestor.embed, ingestor._to_embed
        started: list[float] = []
        calls: list[int] = []
        interrupted: list[float] = []

        def slow_embed(batch):
            started.append(time.monotonic())
            time.sleep(1.0)
            return embed(batch)

        def screened(batch, summary):
            calls.append(1)
            # Song 2 is stored in step (with song 1, it teaches the centres); 3 is embedded while 4 and 5 wait.
            if len(calls) == 6:
                interrupted.append(time.monotonic())
                raise KeyboardInterrupt
            return to_embed(batch, summary)

        monkeypatch.setattr(ingestor, "embed", slow_embed)
        monkeypatch.setattr(ingestor, "_to_embed", screened)
        with pytest.raises(KeyboardInterrupt):
            ingestor.run(catalogue)
        assert len(interrupted) == 1 and len(started) >= 3 and all(t < interrupted[0] for t in started)
    finally:
        songspace.close()


def test_an_interruption_drops_the_songs_queued_for_preparing(settings, themed_rows, write_catalogue, monkeypatch):
    """Ctrl-C while songs wait to be prepared: none of them starts after it."""
    from ingest.preparation import Preparation

    catalogue = write_catalogue(themed_rows)
    songspace = open_songspace(settings)
    try:
        ingestor = Ingestor(songspace.index, songspace.embedder, songspace.fetcher, batch_size=2, workers=1, progress=False)
        prepare = Preparation.prepare
        started: list[float] = []
        interrupted: list[float] = []

        def slow_prepare(self, *args):
            started.append(time.monotonic())
            time.sleep(0.3)
            return prepare(self, *args)

        def screened(batch, problems):  # the first batch is in: the next two are queued
            interrupted.append(time.monotonic())
            raise KeyboardInterrupt

        monkeypatch.setattr(Preparation, "prepare", slow_prepare)
        monkeypatch.setattr(ingestor, "_screen", screened)
        with pytest.raises(KeyboardInterrupt):
            ingestor.run(catalogue)
        assert len(interrupted) == 1 and len(started) >= 2
        assert sum(t > interrupted[0] for t in started) == 0, "a queued song was prepared after the interruption"
    finally:
        songspace.close()


@pytest.mark.parametrize("fresh_cache", [False, True])
def test_a_re_run_that_changes_only_covers_keeps_each_songs_words(settings, themed_rows, write_catalogue, tmp_path, fresh_cache):
    """An unchanged lyric's words are not computed again on a re-run, yet a song embedded again for
    its new cover is stored with them, as BM25 makes them from its lyrics, and with its lyrics
    vector, from the cache or, when the cache lacks it (a fresh one), embedded again."""
    from ingest.encoders import words_encoder

    catalogue = write_catalogue(themed_rows)
    _, before = run_ingest(settings, catalogue)
    for i, row in enumerate(themed_rows[:3]):
        (tmp_path / str(row["cover_path"])).write_bytes(make_cover((250, 200, 10 * i), 40 + i))
    again = replace(settings, cache_dir=tmp_path / "fresh-cache") if fresh_cache else settings
    summary, points = run_ingest(again, catalogue)
    assert (summary.inserted, summary.updated, summary.unchanged) == (0, 3, len(themed_rows) - 3)
    words = words_encoder("bm25-english")
    for row in themed_rows:
        point, expected = points[str(row["title"])], words.document(str(row["lyrics"]))
        stored = dict(zip(point.words.indices, point.words.values))
        assert stored == pytest.approx(dict(zip(expected.indices, expected.values)), rel=1e-6), row["title"]  # float32 in the store
        assert set(point.vectors) == {LYRICS, COVER}
        assert np.allclose(point.vectors[LYRICS], before[str(row["title"])].vectors[LYRICS], atol=1e-5)


def test_a_re_run_of_an_unchanged_catalogue_computes_no_words(settings, themed_rows, write_catalogue, monkeypatch):
    from ingest.encoders.words import WordsEncoder

    catalogue = write_catalogue(themed_rows)
    run_ingest(settings, catalogue)
    calls: list[str] = []
    document = WordsEncoder.document
    monkeypatch.setattr(WordsEncoder, "document", lambda self, lyrics: calls.append(lyrics) or document(self, lyrics))
    summary, points = run_ingest(settings, catalogue)
    assert summary.unchanged == len(themed_rows) and calls == []
    assert all(point.words for point in points.values())


def test_a_run_hands_the_gil_over_more_often_and_then_as_before(settings, themed_rows, write_catalogue):
    # Threads that call into torch or the store wait for the GIL at every call (bench/gil_handover.py).
    before = sys.getswitchinterval()
    during: list[float] = []
    run_ingest(settings, write_catalogue(themed_rows), on_batch=lambda songs: during.append(sys.getswitchinterval()))
    assert during and all(interval < before / 10 for interval in during)
    assert sys.getswitchinterval() == before


def test_overlapping_runs_keep_the_short_interval_until_the_last_ends():
    from ingest.pipeline import _switching_often

    before = sys.getswitchinterval()
    first, second = _switching_often(), _switching_often()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert sys.getswitchinterval() < before / 10  # the second run is still under way
    second.__exit__(None, None, None)
    assert sys.getswitchinterval() == before
