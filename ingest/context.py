"""Wiring for the programs: settings to an open index, its encoders, the embedder and cover fetcher."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.covers import CoverFetcher
from ingest.embedder import Embedder, resolve_encoders
from ingest.embedding_cache import EmbeddingCache
from search.cli import empty_collection
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
        vector = self.index.to_index_space(LYRICS, self.embedder.text.encode_query([text])[0])
        return Query({LYRICS: vector}, self.embedder.words.query(text) or None, filters or Filters())

    def close(self) -> None:
        """Release the store (the embedded store admits one process at a time) and the cache."""
        if self.embedder.cache is not None:
            self.embedder.cache.close()
        self.index.close()


class EmptyCatalogue(RuntimeError):
    """The collection does not exist yet or holds no songs: nothing has been ingested."""


def open_songspace(settings: Settings, create: bool = True) -> Songspace:
    """Open the store and the collection's encoders, creating the collection if `create`; without
    `create`, a collection that is missing or holds no songs raises EmptyCatalogue."""
    index = open_index(settings)
    if not create and index.count() == 0:
        index.close()
        raise EmptyCatalogue(empty_collection(settings))
    encoders, notice = resolve_encoders(settings, index)
    index.ensure(encoders, notice)
    cache = EmbeddingCache(settings.cache_dir / "embeddings.sqlite")
    return Songspace(settings, index, Embedder(encoders, settings, cache), CoverFetcher(settings), notice)


def open_unchanged(settings: Settings) -> Songspace:
    """The collection's recorded encoders, else those the settings choose, with nothing created:
    no collection and no embedding cache (for dry runs)."""
    index = open_index(settings)
    try:
        encoders, notice = resolve_encoders(settings, index)
    except BaseException:
        index.close()
        raise
    return Songspace(settings, index, Embedder(encoders, settings), CoverFetcher(settings), notice)
