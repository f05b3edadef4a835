"""The song index on every engine: schema, identities, recorded encoders, centring, the fused vector,
the store operations the programs use, and the one-process lock."""

from __future__ import annotations

import numpy as np
import pytest

from search.engines.base import Filter, Match, Range, SparseVector
from search.index import (
    COVER,
    FUSED,
    LYRICS,
    WORDS,
    EncoderMismatch,
    IndexEncoders,
    SongPoint,
    StoreUnavailable,
    normalise_text,
    open_index,
    song_point_id,
)
from search.settings import Settings

ENCODERS = IndexEncoders("all-MiniLM-L6-v2", 8, "efficientnet-lite0", 6)


def unit(values) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def pid(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012d}"


@pytest.fixture
def index(engine_settings):
    index = open_index(engine_settings)
    index.ensure(ENCODERS)
    yield index
    index.close()


def test_point_ids_follow_the_song_identity():
    by_spotify = song_point_id(spotify_id="abc", song_id="1", artists=["A"], title="T")
    assert by_spotify == song_point_id(spotify_id="abc", song_id="2", artists=["B"], title="U")
    assert song_point_id(spotify_id=None, song_id="1", artists=["A"], title="T") != by_spotify
    by_name = song_point_id(spotify_id=None, song_id=None, artists=["Beyoncé"], title="Halo!")
    assert by_name == song_point_id(spotify_id=None, song_id=None, artists=["BEYONCE"], title="halo")
    assert normalise_text("  Ça  c'est   LA vie ") == "ca c est la vie"


def test_vectors_are_scored_by_their_distances(index):
    """lyrics and cover are cosine (length does not matter); fused is a plain dot product."""
    index.upsert([SongPoint(pid(1), {}, {LYRICS: unit([1, 0, 0, 0, 0, 0, 0, 0]), COVER: unit([0, 1, 0, 0, 0, 0])})])
    (lyrics,) = index.query(LYRICS, np.array([3, 4, 0, 0, 0, 0, 0, 0], dtype=np.float32), 1)
    assert lyrics.score == pytest.approx(0.6, abs=1e-6)
    query = np.zeros(14, dtype=np.float32)
    query[0], query[8 + 1] = 3.0, 2.0  # 3 * lyrics[0] + 2 * cover[1]
    (fused,) = index.query(FUSED, query, 1)
    assert fused.score == pytest.approx(5.0, abs=1e-5)


def test_the_collection_records_its_encoders_and_reopens_with_them(engine_settings):
    index = open_index(engine_settings)
    index.ensure(ENCODERS, "cover encoder efficientnet-lite0, because resnet50's weights are missing")
    index.close()
    reopened = open_index(engine_settings)
    try:
        assert reopened.encoders == ENCODERS
        assert "because resnet50" in reopened.encoder_notice
        with pytest.raises(EncoderMismatch, match="was built with"):
            reopened.ensure(IndexEncoders("bert-base-uncased", 768, "efficientnet-lite0", 6))
    finally:
        reopened.close()


def test_songs_may_lack_a_modality_and_are_never_given_a_filler(index):
    lyrics_only = SongPoint(pid(1), {"title": "L"}, {LYRICS: unit([1, 1, 0, 0, 0, 0, 0, 0])}, SparseVector((3, 9), (0.6, 0.8)))
    cover_only = SongPoint(pid(2), {"title": "C"}, {COVER: unit([0, 1, 0, 0, 0, 0])})
    index.upsert([lyrics_only, cover_only])
    stored = {p.payload["title"]: p for p in index.get([lyrics_only.point_id, cover_only.point_id])}
    assert set(stored["L"].vectors) == {LYRICS} and set(stored["C"].vectors) == {COVER}
    assert stored["L"].words == SparseVector((3, 9), (pytest.approx(0.6), pytest.approx(0.8)))
    assert stored["C"].words is None
    assert stored["L"].payload["vectors"] == [LYRICS, WORDS] and stored["C"].payload["vectors"] == [COVER]
    fused = {h.point_id: h.vectors[FUSED] for h in index.engine.retrieve([pid(1), pid(2)], False, [FUSED])}
    assert np.allclose(fused[pid(1)], np.concatenate([unit([1, 1, 0, 0, 0, 0, 0, 0]), np.zeros(6)]), atol=1e-6)
    assert np.allclose(fused[pid(2)], np.concatenate([np.zeros(8), unit([0, 1, 0, 0, 0, 0])]), atol=1e-6)
    assert index.count() == 2


def lyrics_songs(rng, first: int, n: int) -> list[SongPoint]:
    """Songs with lyrics that share a direction (as encoder outputs do), and covers on every third."""
    songs = []
    for i in range(first, first + n):
        lyrics = unit(rng.normal(size=8) + np.array([3, 0, 0, 0, 0, 0, 0, 0]))
        vectors = {LYRICS: lyrics, **({COVER: unit(rng.normal(size=6))} if i % 3 == 0 else {})}
        songs.append(SongPoint(pid(i), {"title": f"S{i}"}, vectors))
    return songs


