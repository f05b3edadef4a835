"""`python -m search.eval CATALOGUE --label genre`: label precision@10 of each search method.

The catalogue is ingested into a temporary embedded store, exactly as `python -m ingest` would
(its centres are therefore learned on the catalogue itself). Every song that has lyrics, a cover
and a label is then a query, answered by the product's own search (`recommend`, with the seed's
artists left out, so same-artist songs never count), and the share of its top 10 that carry its
label is its precision. Scores are macro-averaged over labels (each label counts the same) and
micro-averaged over songs.

`fused` is measured at the default lyrics weight, the one users get; `fused.curve` holds every
weight from 0 to 1, and `fused.oracle` the best of them, which is chosen on this very data and
so is an optimistic figure, not a product one. `tfidf` and `seed_concat` (the original
prototype's unweighted concatenation of raw encoder outputs) are baselines computed in NumPy.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from search.cli import (
    INTERRUPTED,
    OK,
    STORE,
    UNEXPECTED,
    USAGE,
    CommandError,
    CommandParser,
    catalogue_file,
    non_empty,
    run_command,
)
from search.index import COVER, LYRICS, SongIndex, SongPoint
from search.recommend import recommend, seed_query
from search.settings import DEFAULT_LYRICS_WEIGHT, LONG_TEXT_POLICIES, load_settings

if TYPE_CHECKING:
    from ingest.catalogue import Song

WEIGHTS = [round(0.1 * i, 1) for i in range(11)]
K = 10


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
    return _averages(per_song, labels)


def _averages(per_song: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    per_label = [per_song[labels == label].mean() for label in np.unique(labels)]
    return float(np.mean(per_label)), float(per_song.mean())


def _score(macro_micro: tuple[float, float]) -> dict[str, float]:
    return {"macro_p_at_10": round(macro_micro[0], 4), "micro_p_at_10": round(macro_micro[1], 4)}


def search_precision(
    index: SongIndex, queries: list[SongPoint], label: str, lyrics_weight: float, words_weight: float
) -> dict[str, float]:
    """Label precision@10 of the product's own search, each query song's artists left out."""
    labels = np.array([str(q.payload[label]) for q in queries])
    per_song = []
    for query in queries:
        results = recommend(
            index, seed_query([query], exclude_seed_artists=True), lyrics_weight, K, words_weight=words_weight
        )
        hits = sum(str(r.payload.get(label)) == str(query.payload[label]) for r in results)
        per_song.append(hits / max(len(results), 1))
    return _score(_averages(np.array(per_song), labels))


def cosine(matrix: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of rows (zero rows give 0)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = matrix / np.where(norms == 0, 1, norms)
    return unit @ unit.T


def evaluate(
    index: SongIndex,
    queries: list[SongPoint],
    label: str,
    words_weight: float,
    raw_lyrics: np.ndarray,
    raw_covers: np.ndarray,
    texts: list[str],
) -> dict[str, Any]:
    """Every method's precision; `raw_*` are the encoders' own outputs, for the prototype baseline."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    def searched(lyrics_weight: float, words: float = words_weight) -> dict[str, float]:
        return search_precision(index, queries, label, lyrics_weight, words)

    curve = [{"lyrics_weight": w, **searched(w)} for w in sorted({*WEIGHTS, DEFAULT_LYRICS_WEIGHT})]
    default = next(p for p in curve if p["lyrics_weight"] == DEFAULT_LYRICS_WEIGHT)
    labels = np.array([str(q.payload[label]) for q in queries])
    artists = [frozenset(q.payload.get("artists", [])) for q in queries]
    tfidf = TfidfVectorizer(sublinear_tf=True, stop_words="english").fit_transform(texts)
    return {
        "default_lyrics_weight": DEFAULT_LYRICS_WEIGHT,
        "words_weight": words_weight,
        "songs": len(queries),
        "lyrics": searched(1.0),
        "lyrics_dense": searched(1.0, 0.0),
        "words": searched(1.0, 1.0),
        "cover": searched(0.0),
        "fused": {**default, "curve": curve, "oracle": max(curve, key=lambda p: p["macro_p_at_10"])},
        "fused_dense": searched(DEFAULT_LYRICS_WEIGHT, 0.0),
        "tfidf": _score(precision_at_k((tfidf @ tfidf.T).toarray(), labels, artists, K)),
        "seed_concat": _score(precision_at_k(cosine(np.hstack([raw_lyrics, raw_covers])), labels, artists, K)),
    }


