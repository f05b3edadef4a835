"""Ingestion throughput against the encoders' own rate, and the cost of a re-run with nothing changed.

The machine is noisy, so encoder-only and pipeline runs alternate (`--repeats` rounds, each on a
fresh store and a fresh embedding cache) and every round is reported with the median.

Run: .venv/bin/python -m bench.ingest_throughput [CATALOGUE] [--repeats N]
(default catalogue: ../shared/data/eval-dev/paired.csv)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ingest.catalogue import read_catalogue
from ingest.context import open_songspace
from ingest.pipeline import Ingestor
from search.settings import PROJECT_ROOT, load_settings

DEFAULT = PROJECT_ROOT.parent / "shared" / "data" / "eval-dev" / "paired.csv"


def encoders_alone(songspace, catalogue: Path) -> dict[str, float]:
    """Both encoders on preloaded, preprocessed inputs: the ceiling for ingestion."""
    songs, _ = read_catalogue(catalogue)
    text, image, fetcher = songspace.embedder.text, songspace.embedder.image, songspace.fetcher
    tensors = [image.preprocess(fetcher.decode(fetcher.load(s.cover, catalogue.parent))) for s in songs if s.cover]
    started = time.perf_counter()
    text.encode([s.lyrics for s in songs if s.lyrics])
    text_seconds = time.perf_counter() - started
    started = time.perf_counter()
    image.encode_tensors(tensors)
    image_seconds = time.perf_counter() - started
    return {
        "text_songs_per_s": len(songs) / text_seconds,
        "image_songs_per_s": len(tensors) / image_seconds,
        "both_songs_per_s": len(songs) / (text_seconds + image_seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("catalogue", type=Path, nargs="?", default=DEFAULT)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rounds = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="songspace-bench-") as folder:
            settings = replace(load_settings(), qdrant_url=None, qdrant_path=Path(folder) / "q",
                               cache_dir=Path(folder) / "cache", collection="bench")
            songspace = open_songspace(settings)
            songspace.embedder.text.encode(["warm up"])
            encoders = encoders_alone(songspace, args.catalogue)
            ingestor = Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False)
            first = ingestor.run(args.catalogue)
            again = ingestor.run(args.catalogue)
            songspace.close()
        pipeline = first.read / first.elapsed_seconds
        rounds.append({
            **{f"encoders_{k}": round(v, 2) for k, v in encoders.items()},
            "pipeline_songs_per_s": round(pipeline, 2),
            "pipeline_share_of_encoders": round(pipeline / encoders["both_songs_per_s"], 3),
            "first_run_s": round(first.elapsed_seconds, 2),
            "first_run_model_s": round(first.model_seconds, 2),
            "rerun_s": round(again.elapsed_seconds, 2),
            "rerun_model_s": round(again.model_seconds, 3),
            "rerun_unchanged": again.unchanged,
        })
        print(json.dumps(rounds[-1]), flush=True)
    print(json.dumps({
        "songs": first.read,
        "median_pipeline_share_of_encoders": statistics.median(r["pipeline_share_of_encoders"] for r in rounds),
        "median_pipeline_songs_per_s": statistics.median(r["pipeline_songs_per_s"] for r in rounds),
        "median_rerun_s": statistics.median(r["rerun_s"] for r in rounds),
        "max_rerun_model_s": max(r["rerun_model_s"] for r in rounds),
    }, indent=2))


if __name__ == "__main__":
    main()