def test_centres_are_learned_once_there_are_enough_songs_then_frozen(index):
    rng = np.random.default_rng(1)
    first = lyrics_songs(rng, 1, 31)
    index.upsert(first)
    assert index.recentre() == [] and index.centres == {}  # 31 songs: too few to learn from
    (stored,) = index.get([pid(1)])
    assert np.allclose(stored.vectors[LYRICS], first[0].vectors[LYRICS], atol=1e-6)  # uncentred, not off for good

    more = lyrics_songs(rng, 32, 9)
    index.upsert(more)
    assert index.recentre() == [LYRICS]  # 40 with lyrics now; covers: 13, still too few
    everyone = first + more
    centre = np.mean([p.vectors[LYRICS] for p in everyone], axis=0)
    assert np.allclose(index.centres[LYRICS], centre, atol=1e-6)
    assert index.centring() == {LYRICS: {"songs": 40, "final": False}}
    # Every stored song, the earlier ones included, is now compared centred.
    fused = {h.point_id: h.vectors[FUSED][:8] for h in index.engine.retrieve([p.point_id for p in everyone], False, [FUSED])}
    for song in everyone:
        assert np.allclose(fused[song.point_id], unit(song.vectors[LYRICS] - centre), atol=1e-5)
        assert np.allclose(index.get([song.point_id])[0].vectors[LYRICS], unit(song.vectors[LYRICS] - centre), atol=1e-5)
    raw = index.engine.retrieve([pid(1)], False, [LYRICS])[0].vectors[LYRICS]
    assert np.allclose(raw, first[0].vectors[LYRICS], atol=1e-6)  # the encoder's vector is kept as it was

    index.upsert(lyrics_songs(rng, 41, 600))
    index.recentre()
    assert index.centring()[LYRICS] == {"songs": 512, "final": True}
    frozen = index.centres[LYRICS].copy()
    index.upsert(lyrics_songs(rng, 700, 50))
    assert LYRICS not in index.recentre()
    assert np.array_equal(index.centres[LYRICS], frozen)


def test_an_interrupted_recentring_is_completed(index):
    rng = np.random.default_rng(2)
    songs = lyrics_songs(rng, 1, 40)
    index.upsert(songs)
    # As if a run died after recording new centres and before rewriting the songs.
    index.engine.update_metadata({"centres": {LYRICS: {"vector": [0.5] + [0.0] * 7, "songs": 40}}})
    index._metadata = index._centres = None
    assert index.recentre() == []
    fused = index.engine.retrieve([pid(5)], False, [FUSED])[0].vectors[FUSED][:8]
    assert np.allclose(fused, unit(songs[4].vectors[LYRICS] - np.array([0.5] + [0.0] * 7)), atol=1e-5)


def test_a_collection_in_an_older_songspace_format_is_refused_with_what_to_do(engine_settings):
    index = open_index(engine_settings)
    try:
        index.ensure(ENCODERS)
        # As an older Songspace recorded its centres: plain lists, its vectors stored centred.
        index.engine.update_metadata({"centres": {LYRICS: [0.1] * 8}})
        index.reload()
        with pytest.raises(EncoderMismatch, match="older Songspace.*search.store migrate"):
            index.ensure(ENCODERS)
    finally:
        index.close()


def test_a_song_with_no_vector_at_all_is_refused(index):
    with pytest.raises(ValueError, match="neither"):
        index.upsert([SongPoint(pid(5), {"title": "nothing"}, {})])
    assert index.count() == 0


def test_store_operations_the_programs_use(index):
    songs = [
        SongPoint(pid(i), {"song_id": f"s{i}", "title": f"T{i}", "genre": "rock" if i % 2 else "pop", "year": 1990 + i,
                           "artists": [f"A{i % 3}"], "source": "user" if i > 6 else "catalogue"},
                  {COVER: unit([1, i, 0, 0, 0, 0])})
        for i in range(1, 10)
    ]
    index.upsert(songs)
    assert [p.payload["title"] for p in index.find("song_id", "s4")] == ["T4"]
    assert index.find("song_id", "nope") == []
    assert dict(index.facet("genre")) == {"rock": 5, "pop": 4}
    assert index.count(Filter(must=(Range("year", gte=1993, lte=1995),))) == 3
    assert index.count(Filter(must_not=(Match("artists", ("A0",)),))) == 6
    assert {i for i, _ in index.scroll_payloads(["title"], page=2)} == {p.point_id for p in songs}
    assert all(set(payload) == {"title"} for _, payload in index.scroll_payloads(["title"]))
    index.overwrite_payload(pid(2), {"title": "Renamed"})
    (renamed,) = index.get([pid(2)])
    assert renamed.payload == {"title": "Renamed", "vectors": [COVER], "centring": "none", "title_key": "renamed", "search_text": "renamed"}
    assert COVER in renamed.vectors
    assert index.delete_where(Filter(must=(Match("source", ("user",)),))) == 3
    index.delete([pid(1)])
    assert index.count() == 5
    assert [p.point_id for p in index.get([pid(6), pid(1), pid(3)])] == [pid(6), pid(3)]


def test_embedded_store_used_by_another_process_gives_a_clear_message(tmp_path):
    import subprocess
    import sys
    import textwrap

    for engine in ("edge", "local"):
        settings = Settings(engine=engine, qdrant_path=tmp_path / engine, collection="songs")
        first = open_index(settings)
        first.ensure(ENCODERS)
        try:
            code = textwrap.dedent(f"""
                from pathlib import Path
                from search.index import open_index
                from search.settings import Settings
                try:
                    open_index(Settings(engine={engine!r}, qdrant_path=Path({str(settings.qdrant_path)!r}), collection="songs"))
                except Exception as error:
                    print(type(error).__name__, error)
            """)
            output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
            assert output.startswith("StoreUnavailable") and "open in another process" in output
        finally:
            first.close()


def test_unreachable_server_gives_a_clear_message():
    with pytest.raises(StoreUnavailable, match="unreachable"):
        open_index(Settings(qdrant_url="http://127.0.0.1:9"))
