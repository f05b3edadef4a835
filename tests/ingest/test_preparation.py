"""Worker processes prepare songs as worker threads do (a catalogue end to end: tests/ingest/test_pipeline.py)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ingest.catalogue import read_catalogue
from ingest.context import open_songspace
from ingest.encoders.image import CoverPreparation
from ingest.preparation import Preparation, preparing, worker_processes
from tests.conftest import SEA_LYRICS, make_cover, outlived, store_settings

PROJECT = Path(__file__).resolve().parents[2]


def test_worker_processes_hand_back_covers_as_a_gpu_takes_them(tmp_path, write_catalogue):
    """JPEGs as their bytes, other covers preprocessed: exactly what threads hand back."""
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(make_cover((20, 60, 200), 3, size=200))).convert("RGB").save(jpeg, "JPEG")
    (tmp_path / "a.jpg").write_bytes(jpeg.getvalue())
    (tmp_path / "b.png").write_bytes(make_cover((90, 90, 90), 4))
    (tmp_path / "c.jpg").write_bytes(jpeg.getvalue()[:300])  # cut short: refused in its own row
    rows = [{"id": f"s{i}", "title": f"Song {i}", "artist": "Band", "lyrics": SEA_LYRICS[i], "cover_path": name}
            for i, name in enumerate(["a.jpg", "b.png", "c.jpg"])]
    songs, _ = read_catalogue(write_catalogue(rows))
    songspace = open_songspace(store_settings("edge", tmp_path))
    try:
        covers = CoverPreparation(songspace.embedder.image.transform, decodes_jpeg=True)
        text = songspace.embedder.text
        preparation = Preparation(songspace.embedder, songspace.fetcher, text.preparation, covers)
        songs_with_ids = [(song, (f"id-{song.row}", None)) for song in songs]
        prepared = {}
        for processes in (0, 2):
            with preparing(preparation, threads=2, processes=processes) as start:
                prepared[processes] = start(songs_with_ids, tmp_path, "catalogue")()
        # Tokenised in a worker process, lyrics embed as they do from their text.
        from_tokens = text.encode_passages([p.lyrics_tokens for p in prepared[2]])
        from_text = text.encode([song.lyrics for song in songs])
    finally:
        songspace.close()
    in_threads, in_processes = prepared[0], prepared[2]
    assert all(a.lyrics_tokens.tolist() == b.lyrics_tokens.tolist() for a, b in zip(in_processes, in_threads))
    assert np.allclose(from_tokens, from_text, atol=1e-6)
    assert [p.payload for p in in_processes] == [p.payload for p in in_threads]
    assert [p.cover_problem for p in in_processes] == [p.cover_problem for p in in_threads]
    assert in_processes[2].cover_problem and in_processes[2].cover_tensor is None
    jpeg_bytes, png_pixels = in_processes[0].cover_tensor, in_processes[1].cover_tensor
    assert jpeg_bytes.dtype == torch.uint8 and bytes(jpeg_bytes.numpy()) == jpeg.getvalue()
    assert png_pixels.dtype == torch.float32 and tuple(png_pixels.shape) == (3, 224, 224)
    assert torch.equal(png_pixels, in_threads[1].cover_tensor)
    assert in_processes[0].words == in_threads[0].words and in_processes[0].words is not None


def test_worker_processes_are_one_per_core_but_two_beside_a_gpu_and_none_on_a_cpu(monkeypatch):
    from ingest.encoders.base import RUNTIMES
    from search.settings import Settings

    assert worker_processes(Settings(device="cpu")) == 0
    assert worker_processes(Settings(device="cpu", prepare_processes=3)) == 3
    monkeypatch.setattr("ingest.preparation.resolve_runtime", lambda device: RUNTIMES["cuda"])
    for cores, expected in ((16, 14), (3, 1), (1, 1)):
        monkeypatch.setattr("os.sched_getaffinity", lambda pid, cores=cores: set(range(cores)))
        assert worker_processes(Settings(device="auto")) == expected
    assert worker_processes(Settings(device="auto", prepare_processes=0)) == 0


def children(pid: int) -> set[int]:
    """The processes started by process `pid`, and theirs (Linux)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children_file = task / "children"
        if children_file.is_file():
            found.update(int(child) for child in children_file.read_text().split())
    return found | {grandchild for child in found for grandchild in children(child)}


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_a_killed_ingestion_leaves_no_worker_behind(tmp_path, write_catalogue):
    rows = [{"id": f"s{i}", "title": f"Song {i}", "artist": "Band", "lyrics": SEA_LYRICS[i % 4] + f" {i}"} for i in range(64)]
    catalogue = write_catalogue(rows)
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from ingest.catalogue import read_catalogue\n"
        "from ingest.context import open_songspace\n"
        "from ingest.preparation import Preparation, preparing\n"
        "from tests.conftest import store_settings\n"
        "def main():\n"
        f"    songspace = open_songspace(store_settings('edge', Path({str(tmp_path)!r})))\n"
        f"    songs, _ = read_catalogue(Path({str(catalogue)!r}))\n"
        "    with preparing(Preparation(songspace.embedder, songspace.fetcher, None, None), 2, 2) as start:\n"
        "        start([(song, (str(song.row), None)) for song in songs], None, 'catalogue')()\n"
        "        print('prepared', flush=True)\n"
        "        time.sleep(600)\n"
        "if __name__ == '__main__':\n"
        "    main()\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "prepared"
        workers = children(process.pid)
        assert len(workers) >= 3  # the fork server and two workers (and perhaps a resource tracker)
    finally:
        process.kill()
        process.wait()
    assert not outlived(workers)
