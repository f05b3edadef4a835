"""The collection's two encoders behind one object, with the embedding cache in front of them."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from ingest.embedding_cache import EmbeddingCache
from ingest.encoders import (
    DEFAULT_TEXT_ENCODER,
    EncoderUnavailable,
    WordsEncoder,
    choose_image_encoder,
    clean_lyrics,
    image_encoder,
    text_encoder,
    words_encoder,
)
from search.index import COVER, LYRICS, EncoderMismatch, IndexEncoders, SongIndex
from search.settings import Settings

if TYPE_CHECKING:
    import torch

    from ingest.encoders.image import ImageEncoder
    from ingest.encoders.text import TextEncoder

T = TypeVar("T")


def lyrics_hash(lyrics: str) -> str:
    """Content hash of lyrics as the encoder sees them (cleaning first, so spacing edits are free)."""
    return hashlib.sha256(clean_lyrics(lyrics).encode()).hexdigest()


def bytes_hash(data: bytes) -> str:
    """Content hash of a cover's bytes."""
    return hashlib.sha256(data).hexdigest()


def resolve_encoders(settings: Settings, index: SongIndex) -> tuple[IndexEncoders, str]:
    """The encoders to use with `index`: the recorded ones, else those the settings choose.

    Returns them with a notice for people saying which were chosen and why.
    """
    recorded = index.encoders
    if recorded is not None:
        if settings.image_encoder and settings.image_encoder != recorded.image:
            raise EncoderUnavailable(
                f"IMAGE_ENCODER={settings.image_encoder} but collection {index.collection!r} was "
                f"built with {recorded.image}; unset it or choose another collection"
            )
        if settings.text_encoder and settings.text_encoder != recorded.text:
            raise EncoderUnavailable(
                f"TEXT_ENCODER={settings.text_encoder} but collection {index.collection!r} was "
                f"built with {recorded.text}; unset it or choose another collection"
            )
        chosen = index.encoder_notice
        return recorded, f"encoders {recorded.text} + {recorded.image}, as recorded in the collection" + (
            f" (chosen at creation: {chosen})" if chosen else ""
        )
    image_name, notice = choose_image_encoder(settings.image_encoder, settings.resnet50_weights, settings.device)
    text = text_encoder(settings.text_encoder or DEFAULT_TEXT_ENCODER, settings.lyrics_long_text, settings.device)
    image = image_encoder(image_name, settings.resnet50_weights, settings.device)
    encoders = IndexEncoders(
        text.name, text.dim, image.name, image.dim, text.long_text,
        text_fingerprint=text.fingerprint, image_fingerprint=image.fingerprint,
    )
    return encoders, f"lyrics encoder {text.name}; {notice}"


E = TypeVar("E", "TextEncoder", "ImageEncoder")


def _recorded(encoder: E, recorded: str, kind: str) -> E:
    """The encoder, if it is the model the collection records (collections that record none pass)."""
    if recorded and encoder.fingerprint != recorded:
        raise EncoderMismatch(
            f"the {kind} model {encoder.name!r} is not the one that built this collection (its configuration "
            f"or weights changed: {encoder.fingerprint} instead of {recorded}). Restore that model, or load "
            "the catalogue into another collection with --collection / QDRANT_COLLECTION."
        )
    return encoder


@dataclass
class Embedder:
    """Embeds lyrics and covers with a collection's encoders, skipping anything already cached."""

    encoders: IndexEncoders
    settings: Settings
    cache: EmbeddingCache | None = None
    seconds_by_modality: dict[str, float] = field(default_factory=lambda: {LYRICS: 0.0, COVER: 0.0}, init=False)

    @property
    def text(self) -> TextEncoder:
        """The lyrics encoder (loaded once per process), checked to be the model the collection records."""
        encoder = text_encoder(self.encoders.text, self.encoders.long_text, self.settings.device)
        return _recorded(encoder, self.encoders.text_fingerprint, "text")

    @property
    def image(self) -> ImageEncoder:
        """The cover encoder (loaded once per process), checked to be the model the collection records."""
        encoder = image_encoder(self.encoders.image, self.settings.resnet50_weights, self.settings.device)
        return _recorded(encoder, self.encoders.image_fingerprint, "cover")

    @property
    def words(self) -> WordsEncoder:
        """The lyrics' words encoder (BM25 term weights)."""
        return words_encoder(self.encoders.words)

    def load(self) -> None:
        """Load the models now rather than on first use."""
        self.text, self.image, self.words  # noqa: B018 (the properties load and cache the models)

    def _cache_key(self, modality: str) -> str:
        if modality == LYRICS:
            return f"{self.encoders.text}/{self.encoders.long_text}/{self.encoders.text_fingerprint}"
        return f"{self.encoders.image}/{self.encoders.image_fingerprint}"

    def cached(self, modality: str, hashes: list[str]) -> dict[str, np.ndarray]:
        """Vectors already in the cache for these content hashes."""
        if self.cache is None or not hashes:
            return {}
        return self.cache.get_many(self._cache_key(modality), hashes)

    def _vectors(self, modality: str, inputs: dict[str, T], encode: Callable[[list[T]], np.ndarray]) -> dict[str, np.ndarray]:
        found = self.cached(modality, list(inputs))
        missing = [h for h in inputs if h not in found]
        if missing:
            started = time.perf_counter()
            fresh = dict(zip(missing, encode([inputs[h] for h in missing])))
            elapsed = time.perf_counter() - started
            self.seconds_by_modality[modality] += elapsed
            if self.cache is not None:
                self.cache.put_many(self._cache_key(modality), fresh)
            found.update(fresh)
        return found

    def lyrics_vectors(self, lyrics_by_hash: dict[str, np.ndarray | str]) -> dict[str, np.ndarray]:
        """One vector per lyrics hash, from the cache or the text encoder: each lyric given as its
        tokens (`TextPreparation.passages`) or as its text, then tokenised only if the cache lacks it."""
        return self._vectors(LYRICS, lyrics_by_hash, self._encode_lyrics)

    def _encode_lyrics(self, lyrics: list[np.ndarray | str]) -> np.ndarray:
        passages = self.text.preparation.passages
        return self.text.encode_passages([text if isinstance(text, np.ndarray) else passages([text])[0] for text in lyrics])

    def cover_vectors(self, tensors_by_hash: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """One vector per cover hash, from the cache or the image encoder (inputs preprocessed)."""
        return self._vectors(COVER, tensors_by_hash, self.image.encode_tensors)
