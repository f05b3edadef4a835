"""Weighted lyrics + cover recommendations, exact for any weights, with Qdrant as the only engine.

The fused score of a song is `w_lyrics * cos_lyrics + w_cover * cos_cover`, with the weights
normalised to sum to 1. A song that lacks a modality gets nothing for it (that term is 0), so it
is ranked only on the evidence it has and is never lifted by what it lacks.

Exactness (a threshold algorithm): ask Qdrant for the top N songs of each modality, rescore the
union of both lists with the songs' stored vectors, and stop once the k-th best fused score is at
least the best score any song outside both lists could reach, `w_l * s_l(N) + w_c * s_c(N)`
(s(N) being the N-th score of a list; a song outside a list has at most that cosine there, or 0
if it lacks the vector). Otherwise N doubles. The answer is then the exact top k over the whole
(filtered) collection, whatever N was needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from qdrant_client import models

from search.index import COVER, LYRICS, MODALITIES, SongIndex, SongPoint

# Candidates whose missing vectors are fetched at a time, best bound first: small chunks let the
# k-th score rise, and stop the fetching, early.
RESOLVE_CHUNK = 16


@dataclass(frozen=True)
class Filters:
    """Optional constraints on which songs may be recommended."""

    genres: tuple[str, ...] = ()
    years: tuple[int, int] | None = None
    sources: tuple[str, ...] = ()
    exclude_artists: tuple[str, ...] = ()
    exclude_ids: tuple[str, ...] = ()

    def to_qdrant(self) -> models.Filter | None:
        """The payload constraints as a Qdrant filter (None when there are none).

        Excluded ids are left out here and dropped from the hits instead: the embedded store
        evaluates filters point by point in Python, which would dominate every query.
        """
        must: list[Any] = []
        must_not: list[Any] = []
        if self.genres:
            must.append(models.FieldCondition(key="genre", match=models.MatchAny(any=list(self.genres))))
        if self.sources:
            must.append(models.FieldCondition(key="source", match=models.MatchAny(any=list(self.sources))))
        if self.years:
            low, high = self.years
            must.append(models.FieldCondition(key="year", range=models.Range(gte=low, lte=high)))
        if self.exclude_artists:
            must_not.append(
                models.FieldCondition(key="artists", match=models.MatchAny(any=list(self.exclude_artists)))
            )
        if not must and not must_not:
            return None
        return models.Filter(must=must or None, must_not=must_not or None)


@dataclass
class Query:
    """What to look for: one unit vector per modality the seeds have, and what to leave out."""

    vectors: dict[str, np.ndarray]
    filters: Filters = field(default_factory=Filters)


@dataclass
class Recommendation:
    """One recommended song and why: its fused score and each modality's cosine (None if missing)."""

    point_id: str
    song_id: str | None
    title: str
    artists: list[str]
    score: float
    lyrics_score: float | None
    cover_score: float | None
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form printed by the command line."""
        return {
            "point_id": self.point_id,
            "song_id": self.song_id,
            "title": self.title,
            "artists": self.artists,
            "score": round(self.score, 6),
            "lyrics_score": None if self.lyrics_score is None else round(self.lyrics_score, 6),
            "cover_score": None if self.cover_score is None else round(self.cover_score, 6),
        }


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        raise ValueError("a query vector is zero: positive and negative seeds cancel out")
    return (vector / norm).astype(np.float32)


def seed_query(
    positives: list[SongPoint],
    negatives: list[SongPoint] = (),  # type: ignore[assignment]
    exclude_seed_artists: bool = False,
    filters: Filters = Filters(),
) -> Query:
    """A query from seed songs: per modality, the mean of the positives minus that of the negatives.

    A modality that no positive seed has is left out, so the search uses the others alone. The
    seeds themselves (and, if asked, their artists) are excluded from the results.
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
        vectors[modality] = _unit(vector)
    seeds = [*positives, *negatives]
    artists = sorted({a for p in positives for a in p.payload.get("artists", [])}) if exclude_seed_artists else []
    filters = replace(
        filters,
        exclude_artists=tuple(sorted({*filters.exclude_artists, *artists})),
        exclude_ids=tuple(sorted({*filters.exclude_ids, *(p.point_id for p in seeds)})),
    )
    return Query(vectors, filters)


