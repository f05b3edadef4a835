"""Wiring for the programs: settings to an open index, its encoders, the embedder and cover fetcher."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.covers import CoverFetcher
from ingest.embedder import Embedder, resolve_encoders
from ingest.embedding_cache import EmbeddingCache
from search.index import LYRICS, SongIndex, open_index
from search.recommend import Filters, Query
from search.settings import Settings


@dataclass
class Songspace:
    """Everything a program needs to ingest into and search one collection."""

    settings: Settings
    index: SongIndex
    embedder: Embedder
    fetcher: CoverFetcher
    notice: str

    def text_query(self, text: str, filters: Filters | None = None) -> Query:
        """A query for songs whose lyrics match a description: its meaning and its words."""
        vector = self.index.to_index_space(LYRICS, self.embedder.text.encode([text])[0])
        return Query({LYRICS: vector}, self.embedder.words.query(text) or None, filters or Filters())

    def close(self) -> None:
        """Release the store (the embedded store admits one process at a time) and the cache."""
        if self.embedder.cache is not None:
            self.embedder.cache.close()
        self.index.close()


class EmptyCatalogue(RuntimeError):
    """The collection does not exist yet: nothing has been ingested."""


def open_songspace(settings: Settings, create: bool = True) -> Songspace:
    """Open the store and the collection's encoders, creating the collection if `create`."""
    index = open_index(settings)
    if not create and not index.exists():
        index.close()
        raise EmptyCatalogue(
            f"collection {settings.collection!r} in the {settings.store_label} is empty: load a "
            "catalogue with `python -m ingest CATALOGUE` (for example data/sample/hymns.csv)"
        )
    encoders, notice = resolve_encoders(settings, index)
    index.ensure(encoders, notice)
    cache = EmbeddingCache(settings.cache_dir / "embeddings.sqlite")
    return Songspace(settings, index, Embedder(encoders, settings, cache), CoverFetcher(settings), notice)
