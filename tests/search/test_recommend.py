"""Weighted search on every engine, against a brute-force oracle that implements the documented rule.

The rule (search/recommend.py): weights normalised over the modalities the query has, and
score = w_l * ((1 - b) * cos_lyrics + b * words) + w_c * cos_cover, with a missing modality
adding 0 and words = BM25 (Qdrant's IDF) divided by the best among the songs the query may
return. The oracle below computes all of it itself from the raw vectors: centring, the query's
vectors from its seeds, the IDF, the filters; it never calls the search's candidate logic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from search.engines.base import SparseVector
from search.index import COVER, LYRICS, IndexEncoders, SongPoint, open_index, song_point_id
from search.recommend import Filters, Query, exact_top, normalised_weights, recommend, seed_query
from tests.conftest import ENGINES, drop_collection, store_settings

N_SONGS = 400
DIMS = {LYRICS: 24, COVER: 40}
GENRES = ["rock", "pop", "country", "hiphop", "jazz"]
VOCABULARY = 80


def clustered(rng: np.random.Generator, n: int, dim: int, clusters: int) -> np.ndarray:
    """Unit vectors around a few centres that share a common direction, as encoder outputs do."""
    common = rng.normal(size=dim) * 1.5
    centres = rng.normal(size=(clusters, dim))
    vectors = common + centres[rng.integers(0, clusters, n)] * 0.8 + rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def random_words(rng: np.random.Generator, terms: int) -> SparseVector:
    """Unit-length term weights over a Zipf-like vocabulary, so that songs share common words."""
    chosen = np.unique(np.minimum(rng.zipf(1.3, size=terms), VOCABULARY) + 1000)
    values = rng.random(len(chosen)) + 0.1
    return SparseVector(tuple(int(t) for t in chosen), tuple(float(v) for v in values / np.linalg.norm(values)))


def build_catalogue(n: int, seed: int, without_lyrics: set[int] | float, without_cover: set[int] | float) -> tuple[list[SongPoint], dict]:
    rng = np.random.default_rng(seed)
    lyrics, covers = clustered(rng, n, DIMS[LYRICS], 6), clustered(rng, n, DIMS[COVER], 5)

    def lacks(which: set[int] | float, i: int) -> bool:
        return i in which if isinstance(which, set) else rng.random() < which

    points = []
    for i in range(n):
        vectors = {}
        if not lacks(without_lyrics, i):
            vectors[LYRICS] = lyrics[i]
        if not lacks(without_cover, i) or LYRICS not in vectors:
            vectors[COVER] = covers[i]
        words = random_words(rng, int(rng.integers(1, 12))) if LYRICS in vectors and rng.random() > 0.05 else None
        payload = {
            "song_id": f"s{i}",
            "title": f"Song {i}",
            "artists": [f"Artist {i % 37}"] + ([f"Guest {i % 5}"] if i % 11 == 0 else []),
            "genre": GENRES[i % 5],
            "year": 1960 + (i * 7) % 60,
            "source": "catalogue" if i % 10 else "user",
        }
        points.append(SongPoint(song_point_id(spotify_id=None, song_id=f"s{i}", artists=[], title=""), payload, vectors, words))
    centres = {m: np.mean([p.vectors[m] for p in points if m in p.vectors], axis=0) for m in DIMS}
    return points, centres


def load(settings, points: list[SongPoint], centres: dict):
    index = open_index(settings)
    index.ensure(IndexEncoders("t", DIMS[LYRICS], "i", DIMS[COVER]))
    for start in range(0, len(points), 200):
        index.upsert(points[start : start + 200])
    index.recentre()  # fewer than 512 songs: each centre is the mean of every song with the modality
    return index


# ----- the oracle -------------------------------------------------------------------------------


class Oracle:
    """The documented rule, computed by brute force over a catalogue's raw vectors."""

    def __init__(self, points: list[SongPoint], centres: dict) -> None:
        self.points = {p.point_id: p for p in points}

        def index_space(m: str, v: np.ndarray) -> np.ndarray:
            centred = v.astype(np.float64) - centres[m]
            return centred / np.linalg.norm(centred)

        self.vectors = {p.point_id: {m: index_space(m, v) for m, v in p.vectors.items()} for p in points}
        with_words = [p.words.to_dict() for p in points if p.words]
        counts: dict[int, int] = {}
        for words in with_words:
            for term in words:
                counts[term] = counts.get(term, 0) + 1
        total = len(with_words)
        self.idf = {t: math.log((total - n + 0.5) / (n + 0.5) + 1.0) for t, n in counts.items()}

    def seed(self, liked: list[str], disliked: list[str]) -> tuple[dict[str, np.ndarray], dict[int, float]]:
        """Per modality, the mean of the liked songs minus the mean of the disliked, unit length."""
        vectors = {}
        for m in DIMS:
            pos = [self.vectors[i][m] for i in liked if m in self.vectors[i]]
            if not pos:
                continue
            neg = [self.vectors[i][m] for i in disliked if m in self.vectors[i]]
            v = np.mean(pos, axis=0) - (np.mean(neg, axis=0) if neg else 0)
            if np.linalg.norm(v) > 1e-6:  # liked and disliked cancelling out leave the modality out
                vectors[m] = v / np.linalg.norm(v)
        words: dict[int, float] = {}
        # Words follow the same rule as the vectors: left out when no liked song has any.
        if LYRICS in vectors and any(self.points[i].words for i in liked):
            for ids, sign in ((liked, 1.0), (disliked, -1.0)):
                having = [self.points[i].words.to_dict() for i in ids if self.points[i].words]
                for w in having:
                    for t, v in w.items():
                        words[t] = words.get(t, 0.0) + sign * v / len(having)
        return vectors, {t: v for t, v in words.items() if v != 0.0}

    def ranking(
        self,
        vectors: dict[str, np.ndarray],
        words: dict[int, float],
        lyrics_weight: float,
        words_weight: float,
        allowed,
    ) -> list[tuple[str, float]]:
        raw = {m: w for m, w in ((LYRICS, lyrics_weight), (COVER, 1 - lyrics_weight)) if m in vectors and w > 0}
        raw = raw or {m: 1.0 for m in vectors}
        weights = {m: w / sum(raw.values()) for m, w in raw.items()}
        b = words_weight if words and LYRICS in weights else 0.0
        eligible = [i for i in self.points if allowed(self.points[i])]

        def bm25(i: str) -> float:
            song = self.points[i].words
            if not song:
                return 0.0
            return sum(self.idf[t] * q * song.to_dict()[t] for t, q in words.items() if t in song.to_dict())

        best = max((bm25(i) for i in eligible if self.points[i].words), default=0.0)
        scored = []
        for i in eligible:
            song = self.vectors[i]
            cos = {m: float(song[m] @ vectors[m]) if m in song else 0.0 for m in weights}
            word = bm25(i) / best if best > 0 and self.points[i].words else 0.0
            score = sum(
                w * (((1 - b) * cos[m] + b * word) if m == LYRICS else cos[m]) for m, w in weights.items()
            )
            scored.append((i, score))
        return sorted(scored, key=lambda item: -item[1])


