"""Synthetic catalogues at the real dimensions, for benchmarks at sizes no real data set here has.

Vectors are clustered around a shared direction, as encoder outputs are (so centring matters), at
384 dimensions for lyrics and 1280 for covers (EfficientNet-Lite0; 2048 for ResNet-50). 2% of the
songs lack lyrics and 3% a cover. Words follow a Zipf law over a 30,000-term vocabulary, about 60
distinct terms a song, as unit-length weights like the words encoder's. Payloads carry a genre
(one of 20), a year, two artists at most and a title, so filters and title search have work to do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.engines.base import SparseVector
from search.index import CENTRE_SONGS, COVER, LYRICS, IndexEncoders, SongIndex, SongPoint, open_index, song_point_id
from search.settings import Settings

GENRES = [f"genre-{i:02d}" for i in range(20)]
VOCABULARY = 30_000
WORDS = ("sea", "night", "road", "heart", "fire", "rain", "city", "river", "light", "home", "gold", "dust")


@dataclass
class Catalogue:
    """Raw (encoder-space) vectors and payloads of a synthetic catalogue."""

    lyrics: np.ndarray  # (n, 384), rows of songs without lyrics are unused
    covers: np.ndarray
    has_lyrics: np.ndarray
    has_cover: np.ndarray
    words: list[SparseVector | None]
    payloads: list[dict]

    def __len__(self) -> int:
        return len(self.payloads)

    def point(self, i: int) -> SongPoint:
        """Song `i` as ingestion would hand it to the index."""
        vectors = {}
        if self.has_lyrics[i]:
            vectors[LYRICS] = self.lyrics[i]
        if self.has_cover[i]:
            vectors[COVER] = self.covers[i]
        return SongPoint(point_id(i), self.payloads[i], vectors, self.words[i])


def point_id(i: int) -> str:
    """The point id of synthetic song `i`."""
    return song_point_id(spotify_id=None, song_id=f"s{i}", artists=[], title="")


def _clustered(rng: np.random.Generator, n: int, dim: int, clusters: int) -> np.ndarray:
    common = rng.normal(size=dim).astype(np.float32) * 2.0
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 20_000):  # in chunks, to keep the temporary arrays small
        m = min(20_000, n - start)
        block = common + centres[rng.integers(0, clusters, m)] + rng.normal(size=(m, dim)).astype(np.float32) * 1.2
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def generate(n: int, cover_dim: int = 1280, seed: int = 0) -> Catalogue:
    """A reproducible synthetic catalogue of `n` songs."""
    rng = np.random.default_rng(seed)
    lyrics, covers = _clustered(rng, n, 384, 200), _clustered(rng, n, cover_dim, 150)
    has_lyrics = rng.random(n) > 0.02
    has_cover = (rng.random(n) > 0.03) | ~has_lyrics
    words: list[SparseVector | None] = []
    for i in range(n):
        if not has_lyrics[i]:
            words.append(None)
            continue
        terms = np.unique(np.minimum(rng.zipf(1.2, size=90), VOCABULARY))
        values = rng.random(len(terms)).astype(np.float64) + 0.2
        words.append(SparseVector(tuple(int(t) for t in terms), tuple((values / np.linalg.norm(values)).tolist())))
    payloads = []
    for i in range(n):
        title = f"{WORDS[i % len(WORDS)].title()} {WORDS[(i // 12) % len(WORDS)]} {i}"
        payloads.append({
            "song_id": f"s{i}",
            "title": title,
            "artists": [f"Artist {i % 9_973}"] + ([f"Guest {i % 97}"] if i % 13 == 0 else []),
            "genre": GENRES[int(rng.integers(0, len(GENRES)))],
            "year": int(1950 + rng.integers(0, 75)),
            "source": "catalogue",
        })
    return Catalogue(lyrics, covers, has_lyrics, has_cover, words, payloads)


def build_store(settings: Settings, catalogue: Catalogue, batch: int = 512) -> tuple[SongIndex, float]:
    """Load the catalogue into a fresh collection, centred on its first 512 songs (as ingestion
    would); returns the open index and the upsert rate in songs per second."""
    index = open_index(settings)
    index.ensure(IndexEncoders("all-MiniLM-L6-v2", 384, "efficientnet-lite0", catalogue.covers.shape[1]))
    started = time.perf_counter()
    for start in range(0, len(catalogue), batch):
        index.upsert([catalogue.point(i) for i in range(start, min(start + batch, len(catalogue)))])
        if start < CENTRE_SONGS <= start + batch:
            index.recentre()
    return index, len(catalogue) / (time.perf_counter() - started)


def save(catalogue: Catalogue, path: Path) -> None:
    """Keep the raw vectors for a brute-force process (the store's process holds no copy)."""
    indptr = np.cumsum([0] + [len(w.indices) if w else 0 for w in catalogue.words])
    indices = np.concatenate([np.asarray(w.indices, dtype=np.int64) for w in catalogue.words if w])
    values = np.concatenate([np.asarray(w.values, dtype=np.float64) for w in catalogue.words if w])
    np.savez(
        path, lyrics=catalogue.lyrics, covers=catalogue.covers, has_lyrics=catalogue.has_lyrics,
        has_cover=catalogue.has_cover, words_indptr=indptr, words_indices=indices, words_values=values,
        genres=np.array([p["genre"] for p in catalogue.payloads]), years=np.array([p["year"] for p in catalogue.payloads]),
    )
