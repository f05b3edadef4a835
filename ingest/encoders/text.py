"""BERT-family ([CLS] ... [SEP]) sentence encoders through Hugging Face transformers: mean-pooled, L2-normalised."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

_SECTION_MARKER = re.compile(r"\[[^\]\n]{0,60}\]")
_WHITESPACE = re.compile(r"\s+")


def clean_lyrics(text: str) -> str:
    """Strip section markers such as `[Chorus]` and collapse whitespace; words are kept as written."""
    return _WHITESPACE.sub(" ", _SECTION_MARKER.sub(" ", text)).strip()


class TextEncoder:
    """Embeds texts of any length: long ones are split into windows whose embeddings are averaged.

    Each window holds at most `window_tokens` tokens (special tokens included). A window's
    embedding is the attention-masked mean of the last hidden states, L2-normalised; a text's
    embedding is the token-count-weighted mean of its windows, L2-normalised again. With
    `long_text="truncate"` only the first window is used (the sentence-transformers default).
    """

    def __init__(
        self,
        name: str,
        source: str | Path,
        window_tokens: int = 256,
        long_text: str = "windows",
        batch_size: int = 16,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        if long_text not in ("windows", "truncate"):
            raise ValueError(f"long_text must be 'windows' or 'truncate', not {long_text!r}")
        self.name = name
        self.long_text = long_text
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(str(source))
        self.model = AutoModel.from_pretrained(str(source)).eval()
        max_positions = int(getattr(self.model.config, "max_position_embeddings", 512))
        self.window_tokens = min(window_tokens, max_positions)
        self.dim = int(self.model.config.hidden_size)

    def _windows(self, text: str) -> list[list[int]]:
        body = self.window_tokens - 2  # room for [CLS] and [SEP]
        ids = self.tokenizer(clean_lyrics(text), add_special_tokens=False, verbose=False)["input_ids"]
        chunks = [ids[start : start + body] for start in range(0, max(len(ids), 1), body)]
        if self.long_text == "truncate":
            chunks = chunks[:1]
        cls, sep = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        return [[cls, *chunk, sep] for chunk in chunks]

    def encode(self, texts: list[str]) -> np.ndarray:
        """Return one L2-normalised float32 row per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        windows: list[list[int]] = []
        owner: list[int] = []
        for index, text in enumerate(texts):
            for window in self._windows(text):
                windows.append(window)
                owner.append(index)
        # Sorting by length keeps padding, and so wasted compute, small within each batch.
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        window_vectors = np.zeros((len(windows), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch_ids = order[start : start + self.batch_size]
                batch = self.tokenizer.pad(
                    {"input_ids": [windows[i] for i in batch_ids]}, return_tensors="pt"
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                window_vectors[batch_ids] = pooled.numpy()
        weights = np.array([len(w) for w in windows], dtype=np.float32)
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        np.add.at(vectors, owner, window_vectors * weights[:, None])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
