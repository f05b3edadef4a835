"""Recall@10 and latency of the fused query under HNSW and int8 quantization, on Qdrant Edge.

Edge is the server's engine in-process, so this is how a server's approximate search (SEARCH_MODE=
approximate) behaves on the same vectors. A synthetic catalogue (bench/synthetic.py) is loaded
with the ranking vector configured for HNSW (QDRANT_HNSW_M, QDRANT_HNSW_EF_CONSTRUCT) and, in one
variant, int8 scalar quantization; `optimize()` builds the graph. The same seed queries (default
lyrics weight, words included) are answered exactly and approximately at several `hnsw_ef`, and
recall@10 is the share of the exact top 10 that the approximate top 10 holds.

Run: .venv/bin/python -m bench.search_recall --songs 100000 [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench import synthetic
from search.index import open_index
from search.recommend import recommend, seed_query
from search.settings import DEFAULT_LYRICS_WEIGHT, DEFAULT_WORDS_WEIGHT, Settings

K = 10


def answers(settings: Settings, seeds: list[int], words_weight: float) -> tuple[list[list[str]], list[float]]:
    """The top 10 of each seed's query, and each query's time."""
    index = open_index(settings)
    try:
        for seed in seeds[:3]:  # warm-up
            recommend(index, seed_query(index.get([synthetic.point_id(seed)])), DEFAULT_LYRICS_WEIGHT, K)
        tops, times = [], []
        for seed in seeds:
            query = seed_query(index.get([synthetic.point_id(seed)]))
            started = time.perf_counter()
            results = recommend(index, query, DEFAULT_LYRICS_WEIGHT, K, words_weight=words_weight)
            times.append(time.perf_counter() - started)
            tops.append([r.point_id for r in results])
        return tops, times
    finally:
        index.close()


def variant(catalogue: synthetic.Catalogue, base: Settings, quantization: str, efs: list[int], seeds: list[int]) -> dict[str, Any]:
    """Load, build HNSW, and compare approximate answers at each ef with exact ones."""
    settings = replace(base, quantization=quantization, search_mode="approximate")
    index, upsert_rate = synthetic.build_store(settings, catalogue)
    started = time.perf_counter()
    index.optimize()
    build_s = time.perf_counter() - started
    index.close()
    rows = []
    # With words, the search reads top-512 lists, so HNSW's ef matters little; without words (a
    # words weight of 0, or a cover-only query) one top-10 HNSW search answers.
    for query_kind, words_weight in (("dense_only", 0.0), ("with_words", DEFAULT_WORDS_WEIGHT)):
        exact, exact_times = answers(replace(settings, search_mode="exact"), seeds, words_weight)
        for ef in efs:
            approximate, times = answers(replace(settings, hnsw_ef=ef), seeds, words_weight)
            recall = [len(set(a) & set(e)) / len(e) for a, e in zip(approximate, exact) if e]
            rows.append({
                "query": query_kind,
                "hnsw_ef": ef,
                "recall_at_10": round(float(np.mean(recall)), 4),
                "recall_at_10_min": round(float(np.min(recall)), 2),
                "p50_ms": round(1000 * statistics.median(times), 2),
                "exact_p50_ms": round(1000 * statistics.median(exact_times), 2),
            })
    return {
        "quantization": quantization,
        "hnsw_m": settings.hnsw_m,
        "hnsw_ef_construct": settings.hnsw_ef_construct,
        "upsert_songs_per_s": round(upsert_rate, 1),
        "build_s": round(build_s, 1),
        "by_ef": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--songs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--ef", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--quantization", nargs="+", default=["int8", "none"], choices=["int8", "none"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    catalogue = synthetic.generate(args.songs)
    rng = np.random.default_rng(2)
    both = np.flatnonzero(catalogue.has_lyrics & catalogue.has_cover)
    seeds = [int(s) for s in rng.choice(both, size=args.queries, replace=False)]
    results: dict[str, Any] = {
        "songs": args.songs,
        "engine": "edge",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "variants": [],
    }
    for quantization in args.quantization:
        with tempfile.TemporaryDirectory(prefix="songspace-recall-") as folder:
            base = replace(Settings(), engine="edge", qdrant_path=Path(folder), collection="bench")
            results["variants"].append(variant(catalogue, base, quantization, args.ef, seeds))
            print(json.dumps(results["variants"][-1], indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
