"""The song index: schema, identities, recorded encoders, centring and the one-process lock."""

from __future__ import annotations

import numpy as np
import pytest

from search.index import (
    COVER,
    LYRICS,
    EncoderMismatch,
    IndexEncoders,
    SongIndex,
    SongPoint,
    StoreUnavailable,
    connect,
    normalise_text,
    song_point_id,
)

ENCODERS = IndexEncoders("all-MiniLM-L6-v2", 8, "efficientnet-lite0", 6)


def unit(values) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture
def index(settings):
    index = SongIndex(connect(settings), settings.collection)
    index.ensure(ENCODERS)
    yield index
    index.client.close()


def test_point_ids_follow_the_song_identity():
    by_spotify = song_point_id(spotify_id="abc", song_id="1", artists=["A"], title="T")
    assert by_spotify == song_point_id(spotify_id="abc", song_id="2", artists=["B"], title="U")
    assert song_point_id(spotify_id=None, song_id="1", artists=["A"], title="T") != by_spotify
    by_name = song_point_id(spotify_id=None, song_id=None, artists=["Beyoncé"], title="Halo!")
    assert by_name == song_point_id(spotify_id=None, song_id=None, artists=["BEYONCE"], title="halo")
    assert normalise_text("  Ça  c'est   LA vie ") == "ca c est la vie"


def test_collection_has_named_cosine_vectors_and_records_its_encoders(index, settings):
    info = index.client.get_collection(settings.collection)
    vectors = info.config.params.vectors
    assert vectors[LYRICS].size == 8 and vectors[COVER].size == 6
    assert vectors[LYRICS].distance.name == "COSINE"
    reopened = SongIndex(index.client, settings.collection)
    assert reopened.encoders == ENCODERS


def test_opening_with_other_encoders_is_a_clear_error(index):
    with pytest.raises(EncoderMismatch, match="was built with"):
        index.ensure(IndexEncoders("bert-base-uncased", 768, "efficientnet-lite0", 6))


def test_songs_may_lack_a_modality_and_are_stored_centred(index):
    index.set_centres({LYRICS: unit([1, 0, 0, 0, 0, 0, 0, 0]) * 0.5})
    lyrics_only = SongPoint("00000000-0000-0000-0000-000000000001", {"title": "L"}, {LYRICS: unit([1, 1, 0, 0, 0, 0, 0, 0])})
    cover_only = SongPoint("00000000-0000-0000-0000-000000000002", {"title": "C"}, {COVER: unit([0, 1, 0, 0, 0, 0])})
    index.upsert([lyrics_only, cover_only])
    stored = {p.payload["title"]: p for p in index.get([lyrics_only.point_id, cover_only.point_id])}
    assert set(stored["L"].vectors) == {LYRICS} and set(stored["C"].vectors) == {COVER}
    assert np.allclose(stored["L"].vectors[LYRICS], unit(unit([1, 1, 0, 0, 0, 0, 0, 0]) - unit([1, 0, 0, 0, 0, 0, 0, 0]) * 0.5), atol=1e-6)
    assert np.allclose(stored["C"].vectors[COVER], unit([0, 1, 0, 0, 0, 0]), atol=1e-6)  # no cover centre
    assert index.count() == 2
    assert [p.payload["title"] for p in index.find("title", "C")] == ["C"]
    with pytest.raises(ValueError, match="already has its centres"):
        index.set_centres({})


def test_storing_before_centres_are_recorded_is_refused(index):
    with pytest.raises(ValueError, match="centres"):
        index.upsert([SongPoint("00000000-0000-0000-0000-000000000003", {}, {COVER: unit([1, 0, 0, 0, 0, 0])})])


def test_embedded_store_used_by_another_client_gives_a_clear_message(tmp_path):
    from search.settings import Settings

    settings = Settings(qdrant_path=tmp_path / "store")
    first = connect(settings)
    try:
        with pytest.raises(StoreUnavailable, match="open in another process"):
            connect(settings)
    finally:
        first.close()


def test_unreachable_server_gives_a_clear_message():
    from search.settings import Settings

    with pytest.raises(StoreUnavailable, match="unreachable"):
        connect(Settings(qdrant_url="http://127.0.0.1:9"))


def test_collection_records_why_its_encoders_were_chosen(settings):
    index = SongIndex(connect(settings), settings.collection)
    try:
        index.ensure(ENCODERS, "cover encoder efficientnet-lite0, because resnet50's weights are missing")
        assert "because resnet50" in SongIndex(index.client, settings.collection).encoder_notice
    finally:
        index.client.close()
