"""Weighted lyrics + cover recommendations: the exact top k under one documented rule, from Qdrant.

The rule. The weights are normalised over the modalities the query has (w_l + w_c = 1), and

    score = w_l * ((1 - b) * cos_lyrics + b * words) + w_c * cos_cover

- cos_lyrics, cos_cover: cosine of the song's and the query's vectors in index space; a song (or
  query) that lacks the modality gets 0 for that term: it is ranked on the evidence it has.
- words: the BM25 word match, sum over shared terms of idf * query weight * song weight (Qdrant's
  IDF modifier), divided by the best such value among the songs the query may return; 0 for a
  song without words or when no song scores above 0.
- b: LYRICS_WORDS_WEIGHT (0.2 by default). It applies when the query has words (lyrics seeds and
  descriptions do); a query without words ranks lyrics by cosine alone.

How it is computed, exactly:
- The dense part, w_l * (1 - b) * cos_lyrics + w_c * cos_cover, is one dot-product query on each
  song's `fused` vector [lyrics, cover] (zeros where missing) with [w_l * (1 - b) * q_l, w_c * q_c]:
  an exact scan with native filters (Edge and local mode always; a server with exact=True).
- With a words part, two exact lists are read, the dense top N and the words top N. A song in one
  list gets its other score from a query restricted to its id; the answer stands once the k-th
  best score is at least the bound of every song in neither list (the dense list's last score
  plus the words list's last score, or 0 when that list holds every song sharing a word);
  otherwise N grows fourfold. Whatever N was needed, the answer is the exact top k.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from search.engines.base import Filter, HasId, Match, Range, SparseVector
from search.index import COVER, FUSED, LYRICS, MODALITIES, WORDS, SongIndex, SongPoint
from search.settings import DEFAULT_LYRICS_WEIGHT, DEFAULT_WORDS_WEIGHT


@dataclass(frozen=True)
class Filters:
    """Optional constraints on which songs may be recommended."""

    genres: tuple[str, ...] = ()
    years: tuple[int, int] | None = None
    sources: tuple[str, ...] = ()
    exclude_artists: tuple[str, ...] = ()
    exclude_ids: tuple[str, ...] = ()

    def to_filter(self) -> Filter:
        """The constraints as an engine filter (every engine evaluates it natively)."""
        must: list[Any] = []
        must_not: list[Any] = []
        if self.genres:
            must.append(Match("genre", self.genres))
        if self.sources:
            must.append(Match("source", self.sources))
        if self.years:
            must.append(Range("year", gte=self.years[0], lte=self.years[1]))
        if self.exclude_artists:
            must_not.append(Match("artists", self.exclude_artists))
        if self.exclude_ids:
            must_not.append(HasId(self.exclude_ids))
        return Filter(tuple(must), tuple(must_not))


@dataclass
class Query:
    """What to look for: a unit vector per modality the seeds have, their words, what to leave out."""

    vectors: dict[str, np.ndarray]
    words: SparseVector | None = None
    filters: Filters = field(default_factory=Filters)


@dataclass
class Recommendation:
    """One recommended song and why: its score and each part's similarity (None where missing)."""

    point_id: str
    song_id: str | None
    title: str
    artists: list[str]
    score: float
    lyrics_score: float | None
    cover_score: float | None
    words_score: float | None
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form printed by the command line."""
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 6)

        return {
            "point_id": self.point_id,
            "song_id": self.song_id,
            "title": self.title,
            "artists": self.artists,
            "score": rounded(self.score),
            "lyrics_score": rounded(self.lyrics_score),
            "cover_score": rounded(self.cover_score),
            "words_score": rounded(self.words_score),
        }


def _unit(vector: np.ndarray) -> np.ndarray | None:
    norm = float(np.linalg.norm(vector))
    return None if norm < 1e-6 else (vector / norm).astype(np.float32)


def _mean_words(points: list[SongPoint]) -> dict[int, float]:
    total: dict[int, float] = {}
    for point in points:
        for index, value in zip(point.words.indices, point.words.values):  # type: ignore[union-attr]
            total[index] = total.get(index, 0.0) + value / len(points)
    return total


def seed_query(
    positives: list[SongPoint],
    negatives: list[SongPoint] = (),  # type: ignore[assignment]
    exclude_seed_artists: bool = False,
    filters: Filters = Filters(),
) -> Query:
    """A query from seed songs: per modality, the mean of the liked songs minus that of the disliked.

    The same holds for words. A modality that no liked song has, or in which the liked and
    disliked songs cancel out, is left out, so the search uses the others alone; if none is left,
    it is a ValueError. The seeds themselves (and, if asked, the liked songs' artists) are excluded.
    """
    vectors = {}
    for modality in MODALITIES:
        liked = [p.vectors[modality] for p in positives if modality in p.vectors]
        if not liked:
            continue
        vector = np.mean(liked, axis=0)
        disliked = [p.vectors[modality] for p in negatives if modality in p.vectors]
        if disliked:
            vector = vector - np.mean(disliked, axis=0)
        unit = _unit(vector)
        if unit is not None:
            vectors[modality] = unit
    if not vectors:
        raise ValueError("the liked and disliked songs cancel out: there is nothing left to search for")
    words = None
    liked_words = [p for p in positives if p.words]
    if LYRICS in vectors and liked_words:
        weights = _mean_words(liked_words)
        disliked_words = [p for p in negatives if p.words]
        for index, value in _mean_words(disliked_words).items() if disliked_words else ():
            weights[index] = weights.get(index, 0.0) - value
        words = SparseVector.from_dict(weights) or None
    artists = sorted({a for p in positives for a in p.payload.get("artists", [])}) if exclude_seed_artists else []
    filters = replace(
        filters,
        exclude_artists=tuple(sorted({*filters.exclude_artists, *artists})),
        exclude_ids=tuple(sorted({*filters.exclude_ids, *(p.point_id for p in [*positives, *negatives])})),
    )
    return Query(vectors, words, filters)


def normalised_weights(query: Query, lyrics_weight: float) -> dict[str, float]:
    """Weights over the modalities the query has, summing to 1 (the cover's is 1 - lyrics weight)."""
    if not 0.0 <= lyrics_weight <= 1.0:
        raise ValueError("the lyrics weight must be between 0 and 1")
    raw = {LYRICS: lyrics_weight, COVER: 1.0 - lyrics_weight}
    raw = {m: w for m, w in raw.items() if m in query.vectors and w > 0}
    if not raw:  # the only weighted modality is one the query lacks: use what the query has
        raw = {m: 1.0 for m in query.vectors}
    total = sum(raw.values())
    return {m: w / total for m, w in raw.items()}


@dataclass(frozen=True)
class Ranked:
    """A song's exact score under the rule, and its normalised words match (None if not used)."""

    point_id: str
    score: float
    words: float | None


def exact_top(
    index: SongIndex,
    query: Query,
    weights: dict[str, float],
    k: int,
    words_weight: float = DEFAULT_WORDS_WEIGHT,
    start_limit: int | None = None,
) -> list[Ranked]:
    """The exact top `k` songs by the rule, best first, over the filtered collection."""
    if not query.vectors:
        raise ValueError("the query has neither a lyrics nor a cover vector")
    where = query.filters.to_filter()
    b = words_weight if (query.words and LYRICS in weights) else 0.0
    dense_query = index.fused_vector(
        {m: w * (1.0 - b if m == LYRICS else 1.0) * query.vectors[m] for m, w in weights.items()}
    )
    if b == 0.0:
        return [Ranked(h.point_id, h.score, None) for h in index.query(FUSED, dense_query, k, where)]
    limit = start_limit or max(32 * k, 512)
    while True:
        dense_hits = index.query(FUSED, dense_query, limit, where)
        word_hits = index.query(WORDS, query.words, limit, where)  # type: ignore[arg-type]
        best_words = word_hits[0].score if word_hits else 0.0
        if best_words <= 0.0:  # no song shares a word with the query: the words term is 0 for all
            hits = dense_hits if limit >= k else index.query(FUSED, dense_query, k, where)
            return [Ranked(h.point_id, h.score, None) for h in hits[:k]]
        lists = _Lists(dense_hits, word_hits, limit, b * weights[LYRICS] / best_words)
        lists.resolve(index, dense_query, query.words, where, k)  # type: ignore[arg-type]
        scored = sorted(
            (Ranked(i, d + lists.scale * w, w / best_words) for i, (d, w) in lists.exact.items()),
            key=lambda r: -r.score,
        )[:k]
        # Every song the filter admits has a fused vector, so a complete dense list holds them all.
        if lists.dense_complete or (len(scored) >= k and scored[k - 1].score >= lists.outside):
            return scored
        limit *= 4


class _Lists:
    """The dense and words top lists of one round, and the songs' exact or bounded scores.

    A song in both lists (or in the dense list when the words list holds every song sharing a
    word) is scored exactly. A song in one list only has an upper bound, the other list's last
    score; only songs whose bound could still reach the top k have that part fetched, best bound
    first, in small chunks so that the k-th score rises and stops the fetching early.
    """

    CHUNK = 16

    def __init__(self, dense_hits: list, word_hits: list, limit: int, scale: float) -> None:
        self.scale = scale
        self.dense_complete, self.words_complete = len(dense_hits) < limit, len(word_hits) < limit
        self.dense_last = dense_hits[-1].score if dense_hits else 0.0
        # Outside the words list a song shares no word (0) or scores at most the list's last.
        self.words_last = 0.0 if self.words_complete else max(word_hits[-1].score, 0.0)
        dense = {h.point_id: h.score for h in dense_hits}
        words = {h.point_id: h.score for h in word_hits}
        self.exact: dict[str, tuple[float, float]] = {}
        self.need_words: dict[str, float] = {}  # dense part known
        self.need_dense: dict[str, float] = {}  # words part known
        for i, d in dense.items():
            if i in words or self.words_complete:
                self.exact[i] = (d, words.get(i, 0.0))
            else:
                self.need_words[i] = d
        if not self.dense_complete:
            self.need_dense = {i: w for i, w in words.items() if i not in dense}

    @property
    def outside(self) -> float:
        """The best score a song in neither list could have."""
        return self.dense_last + self.scale * self.words_last

    def resolve(self, index: SongIndex, dense_query: np.ndarray, words_query: SparseVector, where: Filter, k: int) -> None:
        """Fetch the missing part of every song that could still make the top k."""
        bounds = [(d + self.scale * self.words_last, i, WORDS) for i, d in self.need_words.items()]
        bounds += [(self.dense_last + self.scale * w, i, FUSED) for i, w in self.need_dense.items()]
        bounds.sort(reverse=True)
        while bounds:
            ranked = sorted((d + self.scale * w for d, w in self.exact.values()), reverse=True)
            kth = ranked[k - 1] if len(ranked) >= k else -np.inf
            chunk = [item for item in bounds[: self.CHUNK] if item[0] >= kth]
            if not chunk:
                return
            bounds = bounds[len(chunk):] if len(chunk) == len(bounds[: self.CHUNK]) else []
            for using in (WORDS, FUSED):
                ids = tuple(i for _, i, u in chunk if u == using)
                if not ids:
                    continue
                vector = words_query if using == WORDS else dense_query
                found = {h.point_id: h.score for h in index.query(using, vector, len(ids), where.also(must=(HasId(ids),)))}
                for i in ids:
                    if using == WORDS:  # not returned: the song shares no word with the query
                        self.exact[i] = (self.need_words[i], found.get(i, 0.0))
                    elif i in found:
                        self.exact[i] = (found[i], self.need_dense[i])


def _cosine(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    return None if a is None or b is None else float(a @ b)


def _mmr(pool: list[Ranked], points: dict[str, SongPoint], weights: dict[str, float], k: int, diversity: float) -> list[Ranked]:
    """Maximal marginal relevance: trade each song's score against its likeness to those chosen."""
    chosen: list[Ranked] = []
    remaining = list(pool)

    def likeness(a: Ranked, b: Ranked) -> float:
        va, vb = points[a.point_id].vectors, points[b.point_id].vectors
        return sum(w * (_cosine(va.get(m), vb.get(m)) or 0.0) for m, w in weights.items())

    while remaining and len(chosen) < k:
        best = max(
            remaining,
            key=lambda c: (1 - diversity) * c.score - diversity * max((likeness(c, s) for s in chosen), default=0.0),
        )
        chosen.append(best)
        remaining.remove(best)
    return chosen


def recommend(
    index: SongIndex,
    query: Query,
    lyrics_weight: float = DEFAULT_LYRICS_WEIGHT,
    k: int = 10,
    diversity: float = 0.0,
    words_weight: float = DEFAULT_WORDS_WEIGHT,
) -> list[Recommendation]:
    """Recommend `k` songs for a query; `diversity` in [0, 1] re-ranks by MMR (0 keeps exact order)."""
    if k < 1:
        raise ValueError("k must be at least 1")
    if not 0.0 <= diversity <= 1.0:
        raise ValueError("diversity must be between 0 and 1")
    if not 0.0 <= words_weight <= 1.0:
        raise ValueError("the words weight must be between 0 and 1")
    weights = normalised_weights(query, lyrics_weight)
    ranked = exact_top(index, query, weights, 4 * k if diversity > 0 else k, words_weight)
    points = {p.point_id: p for p in index.get([r.point_id for r in ranked])}
    ranked = [r for r in ranked if r.point_id in points]  # a song deleted meanwhile is dropped
    if diversity > 0:
        ranked = _mmr(ranked, points, weights, k, diversity)
    results = []
    for r in ranked:
        point = points[r.point_id]
        results.append(
            Recommendation(
                point_id=r.point_id,
                song_id=point.payload.get("song_id"),
                title=point.payload.get("title", ""),
                artists=list(point.payload.get("artists", [])),
                score=r.score,
                lyrics_score=_cosine(point.vectors.get(LYRICS), query.vectors.get(LYRICS)),
                cover_score=_cosine(point.vectors.get(COVER), query.vectors.get(COVER)),
                words_score=r.words if point.words else None,
                payload=point.payload,
            )
        )
    return results
