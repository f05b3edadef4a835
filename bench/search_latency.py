"""Query latency (p50, p95), store opening time and memory at catalogue scale, on one engine.

A synthetic catalogue (bench/synthetic.py) is loaded into a fresh store. Then, in one run, two
fresh processes answer the same queries: one opens the store and asks Songspace's search (it holds
no copy of the vectors), the other computes the same rule by brute force in NumPy and SciPy over
the raw vectors. Every store answer is checked against the brute force (same top-10 scores).

Query kinds: `lyrics` (lyrics weight 1), `cover` (weight 0), `fused` (the default weight),
`fused_filtered` (plus a genre and a decade), `by_id` (the whole recommendation for a catalogue
id: lookup, seed, search), and `numpy_fused` (the brute force of `fused`).

Run: .venv/bin/python -m bench.search_latency --songs 100000 [--engine edge] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench import synthetic
from bench.report import report
from search.settings import DEFAULT_LYRICS_WEIGHT, DEFAULT_WORDS_WEIGHT, Settings

KINDS = ("lyrics", "cover", "fused", "fused_filtered", "by_id")
WEIGHTS = {"lyrics": 1.0, "cover": 0.0, "fused": DEFAULT_LYRICS_WEIGHT, "fused_filtered": DEFAULT_LYRICS_WEIGHT, "by_id": DEFAULT_LYRICS_WEIGHT}
K = 10


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p95 in milliseconds."""
    ordered = sorted(samples)
    return round(1000 * statistics.median(ordered), 2), round(1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2)


