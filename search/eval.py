"""`python -m search.eval CATALOGUE --label genre`: label precision@10 of each search method.

For every song, every other song is ranked (songs by the same artist left out) and the share of
the top 10 that carry the song's label is its precision. Scores are macro-averaged over labels
(each label counts the same) and micro-averaged over songs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from search.index import COVER, LYRICS
from search.settings import load_settings

WEIGHTS = [round(0.1 * i, 1) for i in range(11)]


def precision_at_k(similarity: np.ndarray, labels: np.ndarray, artists: list[frozenset[str]], k: int) -> tuple[float, float]:
    """Macro and micro label precision@k of a full similarity matrix (rows are queries).

    Songs by the same artist (the query included) are never candidates; where fewer than k
    candidates remain, precision is over those that do.
    """
    similarity = similarity.astype(np.float64, copy=True)
    n = len(labels)
    for i in range(n):
        same_artist = [j for j in range(n) if artists[i] & artists[j] or i == j]
        similarity[i, same_artist] = -np.inf
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    valid = np.isfinite(np.take_along_axis(similarity, top, axis=1))
    hits = (labels[top] == labels[:, None]) & valid
    per_song = hits.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
    per_label = [per_song[labels == label].mean() for label in np.unique(labels)]
    return float(np.mean(per_label)), float(per_song.mean())


def cosine(matrix: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of rows (zero rows give 0)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = matrix / np.where(norms == 0, 1, norms)
    return unit @ unit.T


def evaluate(
    lyrics: np.ndarray,
    covers: np.ndarray,
    raw_lyrics: np.ndarray,
    raw_covers: np.ndarray,
    texts: list[str],
    labels: np.ndarray,
    artists: list[frozenset[str]],
    k: int = 10,
) -> dict[str, Any]:
    """Every method's precision.

    `lyrics` and `covers` are the vectors the index holds; `raw_lyrics` and `raw_covers` are the
    encoders' own output, which the original prototype concatenated (`seed_concat`).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    def score(similarity: np.ndarray) -> dict[str, float]:
        macro, micro = precision_at_k(similarity, labels, artists, k)
        return {"macro_p_at_10": round(macro, 4), "micro_p_at_10": round(micro, 4)}

    lyrics_sim, cover_sim = lyrics @ lyrics.T, covers @ covers.T
    curve = [{"lyrics_weight": w, **score(w * lyrics_sim + (1 - w) * cover_sim)} for w in WEIGHTS]
    best = max(curve, key=lambda point: point["macro_p_at_10"])
    tfidf = TfidfVectorizer(sublinear_tf=True, stop_words="english").fit_transform(texts)
    return {
        "lyrics": score(lyrics_sim),
        "cover": score(cover_sim),
        "fused": {**best, "curve": curve},
        "tfidf": score((tfidf @ tfidf.T).toarray()),
        "seed_concat": score(cosine(np.hstack([raw_lyrics, raw_covers]))),
    }


def format_table(results: dict[str, Any]) -> str:
    """The results as a Markdown table."""
    lines = ["| method | macro P@10 | micro P@10 |", "|---|---|---|"]
    for method, values in results.items():
        name = f"fused (lyrics weight {values['lyrics_weight']})" if method == "fused" else method
        lines.append(f"| {name} | {values['macro_p_at_10']:.3f} | {values['micro_p_at_10']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m search.eval", description=__doc__)
    parser.add_argument("catalogue", type=Path)
    parser.add_argument("--label", default="genre", help="payload field that holds the label")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--long-text", choices=["windows", "truncate"], help="lyrics policy to measure")
    args = parser.parse_args(argv)

    from ingest.catalogue import read_catalogue
    from ingest.context import open_songspace
    from ingest.pipeline import Ingestor

    songs, _ = read_catalogue(args.catalogue)
    full_lyrics = {song.song_id: song.lyrics or "" for song in songs}

    settings = load_settings()
    with tempfile.TemporaryDirectory(prefix="songspace-eval-") as store:
        settings = replace(
            settings, qdrant_url=None, qdrant_path=Path(store), collection="eval",
            lyrics_long_text=args.long_text or settings.lyrics_long_text,
        )
        songspace = open_songspace(settings)
        try:
            Ingestor(songspace.index, songspace.embedder, songspace.fetcher).run(args.catalogue)
            index = songspace.index
            records = index.get([point_id for point_id, _ in index.scroll_payloads([])])
            records = [r for r in records if LYRICS in r.vectors and COVER in r.vectors and r.payload.get(args.label)]
            records.sort(key=lambda r: r.payload.get("song_id") or r.point_id)
            raw = raw_cover_features(songspace, [r.payload for r in records], args.catalogue.parent)
            hashes = [r.payload["lyrics_hash"] for r in records]
            raw_lyrics_by_hash = songspace.embedder.cached(LYRICS, hashes)
            raw_lyrics = np.array([raw_lyrics_by_hash[h] for h in hashes])
        finally:
            songspace.close()
    results = evaluate(
        np.array([r.vectors[LYRICS] for r in records], dtype=np.float32),
        np.array([r.vectors[COVER] for r in records], dtype=np.float32),
        raw_lyrics,
        raw,
        [full_lyrics.get(r.payload.get("song_id"), "") for r in records],
        np.array([str(r.payload[args.label]) for r in records]),
        [frozenset(r.payload.get("artists", [])) for r in records],
    )
    print(f"{len(records)} songs with both modalities and a {args.label!r} label")
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def raw_cover_features(songspace: Any, payloads: list[dict[str, Any]], base_dir: Path) -> np.ndarray:
    """The cover encoder's features before normalisation, as the original prototype used them."""
    image = songspace.embedder.image
    tensors = []
    for payload in payloads:
        ref = payload.get("cover_path") or payload["cover_url"]
        tensors.append(image.preprocess(songspace.fetcher.decode(songspace.fetcher.load(ref, base_dir))))
    return image.features(tensors)


if __name__ == "__main__":
    sys.exit(main())