def allowed_by(filters: Filters, excluded: set[str]):
    def allowed(p: SongPoint) -> bool:
        return (
            p.point_id not in excluded
            and (not filters.genres or p.payload["genre"] in filters.genres)
            and (not filters.sources or p.payload["source"] in filters.sources)
            and (not filters.years or filters.years[0] <= p.payload["year"] <= filters.years[1])
            and not set(p.payload["artists"]) & set(filters.exclude_artists)
        )

    return allowed


def assert_same_top(got: list[tuple[str, float]], expected: list[tuple[str, float]], k: int, atol: float = 1e-4) -> None:
    """The same top k: the same scores in order, and the same songs up to ties at the boundary.

    Every song returned is eligible (ranked by the oracle), returned once, with the oracle's score for it.
    """
    assert len(got) == min(k, len(expected))
    assert np.allclose([s for _, s in got], [s for _, s in expected[:k]], atol=atol)
    oracle = dict(expected)
    assert len({i for i, _ in got}) == len(got), "a song returned twice"
    for point_id, score in got:
        assert point_id in oracle, f"{point_id} is not eligible"
        assert abs(oracle[point_id] - score) <= atol, (point_id, score, oracle[point_id])
    if not got:
        return
    boundary = expected[len(got) - 1][1]
    strictly_inside = {i for i, s in expected[: len(got)] if s > boundary + atol}
    assert strictly_inside <= {i for i, _ in got}


# ----- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalogue():
    """400 songs: about 15% without lyrics, 15% without a cover, 5% of lyrics without words."""
    return build_catalogue(N_SONGS, 7, 0.15, 0.15)


@pytest.fixture(scope="module")
def oracle(catalogue):
    return Oracle(*catalogue)