def peak_rss_mb() -> float:
    """This process's peak resident memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def plan(catalogue: synthetic.Catalogue, queries: int, seed: int = 1) -> list[dict[str, Any]]:
    """The queries both processes answer: seed songs with both modalities, and filters."""
    rng = np.random.default_rng(seed)
    both = np.flatnonzero(catalogue.has_lyrics & catalogue.has_cover & np.array([w is not None for w in catalogue.words]))
    items = []
    for kind in KINDS:
        for _ in range(queries):
            seed_song = int(rng.choice(both))
            item = {"kind": kind, "seed": seed_song}
            if kind == "fused_filtered":
                decade = int(1950 + 10 * rng.integers(0, 7))
                item["genre"] = synthetic.GENRES[int(rng.integers(0, len(synthetic.GENRES)))]
                item["years"] = [decade, decade + 9]
            items.append(item)
    return items


def serve(folder: Path) -> dict[str, Any]:
    """In a fresh process: open the store, answer the plan, report latencies, answers and memory."""
    from search.index import open_index
    from search.recommend import Filters, recommend, seed_query

    config = json.loads((folder / "config.json").read_text())
    settings = Settings(engine=config["engine"], qdrant_path=Path(config["store"]), collection="bench")
    started = time.perf_counter()
    index = open_index(settings)
    index.count()
    open_s = time.perf_counter() - started

    def answer(item: dict[str, Any]) -> list[tuple[str, float]]:
        if item["kind"] == "by_id":
            seeds = index.find("song_id", f"s{item['seed']}")
        else:
            seeds = index.get([synthetic.point_id(item["seed"])])
        filters = Filters(genres=(item["genre"],), years=tuple(item["years"])) if "genre" in item else Filters()
        query = seed_query(seeds, filters=filters)
        results = recommend(index, query, WEIGHTS[item["kind"]], K, words_weight=DEFAULT_WORDS_WEIGHT)
        return [(r.point_id, r.score) for r in results]

    items = json.loads((folder / "plan.json").read_text())
    for item in items[:3]:  # warm-up: first touches of the vector pages
        answer(item)
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    answers = []
    for item in items:
        started = time.perf_counter()
        answers.append(answer(item))
        times[item["kind"]].append(time.perf_counter() - started)
    index.close()
    return {"open_s": round(open_s, 3), "rss_mb": round(peak_rss_mb(), 1), "times": times, "answers": answers}


def brute_force(folder: Path) -> dict[str, Any]:
    """In a fresh process: the same rule by brute force over the raw vectors (NumPy, SciPy)."""
    from scipy.sparse import csr_matrix

    data = np.load(folder / "raw.npz")
    lyrics, covers = data["lyrics"].copy(), data["covers"].copy()
    has_lyrics, has_cover = data["has_lyrics"], data["has_cover"]
    first = np.arange(min(512, len(lyrics)))
    for matrix, has in ((lyrics, has_lyrics), (covers, has_cover)):
        matrix -= matrix[first[has[first]]].mean(axis=0)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix[~has] = 0.0
    words = csr_matrix((data["words_values"], data["words_indices"], data["words_indptr"]), shape=(len(lyrics), synthetic.VOCABULARY + 1))
    has_words = np.diff(data["words_indptr"]) > 0
    document_frequency = np.bincount(data["words_indices"], minlength=words.shape[1])
    idf = np.log((has_words.sum() - document_frequency + 0.5) / (document_frequency + 0.5) + 1.0)
    genres, years = data["genres"], data["years"]

    def answer(item: dict[str, Any]) -> list[tuple[int, float]]:
        i = item["seed"]
        w_l = WEIGHTS[item["kind"]]
        weights = {m: w for m, w in (("l", w_l), ("c", 1 - w_l)) if w > 0}
        b = DEFAULT_WORDS_WEIGHT if "l" in weights else 0.0
        dense = np.zeros(len(lyrics), dtype=np.float32)
        if "l" in weights:
            dense += lyrics @ (weights["l"] * (1 - b) * lyrics[i])
        if "c" in weights:
            dense += covers @ (weights["c"] * covers[i])
        eligible = np.ones(len(lyrics), dtype=bool)
        eligible[i] = False
        if "genre" in item:
            eligible &= (genres == item["genre"]) & (years >= item["years"][0]) & (years <= item["years"][1])
        score = dense.astype(np.float64)
        if b:
            terms = slice(words.indptr[i], words.indptr[i + 1])
            query = np.zeros(words.shape[1])
            query[words.indices[terms]] = words.data[terms] * idf[words.indices[terms]]
            matched = words @ query
            best = matched[eligible & has_words].max(initial=0.0)
            if best > 0:
                score = score + weights["l"] * b * matched / best
        score[~eligible] = -np.inf
        top = np.argpartition(-score, min(K, len(score) - 1))[:K]
        top = top[np.argsort(-score[top])]
        return [(int(t), float(score[t])) for t in top if np.isfinite(score[t])]

    items = json.loads((folder / "plan.json").read_text())
    for item in items[:3]:
        answer(item)
    times, answers = [], []
    for item in items:
        started = time.perf_counter()
        answers.append(answer(item))
        if item["kind"] == "fused":
            times.append(time.perf_counter() - started)
    from threadpoolctl import threadpool_info

    blas = [f"{i['internal_api']} {i['version']} {i.get('architecture', '')} x{i['num_threads']}" for i in threadpool_info()]
    return {"times": times, "answers": answers, "blas": blas}


def child(mode: str, folder: Path) -> dict[str, Any]:
    """Run `serve` or `brute_force` in a fresh interpreter and read its report."""
    out = folder / f"{mode}.json"
    # OpenBLAS core-type overrides, set on some machines here, slow NumPy down: the brute force
    # runs without them, so that the store is compared with NumPy at its fastest.
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    subprocess.run([sys.executable, "-m", "bench.search_latency", f"--{mode}", str(folder)], check=True, env=env)
    return json.loads(out.read_text())


def compare(store: list[list], brute: list[list]) -> int:
    """How many answers differ from the brute force (scores in order; ids up to ties)."""
    wrong = 0
    ids = {synthetic.point_id(i): i for answer in brute for i, _ in answer}
    for got, expected in zip(store, brute):
        got_scores, expected_scores = [s for _, s in got], [s for _, s in expected]
        same_scores = len(got) == len(expected) and np.allclose(got_scores, expected_scores, atol=2e-4)
        boundary = expected_scores[-1] if expected_scores else 0.0
        inside = {i for i, s in expected if s > boundary + 2e-4}
        if not same_scores or not inside <= {ids.get(p, -1) for p, _ in got}:
            wrong += 1
    return wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--songs", type=int, default=100_000)
    parser.add_argument("--engine", choices=["edge", "local"], default="edge")
    parser.add_argument("--queries", type=int, default=40, help="queries of each kind")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--brute-force", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve or args.brute_force:
        folder = args.serve or args.brute_force
        measured = serve(folder) if args.serve else brute_force(folder)
        (folder / ("serve.json" if args.serve else "brute-force.json")).write_text(json.dumps(measured))
        return

    with tempfile.TemporaryDirectory(prefix="songspace-bench-") as work:
        folder = Path(work)
        started = time.perf_counter()
        catalogue = synthetic.generate(args.songs)
        generated_s = time.perf_counter() - started
        settings = replace(Settings(), engine=args.engine, qdrant_path=folder / "store", collection="bench")
        index, upsert_rate = synthetic.build_store(settings, catalogue)
        index.close()
        synthetic.save(catalogue, folder / "raw.npz")
        raw_vectors_mb = (catalogue.lyrics.nbytes + catalogue.covers.nbytes) / 2**20
        (folder / "plan.json").write_text(json.dumps(plan(catalogue, args.queries)))
        (folder / "config.json").write_text(json.dumps({"engine": args.engine, "store": str(folder / "store")}))
        del catalogue
        store = child("serve", folder)
        brute = child("brute-force", folder)
    p50, p95 = {}, {}
    for kind in KINDS:
        p50[kind], p95[kind] = percentiles(store["times"][kind])
    p50["numpy_fused"], p95["numpy_fused"] = percentiles(brute["times"])
    wrong = compare(store["answers"], brute["answers"])
    results = {
        "songs": args.songs,
        "engine": args.engine,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "p50_ms": p50,
        "p95_ms": p95,
        "ratio_to_numpy_fused_p50": {k: round(p50[k] / p50["numpy_fused"], 2) for k in ("fused", "fused_filtered", "by_id")},
        "open_s": store["open_s"],
        "rss_mb": store["rss_mb"],
        "raw_vectors_mb": round(raw_vectors_mb, 1),
        "rss_target_mb": round(2 * raw_vectors_mb + 1024, 1),
        "numpy_blas": brute["blas"],
        "upsert_songs_per_s": round(upsert_rate, 1),
        "generate_s": round(generated_s, 1),
        "queries_checked": len(store["answers"]),
        "answers_differing_from_brute_force": wrong,
    }
    report(results, args.json)


if __name__ == "__main__":
    main()
