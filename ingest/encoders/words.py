"""Lyrics as words: BM25 term weights for the collection's sparse `words` vector.

Tokenising (English stop words, Snowball stemming) and BM25's term-frequency saturation come
from Qdrant Edge's BM25 model, the same as a Qdrant server's, so every engine stores the same
weights. The inverse document frequencies are not in the vectors: Qdrant applies them at query
time from the whole collection (the IDF modifier), so they stay right as the catalogue grows.
"""

from __future__ import annotations

import math

import qdrant_edge as qe

from ingest.encoders.lyrics import clean_lyrics
from search.engines.base import SparseVector


class WordsEncoder:
    """BM25 document and query weights of English text."""

    def __init__(self, name: str = "bm25-english", language: str = "english") -> None:
        self.name = name
        self._model = qe.Bm25(qe.Bm25Config(language=language))

    def document(self, lyrics: str) -> SparseVector:
        """A song's words: BM25 term weights scaled to unit length, so long lyrics do not dominate."""
        embedded = self._model.embed_document(clean_lyrics(lyrics))
        norm = math.sqrt(sum(v * v for v in embedded.values)) or 1.0
        return SparseVector(tuple(embedded.indices), tuple(v / norm for v in embedded.values))

    def query(self, text: str) -> SparseVector:
        """A description's words: weight 1 for each distinct term, as a BM25 query."""
        embedded = self._model.embed_query(clean_lyrics(text))
        return SparseVector(tuple(embedded.indices), tuple(float(v) for v in embedded.values))