@pytest.fixture(scope="module", params=ENGINES)
def index(request, tmp_path_factory, catalogue):
    settings = store_settings(request.param, tmp_path_factory.mktemp("store"))
    index = load(settings, *catalogue)
    yield index
    index.close()
    drop_collection(settings)


# ----- property-based: every query shape against the oracle -------------------------------------


weights_strategy = st.one_of(st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]), st.floats(0.0, 1.0))


@st.composite
def query_shapes(draw):
    kind = draw(st.sampled_from(["seeds", "seeds", "text", "cover"]))
    liked = draw(st.lists(st.integers(0, N_SONGS - 1), min_size=1, max_size=3, unique=True))
    disliked = draw(st.lists(st.integers(0, N_SONGS - 1).filter(lambda i: i not in liked), max_size=2, unique=True))
    genres = tuple(draw(st.lists(st.sampled_from(GENRES), max_size=2, unique=True)))
    years = draw(st.one_of(st.none(), st.tuples(st.integers(1955, 2025), st.integers(0, 40)).map(lambda t: (t[0], t[0] + t[1]))))
    sources = draw(st.sampled_from([(), ("catalogue",), ("user",)]))
    return {
        "kind": kind, "liked": liked, "disliked": disliked, "filters": Filters(genres=genres, years=years, sources=sources),
        "exclude_artists": draw(st.booleans()), "lyrics_weight": draw(weights_strategy),
        "words_weight": draw(st.sampled_from([0.0, 0.2, 0.5, 1.0])), "k": draw(st.sampled_from([1, 5, 10, 45, 200, N_SONGS])),
        "start_limit": draw(st.sampled_from([None, 1, 4, 16])), "seed": draw(st.integers(0, 10_000)),
    }


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=query_shapes())
def test_exact_top_equals_the_oracle_for_every_query_shape(index, catalogue, oracle, shape):
    points, _ = catalogue
    rng = np.random.default_rng(shape["seed"])
    if shape["kind"] == "seeds":
        liked = [points[i].point_id for i in shape["liked"]]
        disliked = [points[i].point_id for i in shape["disliked"]]
        vectors, words = oracle.seed(liked, disliked)
        try:
            query = seed_query(index.get(liked), index.get(disliked), shape["exclude_artists"], shape["filters"])
        except ValueError:  # liked and disliked cancel out in every modality: nothing to look for
            assert vectors == {}
            return
        for m in DIMS:
            assert (m in query.vectors) == (m in vectors)
            if m in vectors:
                assert np.allclose(query.vectors[m], vectors[m], atol=1e-5)
        excluded = set(liked) | set(disliked)
        artists = {a for i in liked for a in oracle.points[i].payload["artists"]} if shape["exclude_artists"] else set()
    else:
        modality = LYRICS if shape["kind"] == "text" else COVER
        vector = rng.normal(size=DIMS[modality]).astype(np.float32)
        vector /= np.linalg.norm(vector)
        words = random_words(rng, 3).to_dict() if modality == LYRICS else {}
        vectors = {modality: vector.astype(np.float64)}
        query = Query({modality: vector}, SparseVector.from_dict(words) or None, shape["filters"])
        excluded, artists = set(), set()
    filters = Filters(
        genres=shape["filters"].genres, years=shape["filters"].years, sources=shape["filters"].sources,
        exclude_artists=tuple(artists),
    )
    expected = oracle.ranking(vectors, words, shape["lyrics_weight"], shape["words_weight"], allowed_by(filters, excluded))
    weights = normalised_weights(query, shape["lyrics_weight"])
    top = exact_top(index, query, weights, shape["k"], shape["words_weight"], start_limit=shape["start_limit"])
    assert_same_top([(r.point_id, r.score) for r in top], expected, shape["k"])


# ----- the cases named in the issue -------------------------------------------------------------


@pytest.fixture(scope="module", params=ENGINES)
def sixty(request, tmp_path_factory):
    """60 songs: 12 without lyrics, 12 without a cover; centred, so negative cosines are common."""
    points, centres = build_catalogue(60, 11, set(range(0, 60, 5)), set(range(1, 60, 5)))
    settings = store_settings(request.param, tmp_path_factory.mktemp("sixty"))
    index = load(settings, points, centres)
    yield index, points, Oracle(points, centres)
    index.close()
    drop_collection(settings)


