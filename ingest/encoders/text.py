"""Sentence encoders through Hugging Face transformers, set up by the model's own sentence-transformers files.

A sentence-transformers model folder (or hub repository) says how token states become a sentence
vector: `modules.json` lists the modules, `1_Pooling/config.json` the pooling, the transformer's
`sentence_bert_config.json` its maximum length and lower-casing, `config_sentence_transformers.json`
its query and passage prompts. A plain transformer without these files (bert-base-uncased) is
mean-pooled, as sentence-transformers itself does. Tokenising, windowing and pooling are done here
so that long lyrics are windowed, not truncated.
"""

from __future__ import annotations

import functools

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ingest.encoders.base import RUNTIMES, EncoderUnavailable, Runtime, fingerprint
from ingest.encoders.lyrics import clean_lyrics

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# Older configurations (every hub model saved before sentence-transformers 6) name the pooling with
# booleans; several true ones are concatenated in this order.
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# Normalize changes nothing here: every window and every text vector is scaled to unit length anyway.
_SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")
# The passage prompt is the first of these the model defines, as in SentenceTransformer.encode_document.
_PASSAGE_PROMPT_NAMES = ("document", "passage", "corpus")
# The transformer module's settings file; the other names are those of models saved before 2021.
_TRANSFORMER_CONFIGS = (
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
)


@dataclass(frozen=True)
class SentenceConfig:
    """How a model turns text into one vector, as its sentence-transformers files say.

    `max_seq_length` is None where the model does not say (then the tokenizer's limit applies).
    """

    transformer_folder: str = ""
    pooling: tuple[str, ...] = ("mean",)
    include_prompt: bool = True
    max_seq_length: int | None = None
    lowercase: bool = False
    query_prompt: str = ""
    passage_prompt: str = ""


def model_file(source: str, filename: str) -> Path | None:
    """A file of a local model folder or a hub repository (downloaded or cached); None if it has none.

    Raises OSError when a hub file cannot be had (offline and not cached), so that a missing
    configuration is never mistaken for an absent one.
    """
    if Path(source).is_dir():
        path = Path(source) / filename
        return path if path.is_file() else None
    from huggingface_hub import _CACHED_NO_EXIST, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(source, filename))
    except LocalEntryNotFoundError:
        # Offline, the cache still knows which files the hub said it lacks (e.g. a plain BERT's modules.json).
        if try_to_load_from_cache(source, filename) is _CACHED_NO_EXIST:
            return None
        raise
    except EntryNotFoundError:
        return None


def _json(source: str, folder: str, filename: str) -> Any:
    path = model_file(source, f"{folder}/{filename}" if folder else filename)
    return None if path is None else json.loads(path.read_text(encoding="utf-8"))


def _pooling_modes(config: dict[str, Any]) -> tuple[str, ...]:
    if "pooling_mode" in config:
        mode = config["pooling_mode"]
        modes = (mode,) if isinstance(mode, str) else tuple(mode)
    else:
        modes = tuple(mode for key, mode in _LEGACY_POOLING_KEYS.items() if config.get(key)) or ("mean",)
    unknown = [mode for mode in modes if mode not in POOLING_MODES]
    if unknown:
        raise EncoderUnavailable(f"unknown pooling mode {unknown[0]!r}; Songspace knows {', '.join(POOLING_MODES)}")
    return modes


