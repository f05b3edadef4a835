"""How close the ingestion pipeline comes to encoders of a known speed: stand-ins for a GPU.

The encoders' forward passes are replaced by stand-ins that sleep a set time per lyrics window and
per cover (a sleep releases the GIL, as waiting on a GPU does) and return unit vectors; everything
around them is real and set up as beside a GPU: reading, preparing in worker processes (hashes,
words, tokens, the GPU's JPEG path), each batch embedded in a thread of its own, the windows and
padding of each lyrics batch, the embedding cache, the store's writes. So the pipeline's own cost
shows on a machine without a GPU, as the share of the stand-ins' busy time in the run's time, and
as the CPU time of the process that feeds the encoders. `startup_s` is the
time from the run's start to the first encoder call (the workers' server starts before the
store opens, as in the command); `steady_share` leaves it out.

Run: .venv/bin/python -m bench.pipeline_overhead [--songs 3000] [--window-ms 3] [--cover-ms 2]
     [--processes 2 0] [--store-process both] [--json bench/results/pipeline_overhead.json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.ingest_throughput import DEFAULT, device_name, varied_catalogue
from bench.report import report
from ingest.catalogue import read_catalogue
from ingest.context import open_songspace
from ingest.encoders.image import CoverPreparation
from ingest.pipeline import Ingestor
from ingest.preparation import start_worker_server
from search.settings import load_settings


class StandIns:
    """Sleeping forward passes for a loaded songspace's two encoders, timed."""

    def __init__(self, songspace: Any, window_ms: float, cover_ms: float) -> None:
        self.busy_s = 0.0
        self.first_call: float | None = None
        self.rng = np.random.default_rng(0)
        text, image = songspace.embedder.text, songspace.embedder.image
        text._pooled = lambda windows, prompt_tokens: torch.from_numpy(self._wait(len(windows), window_ms, text.dim))
        image.encode_tensors = lambda tensors: self._wait(len(tensors), cover_ms, image.dim)
        image.preparation = CoverPreparation(image.transform, decodes_jpeg=True)  # a GPU's cover path

    def _wait(self, items: int, ms_each: float, dim: int) -> np.ndarray:
        if self.first_call is None:
            self.first_call = time.perf_counter()
        time.sleep(items * ms_each / 1000)
        self.busy_s += items * ms_each / 1000
        vectors = self.rng.standard_normal((items, dim)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def one_run(
    catalogue: Path, processes: int, store_process: bool, window_ms: float, cover_ms: float, batch_size: int
) -> dict[str, Any]:
    """The pipeline into a fresh embedded store, with the stand-ins."""
    with tempfile.TemporaryDirectory(prefix="songspace-bench-") as folder:
        settings = replace(load_settings(), qdrant_url=None, engine="edge", qdrant_path=Path(folder) / "q",
                           cache_dir=Path(folder) / "cache", collection="bench", device="cpu",
                           store_process=store_process)
        if processes:
            start_worker_server()  # as the command does, before the store opens and the encoders load
        songspace = open_songspace(settings)
        ingestor = Ingestor(songspace.index, songspace.embedder, songspace.fetcher, batch_size=batch_size,
                            progress=False, processes=processes, embed_aside=True)
        stand_ins = StandIns(songspace, window_ms, cover_ms)
        started, cpu = time.perf_counter(), time.process_time()
        summary = ingestor.run(catalogue)
        cpu = time.process_time() - cpu
        songspace.close()
    startup = (stand_ins.first_call or started) - started
    return {
        "prepare_processes": processes,
        "store_process": store_process,
        "songs_per_s": round(summary.read / summary.elapsed_seconds, 1),
        "stand_in_bound_songs_per_s": round(summary.read / stand_ins.busy_s, 1),
        "share": round(stand_ins.busy_s / summary.elapsed_seconds, 3),
        "startup_s": round(startup, 2),
        "steady_share": round(stand_ins.busy_s / (summary.elapsed_seconds - startup), 3),
        "main_process_cpu_ms_per_song": round(1000 * cpu / summary.read, 3),
        "elapsed_s": round(summary.elapsed_seconds, 2),
        "stages_s": {k: round(v, 2) for k, v in summary.stages.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("catalogue", type=Path, nargs="?", default=DEFAULT)
    parser.add_argument("--songs", type=int, default=3000, help="distinct songs made from the catalogue")
    parser.add_argument("--window-ms", type=float, default=3.0, help="the lyrics stand-in's time per window")
    parser.add_argument("--cover-ms", type=float, default=2.0, help="the cover stand-in's time per cover")
    parser.add_argument("--processes", type=int, nargs="+", default=[2], help="preparing processes (0: threads)")
    parser.add_argument("--store-process", choices=["no", "yes", "both"], default="no",
                        help="the store in a process of its own (yes), in this one (no), or each in turn")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="songspace-catalogue-") as folder:
        catalogue = varied_catalogue(args.catalogue, args.songs, Path(folder))
        runs = []
        for _ in range(args.repeats):
            for processes in args.processes:
                for store_process in {"no": [False], "yes": [True], "both": [False, True]}[args.store_process]:
                    runs.append(one_run(catalogue, processes, store_process, args.window_ms, args.cover_ms, args.batch_size))
                    print(runs[-1], flush=True)
        songs = len(read_catalogue(catalogue)[0])
    report({"machine": device_name("cpu"), "songs": songs, "window_ms": args.window_ms, "cover_ms": args.cover_ms,
            "batch_size": args.batch_size, "runs": runs}, args.json)


if __name__ == "__main__":
    main()