@pytest.mark.parametrize("lyrics_weight", [0.0, 0.3, 0.7, 1.0])
def test_sixty_songs_top_45_for_seeds_of_every_shape(sixty, lyrics_weight):
    index, points, oracle = sixty
    assert sum(LYRICS not in p.vectors for p in points) == 12 and sum(COVER not in p.vectors for p in points) == 12
    seeds = [points[0], points[1], points[2]]  # no lyrics, no cover, both
    assert [set(p.vectors) for p in seeds] == [{COVER}, {LYRICS}, {LYRICS, COVER}]
    for seed in seeds:
        results = recommend(index, seed_query(index.get([seed.point_id])), lyrics_weight, k=45)
        vectors, words = oracle.seed([seed.point_id], [])
        expected = oracle.ranking(vectors, words, lyrics_weight, 0.2, allowed_by(Filters(), {seed.point_id}))
        assert_same_top([(r.point_id, r.score) for r in results], expected, 45)
        assert any(r.score < 0 for r in results)  # centred space: negative scores are ranked too


@pytest.mark.parametrize("lyrics_weight", [0.0, 0.3, 0.7, 1.0])
def test_sixty_songs_top_45_for_a_description(sixty, lyrics_weight):
    index, points, oracle = sixty
    rng = np.random.default_rng(3)
    vector = rng.normal(size=DIMS[LYRICS]).astype(np.float32)
    vector /= np.linalg.norm(vector)
    words = random_words(rng, 4)
    results = recommend(index, Query({LYRICS: vector}, words), lyrics_weight, k=45)
    expected = oracle.ranking({LYRICS: vector.astype(np.float64)}, words.to_dict(), lyrics_weight, 0.2, allowed_by(Filters(), set()))
    assert_same_top([(r.point_id, r.score) for r in results], expected, 45)
    # Songs without lyrics score 0 and are ranked among the others by that score.
    assert any(LYRICS not in next(p for p in points if p.point_id == r.point_id).vectors for r in results)


def test_liked_songs_without_words_give_a_query_without_words(index, catalogue, oracle):
    """Words follow the vectors' rule: when no liked song has words, a disliked song's words do not
    make a (negative) words query; lyrics are then ranked by cosine alone."""
    points, _ = catalogue
    liked = next(p for p in points if LYRICS in p.vectors and not p.words)
    disliked = next(p for p in points if p.words)
    query = seed_query(index.get([liked.point_id]), index.get([disliked.point_id]))
    vectors, words = oracle.seed([liked.point_id], [disliked.point_id])
    assert query.words is None and words == {}
    expected = oracle.ranking(vectors, words, 0.7, 0.2, allowed_by(Filters(), {liked.point_id, disliked.point_id}))
    top = exact_top(index, query, normalised_weights(query, 0.7), 20, 0.2)
    assert_same_top([(r.point_id, r.score) for r in top], expected, 20)


def test_filters_never_return_fewer_songs_than_qualify(sixty):
    index, points, oracle = sixty
    filters = Filters(genres=("rock",))
    qualifying = [p for p in points if p.payload["genre"] == "rock"]
    results = recommend(index, seed_query(index.get([points[3].point_id]), filters=filters), 1.0, k=60)
    assert len(results) == len([p for p in qualifying if p.point_id != points[3].point_id])


# ----- explanations, seeds, diversity, refusals -------------------------------------------------


def test_results_explain_themselves(index, catalogue):
    points, _ = catalogue
    seed = next(p for p in points if len(p.vectors) == 2 and p.words)
    query = seed_query(index.get([seed.point_id]))
    for r in recommend(index, query, 0.3, k=20, words_weight=0.2):
        stored = index.get([r.point_id])[0]
        expected_lyrics = None if LYRICS not in stored.vectors else float(stored.vectors[LYRICS] @ query.vectors[LYRICS])
        assert (r.lyrics_score is None) == (expected_lyrics is None)
        if expected_lyrics is not None:
            assert r.lyrics_score == pytest.approx(expected_lyrics, abs=1e-5)
        assert (r.words_score is None) == (stored.words is None)
        lyrics_part = 0.8 * (r.lyrics_score or 0) + 0.2 * (r.words_score or 0)
        assert r.score == pytest.approx(0.3 * lyrics_part + 0.7 * (r.cover_score or 0), abs=1e-5)
        assert set(r.to_dict()) == {"point_id", "song_id", "title", "artists", "score", "lyrics_score", "cover_score", "words_score"}