def read_sentence_config(source: str) -> SentenceConfig:
    """Read a model's sentence-transformers configuration; a plain transformer gets mean pooling.

    Raises EncoderUnavailable for module stacks other than Transformer, Pooling and Normalize.
    """
    modules = _json(source, "", "modules.json")
    if modules is None:
        return SentenceConfig()
    kinds = [module["type"].rsplit(".", 1)[-1] for module in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or any(kind not in _SUPPORTED_MODULES for kind in kinds):
        raise EncoderUnavailable(
            f"{source!r} has sentence-transformers modules {' -> '.join(kinds)}; Songspace supports "
            "Transformer -> Pooling, optionally followed by Normalize"
        )
    folder = modules[0].get("path", "")
    pooling = _json(source, modules[1]["path"], "config.json") or {}
    transformer = next(filter(None, (_json(source, folder, name) for name in _TRANSFORMER_CONFIGS)), {})
    prompts = (_json(source, "", "config_sentence_transformers.json") or {}).get("prompts") or {}
    passage_names = [name for name in _PASSAGE_PROMPT_NAMES if name in prompts]
    return SentenceConfig(
        transformer_folder=folder,
        pooling=_pooling_modes(pooling),
        include_prompt=bool(pooling.get("include_prompt", True)),
        max_seq_length=transformer.get("max_seq_length"),
        lowercase=bool(transformer.get("do_lower_case", False)),
        query_prompt=prompts.get("query") or "",
        passage_prompt=prompts[passage_names[0]] if passage_names else "",
    )


def pool(states: torch.Tensor, mask: torch.Tensor, modes: tuple[str, ...]) -> torch.Tensor:
    """Sentence vectors from token states (batch, tokens, dim) under a 0/1 mask, one mode after another.

    Each mode is computed as sentence-transformers' Pooling computes it; several are concatenated.
    """
    weights = mask.unsqueeze(-1).to(states.dtype)
    counts = weights.sum(1).clamp(min=1e-9)
    rows = torch.arange(len(states), device=states.device)
    pooled = []
    for mode in modes:
        if mode == "cls":
            pooled.append(states[rows, mask.int().argmax(1)])  # the first token the mask keeps
        elif mode == "max":
            pooled.append(states.masked_fill(weights == 0, float("-inf")).max(1).values)
        elif mode == "mean":
            pooled.append((states * weights).sum(1) / counts)
        elif mode == "mean_sqrt_len_tokens":
            pooled.append((states * weights).sum(1) / counts.sqrt())
        elif mode == "weightedmean":
            # Later tokens weigh more: position 1, 2, 3, ... (padding is on the right).
            positions = torch.arange(1, states.shape[1] + 1, device=states.device, dtype=states.dtype)
            weighted = weights * positions.view(1, -1, 1)
            pooled.append((states * weighted).sum(1) / weighted.sum(1).clamp(min=1e-9))
        else:  # lasttoken
            last = states.shape[1] - 1 - mask.flip(1).int().argmax(1)
            pooled.append((states * weights)[rows, last])
    return torch.cat(pooled, dim=-1)


@dataclass
class TextPreparation:
    """Turns texts into the model's token ids: safe in worker threads (nothing here changes the
    tokenizer's truncation or padding, so calls only read it), and picklable for worker processes
    (it holds the tokenizer and no model), so that tokenising runs beside the encoder."""

    tokenizer: Any
    lowercase: bool
    passage_prompt: str

    def passages(self, texts: list[str]) -> list[np.ndarray]:
        """`tokens` of passages (lyrics), with the model's passage prompt."""
        return self.tokens(texts, self.passage_prompt)

    def tokens(self, texts: list[str], prompt: str = "") -> list[np.ndarray]:
        """Token ids of each prompted, cleaned text, without special tokens (one call: the tokenizer runs them in parallel)."""
        if not texts:
            return []
        texts = [prompt + clean_lyrics(text) for text in texts]
        return [np.array(ids, dtype=np.int32) for ids in self._ids(texts)]

    def _ids(self, texts: list[str]) -> list[list[int]]:
        texts = [text.lower() for text in texts] if self.lowercase else texts
        return self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]

    def prompt_ids(self, prompt: str) -> np.ndarray:
        """A prompt's own token ids."""
        return np.array(self._ids([prompt])[0] if prompt else [], dtype=np.int32)