def vectors_query(index: SongIndex, vectors: dict[str, np.ndarray], filters: Filters = Filters()) -> Query:
    """A query from a new song's encoder vectors (either or both), mapped into the index's space."""
    return Query({m: index.to_index_space(m, v) for m, v in vectors.items()}, filters)


def normalised_weights(query: Query, lyrics_weight: float, cover_weight: float | None = None) -> dict[str, float]:
    """Weights over the modalities the query has, summing to 1."""
    if cover_weight is None:
        cover_weight = 1.0 - lyrics_weight
    if lyrics_weight < 0 or cover_weight < 0:
        raise ValueError("weights must not be negative")
    raw = {LYRICS: lyrics_weight, COVER: cover_weight}
    raw = {m: w for m, w in raw.items() if m in query.vectors and w > 0}
    if not raw:  # the only weighted modality is one the seed lacks: use what the seed has
        raw = {m: 1.0 for m in query.vectors}
    total = sum(raw.values())
    return {m: w / total for m, w in raw.items()}


@dataclass
class _Scored:
    point: SongPoint
    scores: dict[str, float | None]
    fused: float


def _rescore(points: list[SongPoint], query: Query, weights: dict[str, float]) -> list[_Scored]:
    scored = []
    for point in points:
        scores: dict[str, float | None] = {}
        for modality in MODALITIES:
            vector = point.vectors.get(modality)
            q = query.vectors.get(modality)
            scores[modality] = None if vector is None or q is None else float(vector @ q)
        scored.append(_Scored(point, scores, _fused(scores, weights)))
    scored.sort(key=lambda s: -s.fused)
    return scored


def _fused(scores: dict[str, float | None], weights: dict[str, float]) -> float:
    return sum(w * (scores.get(m) or 0.0) for m, w in weights.items())


def exact_top(
    index: SongIndex, query: Query, weights: dict[str, float], k: int, start_limit: int | None = None
) -> list[_Scored]:
    """The exact top `k` songs by fused score over the filtered collection.

    A threshold algorithm with bounded random access: each weighted modality's top N comes from
    Qdrant with scores. A song in every list is scored exactly; a song in some lists has an upper
    bound (the last score of each list it is missing from), and only songs whose bound could still
    reach the top k have their missing vectors fetched. The answer stands once the k-th exact
    score is at least every remaining bound and the bound of songs outside all lists; else N grows.
    """
    if not query.vectors:
        raise ValueError("the query has neither a lyrics nor a cover vector")
    qfilter = query.filters.to_qdrant()
    excluded = set(query.filters.exclude_ids)
    limit = start_limit or max(32 * k, 512)
    while True:
        known: dict[str, dict[str, float | None]] = {}
        last: dict[str, float | None] = {}  # None: the list holds every song with that vector
        for modality in weights:
            hits = index.search(modality, query.vectors[modality], limit + len(excluded), qfilter)
            hits = [hit for hit in hits if str(hit.id) not in excluded][:limit]
            for hit in hits:
                known.setdefault(str(hit.id), {})[modality] = hit.score
            # Outside this list a song scores at most the last hit, or 0 if it lacks the vector.
            last[modality] = max(hits[-1].score, 0.0) if len(hits) == limit else None
        exact = _resolve(index, query, weights, known, last, k)
        outside = sum(w * (last[m] or 0.0) for m, w in weights.items())
        complete = all(bound is None for bound in last.values())
        if complete or (len(exact) >= k and exact[k - 1][1] >= outside):
            return _rescore(index.get([point_id for point_id, _ in exact[:k]]), query, weights)
        limit *= 4


