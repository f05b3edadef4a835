"""Weighted search: exact against a NumPy brute force, missing modalities, filters, seeds, diversity."""

from __future__ import annotations

import numpy as np
import pytest

from search.index import COVER, LYRICS, IndexEncoders, SongIndex, SongPoint, connect, song_point_id
from tests.conftest import STORES, drop_collection, store_settings
from search.recommend import Filters, Query, exact_top, normalised_weights, recommend, seed_query, vectors_query

N_SONGS = 2000
DIMS = {LYRICS: 384, COVER: 1280}
GENRES = ["rock", "pop", "country", "hiphop", "jazz"]


def clustered(rng: np.random.Generator, n: int, dim: int, clusters: int) -> np.ndarray:
    centres = rng.normal(size=(clusters, dim))
    vectors = centres[rng.integers(0, clusters, n)] * 0.6 + rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def catalogue():
    """2,000 songs with clustered vectors; 5% lack a cover and 5% lack lyrics."""
    rng = np.random.default_rng(7)
    lyrics = clustered(rng, N_SONGS, DIMS[LYRICS], 12)
    covers = clustered(rng, N_SONGS, DIMS[COVER], 9)
    has_lyrics = rng.random(N_SONGS) > 0.05
    has_cover = (rng.random(N_SONGS) > 0.05) | ~has_lyrics
    points = []
    for i in range(N_SONGS):
        vectors = {}
        if has_lyrics[i]:
            vectors[LYRICS] = lyrics[i]
        if has_cover[i]:
            vectors[COVER] = covers[i]
        payload = {
            "song_id": f"s{i}",
            "title": f"Song {i}",
            "artists": [f"Artist {i % 300}"],
            "genre": GENRES[i % 5],
            "year": 1960 + i % 60,
            "source": "catalogue" if i % 10 else "user",
        }
        points.append(SongPoint(song_point_id(spotify_id=None, song_id=f"s{i}", artists=[], title=""), payload, vectors))
    return points


@pytest.fixture(scope="module", params=STORES)
def index(request, tmp_path_factory, catalogue):
    settings = store_settings(request.param, tmp_path_factory.mktemp("store"))
    index = SongIndex(connect(settings), settings.collection)
    index.ensure(IndexEncoders("t", DIMS[LYRICS], "i", DIMS[COVER]))
    index.set_centres({})
    for start in range(0, N_SONGS, 500):
        index.upsert(catalogue[start : start + 500])
    yield index
    index.client.close()
    drop_collection(settings)


def brute_force(catalogue, query: Query, weights: dict[str, float], allowed=lambda p: True) -> list[tuple[str, float]]:
    """Fused scores over every song in NumPy: a missing modality adds nothing."""
    ids, scores = [], []
    excluded = set(query.filters.exclude_ids)
    for point in catalogue:
        if point.point_id in excluded or not allowed(point):
            continue
        if not any(m in point.vectors for m in weights):
            continue
        ids.append(point.point_id)
        scores.append(sum(w * float(point.vectors[m] @ query.vectors[m]) for m, w in weights.items() if m in point.vectors))
    order = np.argsort(-np.array(scores), kind="stable")
    return [(ids[i], scores[i]) for i in order]


def assert_same_top(results, expected, k=10):
    got = [(r.point_id, r.score) for r in results]
    assert len(got) == min(k, len(expected))
    assert np.allclose([s for _, s in got], [s for _, s in expected[:k]], atol=1e-5)
    boundary = expected[k - 1][1] if len(expected) >= k else -np.inf
    strictly_inside = {i for i, s in expected[:k] if s > boundary + 1e-5}
    assert strictly_inside <= {i for i, _ in got}  # equal up to ties at the boundary