class TextEncoder:
    """Embeds texts of any length: long ones are split into windows whose embeddings are averaged.

    Each window holds at most `max_tokens` tokens, the tokenizer's own special tokens and the
    prompt included; it is pooled as the model's configuration says and L2-normalised. A text's
    embedding is the token-count-weighted mean of its windows, L2-normalised again. With
    `long_text="truncate"` only the first window is used (sentence-transformers' behaviour).
    Lyrics are passages (`encode`); a description typed by a person is a query (`encode_query`).
    """

    def __init__(
        self, name: str, source: str | Path, long_text: str = "windows", runtime: Runtime = RUNTIMES["cpu"]
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        if long_text not in ("windows", "truncate"):
            raise ValueError(f"long_text must be 'windows' or 'truncate', not {long_text!r}")
        self.name = name
        self.long_text = long_text
        self.runtime = runtime
        self.config = read_sentence_config(str(source))
        folder = self.config.transformer_folder
        self.tokenizer = AutoTokenizer.from_pretrained(str(source), subfolder=folder)
        self.model = AutoModel.from_pretrained(str(source), subfolder=folder).eval().to(runtime.torch_device)
        model_limit = int(getattr(self.model.config, "max_position_embeddings", 512))
        self.max_tokens = min(self.config.max_seq_length or self.tokenizer.model_max_length, model_limit)
        self.dim = int(self.model.config.hidden_size) * len(self.config.pooling)
        self._prefix, self._suffix = (np.array(ids, dtype=np.int32) for ids in self._special_tokens())
        self.preparation = TextPreparation(self.tokenizer, self.config.lowercase, self.config.passage_prompt)
        pad = self.tokenizer.pad_token_id
        # RoBERTa-style models (MPNet) derive positions from the pad id, so padding must use it.
        self._pad_id = pad if pad is not None else (getattr(self.model.config, "pad_token_id", None) or 0)

    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """The ids the tokenizer puts before and after one text: [CLS] ... [SEP], <s> ... </s>, ..."""
        bare = self.tokenizer("songspace", add_special_tokens=False)["input_ids"]
        full = self.tokenizer("songspace", add_special_tokens=True)["input_ids"]
        for start in range(len(full) - len(bare) + 1):
            if full[start : start + len(bare)] == bare:
                return full[:start], full[start + len(bare) :]
        raise EncoderUnavailable(f"text encoder {self.name!r}: its tokenizer's special tokens could not be found")

    def _windows(self, ids: np.ndarray, prompt_ids: np.ndarray) -> list[np.ndarray]:
        """The model inputs for one prompted text's ids: the prompt and a slice of the text between special tokens."""
        # The prompt's tokens are those it shares with the joint tokenisation: a BPE tokenizer may
        # merge its trailing space into the first word, and that word then belongs to the text.
        common = min(len(prompt_ids), len(ids))
        differ = np.flatnonzero(prompt_ids[:common] != ids[:common])
        shared = int(differ[0]) if len(differ) else common
        head, body = ids[:shared], ids[shared:]
        room = self.max_tokens - len(self._prefix) - len(self._suffix) - len(head)
        if room < 1:
            raise ValueError(f"the prompt ({len(head)} tokens) leaves no room in {self.max_tokens}-token windows")
        chunks = [body[start : start + room] for start in range(0, max(len(body), 1), room)]
        if self.long_text == "truncate":
            chunks = chunks[:1]
        return [np.concatenate((self._prefix, head, chunk, self._suffix)) for chunk in chunks]

    def _pooled(self, windows: list[np.ndarray], prompt_tokens: int) -> torch.Tensor:
        """Pooled, L2-normalised float32 vectors of equally prompted windows, as one batch."""
        device = self.runtime.torch_device
        lengths = np.array([len(window) for window in windows])
        # Built in one go: a tensor per window cost 40 us each, a quarter of a GPU's time per window.
        keep = np.arange(lengths.max()) < lengths[:, None]
        ids = np.full(keep.shape, self._pad_id, dtype=np.int64)
        ids[keep] = np.concatenate(windows)
        input_ids = torch.from_numpy(ids).to(device)
        attention = torch.from_numpy(keep.astype(np.int64)).to(device)
        with self.runtime.autocast():
            states = self.model(input_ids=input_ids, attention_mask=attention).last_hidden_state
        pooling_mask = attention
        if not self.config.include_prompt and prompt_tokens:
            # Such models (INSTRUCTOR) pool the text only: the leading special tokens and the prompt are left out.
            pooling_mask = attention.clone()
            pooling_mask[:, : len(self._prefix) + prompt_tokens] = 0
        pooled = pool(states.float(), pooling_mask, self.config.pooling)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def encode_tokens(self, tokens: list[np.ndarray], prompt: str) -> np.ndarray:
        """Embed texts that `preparation.tokens(texts, prompt)` tokenised; one unit float32 row each."""
        if not tokens:
            return np.zeros((0, self.dim), dtype=np.float32)
        windows: list[np.ndarray] = []
        owner: list[int] = []
        prompt_ids = self.preparation.prompt_ids(prompt)
        for index, ids in enumerate(tokens):
            for window in self._windows(ids, prompt_ids):
                windows.append(window)
                owner.append(index)
        prompt_tokens = len(prompt_ids)
        # Sorting by length keeps padding, and so wasted compute, small within each batch.
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        window_vectors = np.zeros((len(windows), self.dim), dtype=np.float32)
        # The runtime's batch is of 256-token windows; longer windows go fewer at a time (memory).
        batch_size = max(1, self.runtime.text_batch * 256 // max(self.max_tokens, 256))
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch_ids = order[start : start + batch_size]
                pooled = self._pooled([windows[i] for i in batch_ids], prompt_tokens)
                window_vectors[batch_ids] = pooled.cpu().numpy()
        weights = np.array([len(w) for w in windows], dtype=np.float32)
        vectors = np.zeros((len(tokens), self.dim), dtype=np.float32)
        np.add.at(vectors, owner, window_vectors * weights[:, None])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed passages (lyrics), with the model's passage prompt if it has one; one unit float32 row each."""
        return self.encode_passages(self.preparation.passages(texts))

    def encode_passages(self, tokens: list[np.ndarray]) -> np.ndarray:
        """Embed passages tokenised beforehand by `preparation.passages`."""
        return self.encode_tokens(tokens, self.preparation.passage_prompt)

    @functools.cached_property
    def fingerprint(self) -> str:
        """Identifies the model: its configuration, windows and weights (see `base.fingerprint`)."""
        # Where the model was loaded from, and by which transformers, do not change what it computes.
        config = {k: v for k, v in self.model.config.to_dict().items() if k not in ("_name_or_path", "transformers_version")}
        description = repr((self.config, self.max_tokens, self.long_text)) + json.dumps(config, sort_keys=True, default=str)
        return fingerprint(self.model, description)

    def encode_query(self, texts: list[str]) -> np.ndarray:
        """Embed queries (a description typed on the page), with the model's query prompt if it has one."""
        prompt = self.config.query_prompt
        return self.encode_tokens(self.preparation.tokens(texts, prompt), prompt)