METHODS = {
    "lyrics": "lyrics (dense + words, as users get it at lyrics weight 1)",
    "lyrics_dense": "lyrics, dense encoder only",
    "words": "lyrics, words (BM25) only",
    "cover": "cover",
    "fused": "fused at the default lyrics weight",
    "fused_dense": "fused at the default lyrics weight, without words",
    "tfidf": "tfidf baseline",
    "seed_concat": "seed_concat baseline (the prototype)",
}


def format_table(results: dict[str, Any]) -> str:
    """The results as a Markdown table."""
    lines = ["| method | macro P@10 | micro P@10 |", "|---|---|---|"]
    for method, name in METHODS.items():
        values = results[method]
        if method == "fused":
            name = f"{name} ({values['lyrics_weight']})"
        lines.append(f"| {name} | {values['macro_p_at_10']:.3f} | {values['micro_p_at_10']:.3f} |")
    oracle = results["fused"]["oracle"]
    lines.append(
        f"| fused at the best weight of the sweep ({oracle['lyrics_weight']}; an oracle figure) "
        f"| {oracle['macro_p_at_10']:.3f} | {oracle['micro_p_at_10']:.3f} |"
    )
    return "\n".join(lines)


def build_parser() -> CommandParser:
    """The command's arguments, each checked as it is parsed."""
    parser = CommandParser(
        prog="python -m search.eval", description=__doc__, exit_codes=(OK, UNEXPECTED, USAGE, STORE, INTERRUPTED)
    )
    parser.add_argument("catalogue", type=catalogue_file, help="a catalogue whose songs have lyrics, covers and labels")
    parser.add_argument("--label", type=non_empty, default="genre", help="the song field that holds the label")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON (default: not written)")
    parser.add_argument(
        "--long-text", choices=LONG_TEXT_POLICIES, help="lyrics policy to measure (default: LYRICS_LONG_TEXT, else windows)"
    )
    return parser


def check_label(songs: list[Song], label: str, catalogue: Path) -> None:
    """A usage error unless some song of the catalogue has a value for `label`."""
    from ingest.preparation import song_payload

    fields = {key for song in songs for key in song_payload(song, "catalogue")}
    if label not in fields:
        raise CommandError(
            f"no song in {catalogue} has a {label!r} label; fields with values: {', '.join(sorted(fields))}"
        )


def run_eval(args: argparse.Namespace) -> int:
    """Run one parsed command line; returns the exit status."""
    # The pipeline's modules load torch: imported only once the arguments are known to be good.
    from ingest.catalogue import read_catalogue
    from ingest.context import open_songspace
    from ingest.pipeline import Ingestor

    settings = load_settings()
    if args.json is not None and not args.json.parent.is_dir():
        raise CommandError(f"--json {args.json}: there is no folder {args.json.parent} to write it in")
    read = read_catalogue(args.catalogue)
    check_label(read[0], args.label, args.catalogue)
    full_lyrics = {song.song_id: song.lyrics or "" for song in read[0]}
    with tempfile.TemporaryDirectory(prefix="songspace-eval-") as store:
        settings = replace(
            settings, qdrant_url=None, engine="edge", qdrant_path=Path(store), collection="eval",
            lyrics_long_text=args.long_text or settings.lyrics_long_text,
        )
        songspace = open_songspace(settings)
        try:
            Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False).run(args.catalogue, read=read)
            index = songspace.index
            points = index.get([point_id for point_id, _ in index.scroll_payloads([])])
            queries = [p for p in points if LYRICS in p.vectors and COVER in p.vectors and p.payload.get(args.label)]
            if not queries:
                raise CommandError(
                    f"no song in {args.catalogue} has lyrics, a usable cover and a {args.label!r} label: nothing to measure"
                )
            queries.sort(key=lambda p: p.payload.get("song_id") or p.point_id)
            # Only the songs that can be queries are candidates, as for the NumPy baselines.
            kept = {q.point_id for q in queries}
            index.delete([p.point_id for p in points if p.point_id not in kept])
            raw_covers = raw_cover_features(songspace, [q.payload for q in queries], args.catalogue.parent)
            hashes = [q.payload["lyrics_hash"] for q in queries]
            raw_lyrics_by_hash = songspace.embedder.cached(LYRICS, hashes)
            results = evaluate(
                index, queries, args.label, settings.words_weight,
                np.array([raw_lyrics_by_hash[h] for h in hashes]), raw_covers,
                [full_lyrics.get(q.payload.get("song_id"), "") for q in queries],
            )
        finally:
            songspace.close()
    print(f"{len(queries)} songs with both modalities and a {args.label!r} label", file=sys.stderr)
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return OK


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation command; returns the exit status."""
    return run_command(lambda: run_eval(build_parser().parse_args(argv)))


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