def _resolve(
    index: SongIndex,
    query: Query,
    weights: dict[str, float],
    known: dict[str, dict[str, float | None]],
    last: dict[str, float | None],
    k: int,
) -> list[tuple[str, float]]:
    """Exact fused scores, best first, for every candidate that could be in the top k."""
    def upper(scores: dict[str, float | None]) -> float:
        return sum(w * (scores[m] or 0.0) if m in scores else w * (last[m] or 0.0) for m, w in weights.items())

    exact: dict[str, float] = {}
    partial: dict[str, float] = {}
    for point_id, scores in known.items():
        if all(m in scores or last[m] is None for m in weights):  # an exhausted list means: no vector
            exact[point_id] = upper(scores)
        else:
            partial[point_id] = upper(scores)
    pending = sorted(partial, key=lambda i: -partial[i])
    while pending:
        ranked = sorted(exact.values(), reverse=True)
        kth = ranked[k - 1] if len(ranked) >= k else -np.inf
        batch = [i for i in pending[:RESOLVE_CHUNK] if partial[i] >= kth]
        if not batch:
            break
        pending = pending[len(batch):] if len(batch) == len(pending[:RESOLVE_CHUNK]) else []
        missing = sorted({m for i in batch for m in weights if m not in known[i]})
        records = index.client.retrieve(index.collection, ids=batch, with_payload=False, with_vectors=missing)
        for record in records:
            scores = known[str(record.id)]
            vectors = record.vector if isinstance(record.vector, dict) else {}
            for modality in missing:
                if modality not in scores:
                    vector = vectors.get(modality)
                    scores[modality] = None if vector is None else float(np.asarray(vector, dtype=np.float32) @ query.vectors[modality])
            exact[str(record.id)] = upper(scores)
    return sorted(exact.items(), key=lambda item: -item[1])


def _mmr(scored: list[_Scored], weights: dict[str, float], k: int, diversity: float) -> list[_Scored]:
    """Maximal marginal relevance over a pool: trade fused score against likeness to those chosen."""
    chosen: list[_Scored] = []
    pool = list(scored)

    def likeness(a: _Scored, b: _Scored) -> float:
        total = 0.0
        for modality, weight in weights.items():
            va, vb = a.point.vectors.get(modality), b.point.vectors.get(modality)
            if va is not None and vb is not None:
                total += weight * float(va @ vb)
        return total

    while pool and len(chosen) < k:
        best = max(
            pool,
            key=lambda c: (1 - diversity) * c.fused
            - diversity * max((likeness(c, s) for s in chosen), default=0.0),
        )
        chosen.append(best)
        pool.remove(best)
    return chosen


def recommend(
    index: SongIndex,
    query: Query,
    lyrics_weight: float = 0.5,
    k: int = 10,
    diversity: float = 0.0,
    cover_weight: float | None = None,
) -> list[Recommendation]:
    """Recommend `k` songs for a query; `diversity` in [0, 1] re-ranks by MMR (0 keeps exact order)."""
    if k <= 0:
        return []
    if not 0.0 <= diversity <= 1.0:
        raise ValueError("diversity must be between 0 and 1")
    weights = normalised_weights(query, lyrics_weight, cover_weight)
    if diversity > 0:
        ranked = _mmr(exact_top(index, query, weights, 4 * k), weights, k, diversity)
    else:
        ranked = exact_top(index, query, weights, k)
    return [
        Recommendation(
            point_id=s.point.point_id,
            song_id=s.point.payload.get("song_id"),
            title=s.point.payload.get("title", ""),
            artists=list(s.point.payload.get("artists", [])),
            score=s.fused,
            lyrics_score=s.scores[LYRICS],
            cover_score=s.scores[COVER],
            payload=s.point.payload,
        )
        for s in ranked
    ]