@pytest.mark.parametrize("lyrics_weight", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_top_ten_equals_brute_force(index, catalogue, lyrics_weight):
    for seed in (catalogue[3], catalogue[1234], catalogue[1999]):
        query = seed_query(index.get([seed.point_id]))
        weights = normalised_weights(query, lyrics_weight)
        results = recommend(index, query, lyrics_weight, k=10)
        assert seed.point_id not in {r.point_id for r in results}
        assert_same_top(results, brute_force(catalogue, query, weights))


def test_exact_even_when_the_first_prefetch_is_too_small(index, catalogue):
    query = seed_query([catalogue[42]])
    weights = normalised_weights(query, 0.5)
    exact = brute_force(catalogue, query, weights)
    scored = exact_top(index, query, weights, k=10, start_limit=10)
    assert np.allclose([s.fused for s in scored], [s for _, s in exact[:10]], atol=1e-5)


def test_results_explain_themselves(index, catalogue):
    seed = catalogue[5]
    result = recommend(index, seed_query([seed]), 0.3, k=20)
    for r in result:
        point = next(p for p in catalogue if p.point_id == r.point_id)
        expected_lyrics = None if LYRICS not in point.vectors or LYRICS not in seed.vectors else float(point.vectors[LYRICS] @ seed.vectors[LYRICS])
        assert (r.lyrics_score is None) == (expected_lyrics is None)
        if expected_lyrics is not None:
            assert r.lyrics_score == pytest.approx(expected_lyrics, abs=1e-5)
        assert r.score == pytest.approx(0.3 * (r.lyrics_score or 0) + 0.7 * (r.cover_score or 0), abs=1e-6)
        assert set(r.to_dict()) == {"point_id", "song_id", "title", "artists", "score", "lyrics_score", "cover_score"}


def test_seed_without_cover_searches_by_lyrics_alone(index, catalogue):
    seed = next(p for p in catalogue if COVER not in p.vectors)
    query = seed_query([seed])
    assert normalised_weights(query, 0.2) == {LYRICS: 1.0}
    results = recommend(index, query, 0.2, k=10)
    assert_same_top(results, brute_force(catalogue, query, {LYRICS: 1.0}))


def test_candidates_missing_a_modality_score_only_what_they_have(index, catalogue):
    seed = next(p for p in catalogue if len(p.vectors) == 2)
    lacking = next(p for p in catalogue if COVER not in p.vectors and p.point_id != seed.point_id)
    query = seed_query([seed])
    weights = normalised_weights(query, 0.5)
    everything = recommend(index, query, 0.5, k=N_SONGS)
    mine = next(r for r in everything if r.point_id == lacking.point_id)
    assert mine.cover_score is None
    assert mine.score == pytest.approx(0.5 * float(lacking.vectors[LYRICS] @ query.vectors[LYRICS]), abs=1e-5)
    assert len(everything) == N_SONGS - 1
    assert_same_top(everything[:10], brute_force(catalogue, query, weights))


def test_filters_and_artist_exclusion(index, catalogue):
    seed = catalogue[10]
    filters = Filters(genres=("rock", "pop"), years=(1970, 1989), sources=("catalogue",))
    query = seed_query([seed], exclude_seed_artists=True, filters=filters)
    weights = normalised_weights(query, 0.6)
    results = recommend(index, query, 0.6, k=10)

    def allowed(p):
        return (
            p.payload["genre"] in ("rock", "pop") and 1970 <= p.payload["year"] <= 1989
            and p.payload["source"] == "catalogue" and p.payload["artists"] != seed.payload["artists"]
        )

    assert all(allowed(next(p for p in catalogue if p.point_id == r.point_id)) for r in results)
    assert_same_top(results, brute_force(catalogue, query, weights, allowed))


def test_several_seeds_with_a_negative_example(index, catalogue):
    liked, disliked = [catalogue[1], catalogue[2]], [catalogue[3]]
    query = seed_query(liked, disliked)
    expected = liked[0].vectors[LYRICS] + liked[1].vectors[LYRICS]
    expected = expected / 2 - disliked[0].vectors[LYRICS]
    assert np.allclose(query.vectors[LYRICS], expected / np.linalg.norm(expected), atol=1e-6)
    results = recommend(index, query, 0.5, k=10)
    assert not {p.point_id for p in liked + disliked} & {r.point_id for r in results}
    assert_same_top(results, brute_force(catalogue, query, normalised_weights(query, 0.5)))


def test_text_query_matches_lyrics_only(index, catalogue):
    query = Query({LYRICS: catalogue[77].vectors[LYRICS]})
    results = recommend(index, query, 0.5, k=5)
    assert results[0].point_id == catalogue[77].point_id
    assert all(LYRICS in next(p for p in catalogue if p.point_id == r.point_id).vectors for r in results)


def test_diversity_trades_score_for_variety(index, catalogue):
    query = seed_query([catalogue[20]])
    plain = recommend(index, query, 0.5, k=10)
    diverse = recommend(index, query, 0.5, k=10, diversity=0.7)
    assert [r.point_id for r in plain] != [r.point_id for r in diverse]
    assert diverse[0].point_id == plain[0].point_id

    def spread(results):
        vectors = [next(p for p in catalogue if p.point_id == r.point_id).vectors.get(COVER) for r in results]
        vectors = [v for v in vectors if v is not None]
        return np.mean([a @ b for i, a in enumerate(vectors) for b in vectors[i + 1 :]])

    assert spread(diverse) < spread(plain)


def test_bad_weights_are_refused(index, catalogue):
    with pytest.raises(ValueError):
        recommend(index, seed_query([catalogue[0]]), -0.5)
    with pytest.raises(ValueError):
        recommend(index, seed_query([catalogue[0]]), 0.5, diversity=2)


def test_embedded_store_and_server_agree(tmp_path, catalogue):
    """Congruence: the same queries give the same results on both engines."""
    embedded, server = store_settings("embedded", tmp_path), store_settings("server", tmp_path)
    indexes = []
    try:
        for settings in (embedded, server):
            index = SongIndex(connect(settings), settings.collection)
            index.ensure(IndexEncoders("t", DIMS[LYRICS], "i", DIMS[COVER]))
            index.set_centres({})
            index.upsert(catalogue)
            indexes.append(index)
        for seed, weight in ((catalogue[4], 0.3), (catalogue[900], 0.7)):
            query = seed_query([seed], exclude_seed_artists=True, filters=Filters(genres=("rock", "jazz")))
            a, b = (recommend(index, query, weight, k=10) for index in indexes)
            assert [r.point_id for r in a] == [r.point_id for r in b]
            assert np.allclose([r.score for r in a], [r.score for r in b], atol=1e-5)
    finally:
        for index in indexes:
            index.client.close()
        drop_collection(server)


def test_a_new_songs_vectors_are_queried_in_the_index_space(tmp_path):
    settings = store_settings("embedded", tmp_path)
    index = SongIndex(connect(settings), settings.collection)
    try:
        index.ensure(IndexEncoders("t", 3, "i", 2))
        centre = np.array([0.5, 0.0, 0.0], dtype=np.float32)
        index.set_centres({LYRICS: centre})
        stored = SongPoint("00000000-0000-0000-0000-00000000000a", {"title": "A"}, {LYRICS: np.array([0.6, 0.8, 0.0], dtype=np.float32)})
        index.upsert([stored])
        query = vectors_query(index, {LYRICS: np.array([0.6, 0.8, 0.0], dtype=np.float32)})
        (result,) = recommend(index, query, 1.0, k=1)
        assert result.lyrics_score == pytest.approx(1.0, abs=1e-6)  # the same song, centred the same way
        assert not np.allclose(query.vectors[LYRICS], [0.6, 0.8, 0.0])
    finally:
        index.client.close()