def test_words_that_no_eligible_song_shares_leave_the_dense_top_k_whole(index, catalogue, oracle):
    """Found by the property test: with no positive words match among the songs the filter
    admits, the answer is the dense ranking, and its first round may have read fewer than k."""
    points, _ = catalogue
    seed = points[355]
    filters = Filters(years=(1961, 1961))
    query = seed_query(index.get([seed.point_id]), filters=filters)
    vectors, words = oracle.seed([seed.point_id], [])
    expected = oracle.ranking(vectors, words, 0.3, 0.2, allowed_by(filters, {seed.point_id}))
    top = exact_top(index, query, normalised_weights(query, 0.3), 5, 0.2, start_limit=1)
    assert_same_top([(r.point_id, r.score) for r in top], expected, 5)
    assert len(top) == 5


def test_a_modality_where_likes_and_dislikes_cancel_is_left_out():
    lyrics = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    liked = SongPoint("a", {}, {LYRICS: lyrics, COVER: np.array([1.0, 0.0], dtype=np.float32)})
    disliked = SongPoint("b", {}, {LYRICS: lyrics, COVER: np.array([0.0, 1.0], dtype=np.float32)})
    query = seed_query([liked], [disliked])
    assert set(query.vectors) == {COVER}  # the lyrics cancel out; the covers still say something
    assert np.allclose(query.vectors[COVER], np.array([1.0, -1.0]) / np.sqrt(2))
    with pytest.raises(ValueError, match="cancel out"):
        seed_query([liked], [SongPoint("c", {}, dict(liked.vectors))])


def test_seed_without_cover_searches_by_lyrics_alone(index, catalogue):
    points, _ = catalogue
    seed = next(p for p in points if COVER not in p.vectors)
    query = seed_query(index.get([seed.point_id]))
    assert normalised_weights(query, 0.2) == {LYRICS: 1.0}
    assert all(r.cover_score is None for r in recommend(index, query, 0.2, k=10))


def test_several_seeds_with_a_disliked_song_never_return_a_seed(index, catalogue):
    points, _ = catalogue
    liked, disliked = [points[1].point_id, points[2].point_id], [points[3].point_id]
    results = recommend(index, seed_query(index.get(liked), index.get(disliked)), 0.5, k=30)
    assert not (set(liked) | set(disliked)) & {r.point_id for r in results}


def test_diversity_trades_score_for_variety_and_zero_keeps_the_exact_order(index, catalogue):
    points, _ = catalogue
    query = seed_query(index.get([points[20].point_id]))
    plain = recommend(index, query, 0.5, k=10)
    assert [r.point_id for r in recommend(index, query, 0.5, k=10, diversity=0.0)] == [r.point_id for r in plain]
    diverse = recommend(index, query, 0.5, k=10, diversity=0.7)
    assert [r.point_id for r in plain] != [r.point_id for r in diverse]
    assert diverse[0].point_id == plain[0].point_id

    def spread(results):
        vectors = [index.get([r.point_id])[0].vectors.get(COVER) for r in results]
        vectors = [v for v in vectors if v is not None]
        return np.mean([a @ b for i, a in enumerate(vectors) for b in vectors[i + 1 :]])

    assert spread(diverse) < spread(plain)


@pytest.mark.parametrize(
    "options, message",
    [({"lyrics_weight": -0.5}, "lyrics weight"), ({"lyrics_weight": 1.5}, "lyrics weight"),
     ({"diversity": 2}, "diversity"), ({"k": 0}, "k must"), ({"words_weight": 1.2}, "words weight")],
)
def test_bad_parameters_are_refused(index, catalogue, options, message):
    with pytest.raises(ValueError, match=message):
        recommend(index, seed_query(index.get([catalogue[0][0].point_id])), **options)


def test_a_new_songs_vectors_are_queried_in_the_index_space(tmp_path):
    index = open_index(store_settings("edge", tmp_path))
    try:
        index.ensure(IndexEncoders("t", 3, "i", 2))
        rng = np.random.default_rng(5)
        raws = [v / np.linalg.norm(v) for v in rng.normal(size=(40, 3)).astype(np.float32) + np.array([2, 0, 0], dtype=np.float32)]
        index.upsert([SongPoint(f"00000000-0000-0000-0000-{i + 1:012d}", {"title": f"S{i}"}, {LYRICS: v}) for i, v in enumerate(raws)])
        index.recentre()
        query = Query({LYRICS: index.to_index_space(LYRICS, raws[7])})
        (result,) = recommend(index, query, 1.0, k=1)
        assert result.title == "S7" and result.lyrics_score == pytest.approx(1.0, abs=1e-6)  # centred the same way
        assert not np.allclose(query.vectors[LYRICS], raws[7])
    finally:
        index.close()
