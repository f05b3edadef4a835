"""The README's main command, end to end: set up, ingest the sample once, serve the page, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.catalogue import read_catalogue
from search.index import COVER, LYRICS, open_index
from tests.conftest import store_settings
from tests.ui.browser import free_port, wait_healthy

PROJECT = Path(__file__).resolve().parents[1]
SAMPLE = PROJECT / "data" / "sample" / "hymns.csv"


def start(settings, port: int) -> tuple[subprocess.Popen, float]:
    env = {
        **os.environ,
        "QDRANT_ENGINE": settings.engine,
        "QDRANT_PATH": str(settings.qdrant_path),
        "QDRANT_COLLECTION": settings.collection,
        "SONGSPACE_CACHE_DIR": str(settings.cache_dir),
        "SONGSPACE_PORT": str(port),
        "SONGSPACE_ADDRESS": "127.0.0.1",
    }
    env.pop("QDRANT_URL", None)
    started = time.monotonic()
    process = subprocess.Popen(
        ["./start.sh"], cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    wait_healthy(f"http://127.0.0.1:{port}", process, timeout=600)
    return process, time.monotonic() - started


def stop(process: subprocess.Popen) -> str:
    os.killpg(process.pid, signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    return output


@pytest.fixture(scope="module")
def started_twice(tmp_path_factory):
    settings = store_settings("edge", tmp_path_factory.mktemp("start"))
    first, first_seconds = start(settings, free_port())
    first_output = stop(first)
    second, second_seconds = start(settings, free_port())
    second_output = stop(second)
    return settings, first_output, second_output, first_seconds, second_seconds


def test_first_run_ingests_then_serves(started_twice):
    settings, first_output, *_ = started_twice
    assert "inserted" in first_output and "rejected 0" in first_output
    assert "ingest:" in first_output and "song/s" in first_output  # the progress bar


def test_second_run_skips_ingestion(started_twice):
    _, _, second_output, first_seconds, second_seconds = started_twice
    assert "already ingested" in second_output and "inserted" not in second_output
    assert second_seconds < first_seconds


def stored(settings):
    index = open_index(settings)
    try:
        return index.get([pid for pid, _ in index.scroll_payloads()])
    finally:
        index.close()


def test_sample_gives_one_point_per_song_with_both_vectors(started_twice):
    points = stored(started_twice[0])
    songs, _ = read_catalogue(SAMPLE)
    assert len(points) == len(songs)
    assert {p.payload["song_id"] for p in points} == {s.song_id for s in songs}
    assert all(set(p.vectors) == {LYRICS, COVER} for p in points)
    assert all(p.payload["cover_generated"] for p in points)


@pytest.mark.parametrize("modality", [LYRICS, COVER])
def test_songs_of_a_category_are_closer_to_each_other(started_twice, modality):
    points = stored(started_twice[0])
    genres = np.array([p.payload["genre"] for p in points])
    vectors = np.array([p.vectors[modality] for p in points])
    similarity = vectors @ vectors.T
    same = genres[:, None] == genres[None, :]
    np.fill_diagonal(same, False)
    other = genres[:, None] != genres[None, :]
    assert similarity[same].mean() > similarity[other].mean() + 0.02
