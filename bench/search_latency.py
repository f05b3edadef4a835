"""Query latency (p50, p95) of each query kind on the embedded store at 1k, 10k and 20k songs.

Vectors are synthetic but clustered, at the real dimensions (384-d lyrics, and the cover encoder's
size: 1280 for efficientnet-lite0, 2048 for resnet50). A NumPy brute-force fused ranking over the
same vectors is timed for reference, and the exact fused query's time is split into its parts.

Run: .venv/bin/python -m bench.search_latency [--sizes 1000 10000 20000] [--cover-dim 1280] [--queries 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from search.index import COVER, LYRICS, IndexEncoders, SongIndex, SongPoint, connect, song_point_id
from search.recommend import Filters, Query, recommend, seed_query
from search.settings import Settings

GENRES = ["rock", "pop", "country", "hiphop", "electronic"]


def clustered(rng: np.random.Generator, n: int, dim: int, clusters: int) -> np.ndarray:
    centres = rng.normal(size=(clusters, dim))
    vectors = centres[rng.integers(0, clusters, n)] * 0.6 + rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(1000 * statistics.median(ordered), 1),
            "p95_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 20000])
    parser.add_argument("--cover-dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    total = max(args.sizes)
    lyrics, covers = clustered(rng, total, 384, 40), clustered(rng, total, args.cover_dim, 30)
    has_cover = rng.random(total) > 0.03
    report = {}
    with tempfile.TemporaryDirectory(prefix="songspace-bench-") as folder:
        index = SongIndex(connect(Settings(qdrant_path=Path(folder))), "bench")
        index.ensure(IndexEncoders("t", 384, "i", args.cover_dim))
        index.set_centres({})
        stored = 0
        for size in sorted(args.sizes):
            points = [
                SongPoint(
                    song_point_id(spotify_id=None, song_id=f"s{i}", artists=[], title=""),
                    {"song_id": f"s{i}", "title": f"Song {i}", "artists": [f"Artist {i % 2000}"],
                     "genre": GENRES[i % 5], "year": 1960 + i % 60, "source": "catalogue"},
                    {LYRICS: lyrics[i], **({COVER: covers[i]} if has_cover[i] else {})},
                )
                for i in range(stored, size)
            ]
            for start in range(0, len(points), 500):
                index.upsert(points[start : start + 500])
            stored = size
            report[size] = measure(index, lyrics[:size], covers[:size], has_cover[:size], rng, args.queries)
            print(json.dumps({"songs": size, **report[size]}), flush=True)
        index.client.close()
    print(json.dumps(report, indent=2))


def measure(index, lyrics, covers, has_cover, rng, queries: int) -> dict:
    seeds = [int(i) for i in rng.choice(np.flatnonzero(has_cover), queries, replace=False)]
    timings: dict[str, list[float]] = defaultdict(list)
    parts: dict[str, float] = defaultdict(float)
    original_search, original_get = index.search, index.get

    def timed(name, function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                parts[name] += time.perf_counter() - started
        return wrapper

    for i in seeds:
        seed = SongPoint(song_point_id(spotify_id=None, song_id=f"s{i}", artists=[], title=""), {"artists": []},
                         {LYRICS: lyrics[i], COVER: covers[i]})
        query = seed_query([seed])

        def clock(kind, call):
            started = time.perf_counter()
            call()
            timings[kind].append(time.perf_counter() - started)

        clock("qdrant_lyrics_query", lambda: index.search(LYRICS, query.vectors[LYRICS], 10, query.filters.to_qdrant()))
        clock("qdrant_cover_query", lambda: index.search(COVER, query.vectors[COVER], 10, query.filters.to_qdrant()))
        clock("lyrics_only", lambda: recommend(index, query, 1.0, 10))
        clock("cover_only", lambda: recommend(index, query, 0.0, 10))
        index.search, index.get = timed("search", original_search), timed("retrieve", original_get)
        clock("fused_exact_w0.5", lambda: recommend(index, query, 0.5, 10))
        index.search, index.get = original_search, original_get
        clock("fused_exact_w0.7", lambda: recommend(index, query, 0.7, 10))
        filtered = Query(query.vectors, Filters(genres=("rock",), years=(1970, 1999), exclude_ids=query.filters.exclude_ids))
        clock("fused_filtered", lambda: recommend(index, filtered, 0.5, 10))
        clock("text_lyrics_vector", lambda: recommend(index, Query({LYRICS: query.vectors[LYRICS]}), 0.5, 10))
        clock("by_song_id", lambda: recommend(index, seed_query(index.find("song_id", f"s{i}")), 0.5, 10))
        clock("fused_mmr", lambda: recommend(index, query, 0.5, 10, diversity=0.3))

        def brute_force():
            scores = 0.5 * (lyrics @ lyrics[i]) + 0.5 * np.where(has_cover, covers @ covers[i], 0.0)
            np.argpartition(-scores, 11)[:11]

        clock("numpy_brute_force", brute_force)
    result = {kind: percentiles(samples) for kind, samples in timings.items()}
    single = result["qdrant_lyrics_query"]["p50_ms"] + result["qdrant_cover_query"]["p50_ms"]
    result["fused_over_single_queries"] = round(result["fused_exact_w0.5"]["p50_ms"] / single, 2)
    spent = sum(timings["fused_exact_w0.5"])
    result["fused_time_split"] = {
        "qdrant_searches": round(parts["search"] / spent, 2),
        "retrieve_vectors": round(parts["retrieve"] / spent, 2),
        "rescoring_and_rest": round(1 - (parts["search"] + parts["retrieve"]) / spent, 2),
    }
    return result


if __name__ == "__main__":
    main()
