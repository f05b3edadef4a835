"""What lifts label precision@10 on a labelled catalogue: each idea measured on its own and combined.

Ideas: the whole of long lyrics (256-token windows averaged) against truncation; centring each
modality; normalising each query's scores per modality (z-scores) before weighting; a cover
resized whole instead of centre-cropped; and pseudo-relevance feedback (each query moved towards
its top 5 fused neighbours). Embeddings come from the ingestion embedding cache where present.

Run: .venv/bin/python -m bench.quality_ideas [CATALOGUE]   (default: ../shared/data/eval-dev/paired.csv)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from torchvision import transforms

from ingest.catalogue import read_catalogue
from ingest.covers import CoverFetcher
from ingest.embedder import Embedder, bytes_hash, lyrics_hash
from ingest.embedding_cache import EmbeddingCache
from search.eval import WEIGHTS, precision_at_k
from search.index import IndexEncoders
from search.settings import PROJECT_ROOT, load_settings

DEFAULT = PROJECT_ROOT.parent / "shared" / "data" / "eval-dev" / "paired.csv"


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def centre(x: np.ndarray) -> np.ndarray:
    x = unit(x)
    return unit(x - x.mean(axis=0))


def zscore(similarity: np.ndarray) -> np.ndarray:
    return (similarity - similarity.mean(axis=1, keepdims=True)) / similarity.std(axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("catalogue", type=Path, nargs="?", default=DEFAULT)
    args = parser.parse_args()
    settings = load_settings()
    songs, _ = read_catalogue(args.catalogue)
    songs = [s for s in songs if s.lyrics and s.cover and s.genre]
    labels = np.array([s.genre for s in songs])
    artists = [frozenset(s.artists) for s in songs]
    cache = EmbeddingCache(settings.cache_dir / "embeddings.sqlite")
    fetcher = CoverFetcher(settings)
    lyrics = {}
    for policy in ("truncate", "windows"):
        embedder = Embedder(IndexEncoders("all-MiniLM-L6-v2", 384, "efficientnet-lite0", 1280, policy), settings, cache)
        found = embedder.lyrics_vectors({lyrics_hash(s.lyrics): s.lyrics for s in songs})
        lyrics[policy] = np.array([found[lyrics_hash(s.lyrics)] for s in songs])
    images = [fetcher.decode(fetcher.load(s.cover, args.catalogue.parent)) for s in songs]
    found = embedder.cover_vectors({bytes_hash(fetcher.load(s.cover, args.catalogue.parent)): embedder.image.preprocess(i) for s, i in zip(songs, images)})
    crop = np.array([found[bytes_hash(fetcher.load(s.cover, args.catalogue.parent))] for s in songs])
    whole = transforms.Compose([transforms.Resize((224, 224), interpolation=transforms.InterpolationMode.BICUBIC),
                                transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])
    no_crop = embedder.image.encode_tensors([whole(i) for i in images])
    cache.close()

    def macro(similarity: np.ndarray) -> float:
        return precision_at_k(similarity, labels, artists, 10)[0]

    def fused(l: np.ndarray, c: np.ndarray, z: bool = False, prf: int = 0) -> tuple[float, float]:
        best = (0.0, 0.0)
        for w in WEIGHTS:
            sl, sc = l @ l.T, c @ c.T
            if prf:
                masked = w * sl + (1 - w) * sc
                masked[np.array([[bool(a & b) for b in artists] for a in artists])] = -np.inf
                top = np.argsort(-masked, axis=1)[:, :prf]
                ql, qc = unit(l + l[top].mean(axis=1)), unit(c + c[top].mean(axis=1))
                sl, sc = ql @ l.T, qc @ c.T
            if z:
                sl, sc = zscore(sl), zscore(sc)
            best = max(best, (macro(w * sl + (1 - w) * sc), w))
        return best

    rows = []
    for name, l, c, options in [
        ("plain: truncated lyrics, cropped cover", unit(lyrics["truncate"]), unit(crop), {}),
        ("lyrics windows", unit(lyrics["windows"]), unit(crop), {}),
        ("centring, truncated lyrics", centre(lyrics["truncate"]), centre(crop), {}),
        ("centring + lyrics windows (shipped)", centre(lyrics["windows"]), centre(crop), {}),
        ("shipped + per-query z-scores", centre(lyrics["windows"]), centre(crop), {"z": True}),
        ("shipped + whole cover, no crop", centre(lyrics["windows"]), centre(no_crop), {}),
        ("shipped + feedback from top 5", centre(lyrics["windows"]), centre(crop), {"prf": 5}),
    ]:
        score, weight = fused(l, c, **options)
        rows.append((name, macro(l @ l.T), macro(c @ c.T), score, weight))
    print("| variant | lyrics | cover | fused (best weight) | fused - best single |")
    print("|---|---|---|---|---|")
    for name, lyr, cov, fus, w in rows:
        print(f"| {name} | {lyr:.3f} | {cov:.3f} | {fus:.3f} ({w}) | {fus - max(lyr, cov):+.3f} |")


if __name__ == "__main__":
    main()
