"""Writing songs to the store beside a busy Python thread, at two GIL switch intervals.

Writing songs through the song index (centring with NumPy, building Qdrant Edge's points, Edge's
update) hands the GIL over inside Edge's bindings, as torch does inside its calls: measured apart,
beside a busy thread, building a point with its payload took 5 ms a song, the centring 0.3 ms and
the update 0.13 ms. Each release must get the GIL back to go on, and a thread that computes in
Python hands it over only every switch interval (5 ms by default). Ingestion runs
with `ingest.pipeline.SWITCH_INTERVAL_S`. This writes synthetic songs (bench/synthetic.py) in
batches of 512 alone, then beside a thread that sums numbers, at the default interval and at
ingestion's; it reports microseconds a song for each.

Run: .venv/bin/python -m bench.gil_handover [--songs 3072] [--json OUT]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from bench import synthetic
from bench.report import report
from ingest.pipeline import SWITCH_INTERVAL_S
from search.index import IndexEncoders, open_index
from search.settings import Settings

BATCH = 512


def write_seconds(songs: int, busy: bool) -> float:
    """Seconds to write `songs` synthetic songs into a fresh Edge collection, beside a busy thread or not."""
    catalogue = synthetic.generate(songs, seed=songs)
    with tempfile.TemporaryDirectory(prefix="songspace-gil-") as folder:
        index = open_index(replace(Settings(), engine="edge", qdrant_path=Path(folder), collection="gil"))
        index.ensure(IndexEncoders("all-MiniLM-L6-v2", 384, "efficientnet-lite0", 1280))
        batches = [[catalogue.point(i) for i in range(s, min(s + BATCH, songs))] for s in range(0, songs, BATCH)]
        done = threading.Event()

        def compute() -> None:
            while not done.is_set():
                sum(range(1_000))

        worker = threading.Thread(target=compute, daemon=True)
        if busy:
            worker.start()
        started = time.perf_counter()
        for batch in batches:
            index.upsert(batch)
        elapsed = time.perf_counter() - started
        done.set()
        if busy:
            worker.join()
        index.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--songs", type=int, default=3_072)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    default = sys.getswitchinterval()
    per_song = {}
    try:
        for label, interval, busy in (
            ("alone", default, False),
            (f"busy_thread_at_{default * 1000:g}_ms", default, True),
            (f"busy_thread_at_{SWITCH_INTERVAL_S * 1000:g}_ms", SWITCH_INTERVAL_S, True),
        ):
            sys.setswitchinterval(interval)
            per_song[label] = round(1e6 * write_seconds(args.songs, busy) / args.songs)
    finally:
        sys.setswitchinterval(default)
    report({"machine": f"{os.cpu_count()} cores", "songs": args.songs, "engine": "edge", "write_us_per_song": per_song}, args.json)


if __name__ == "__main__":
    main()
