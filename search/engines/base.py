"""What every storage engine offers the song index, in engine-neutral types."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Distance = Literal["cosine", "dot"]
FieldType = Literal["keyword", "integer", "text"]


class SongIndexError(RuntimeError):
    """Base for index problems that users can act on."""


class StoreUnavailable(SongIndexError):
    """The store cannot be opened: a server is unreachable or the embedded store is locked."""


@dataclass(frozen=True)
class SparseVector:
    """Term weights by term index, as Qdrant stores sparse vectors."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    @classmethod
    def from_dict(cls, weights: dict[int, float]) -> SparseVector:
        """A sparse vector from {term index: weight}, dropping zero weights, indices sorted."""
        kept = sorted((i, w) for i, w in weights.items() if w != 0.0)
        return cls(tuple(i for i, _ in kept), tuple(float(w) for _, w in kept))

    def to_dict(self) -> dict[int, float]:
        """{term index: weight}."""
        return dict(zip(self.indices, self.values))

    def __bool__(self) -> bool:
        return bool(self.indices)


Vector = np.ndarray | SparseVector


@dataclass(frozen=True)
class DenseSpec:
    """A named dense vector of the collection."""

    name: str
    size: int
    distance: Distance


@dataclass(frozen=True)
class Schema:
    """The collection's vectors and the payload fields that filters and lookups use."""

    dense: tuple[DenseSpec, ...]
    sparse: tuple[str, ...]
    indexed: dict[str, FieldType] = field(default_factory=dict)
    searched: str = ""  # the vector that carries ranking queries (HNSW and quantization go there)


@dataclass(frozen=True)
class Match:
    """A payload field equals one of `values` (for list fields: any element does)."""

    key: str
    values: tuple[str | int, ...]


@dataclass(frozen=True)
class Range:
    """A numeric payload field lies in [gte, lte] (either end open when None)."""

    key: str
    gte: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class Text:
    """A full-text-indexed payload field contains every word of `text`."""

    key: str
    text: str


@dataclass(frozen=True)
class HasId:
    """The point is one of these ids."""

    ids: tuple[str, ...]


Condition = Match | Range | Text | HasId


@dataclass(frozen=True)
class Filter:
    """Conditions that must all hold, and conditions none of which may hold."""

    must: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.must or self.must_not)

    def also(self, *, must: tuple[Condition, ...] = (), must_not: tuple[Condition, ...] = ()) -> Filter:
        """This filter with more conditions."""
        return Filter(self.must + must, self.must_not + must_not)


@dataclass
class StoredPoint:
    """A point as the engine stores it: id, payload, dense and sparse vectors by name."""

    point_id: str
    payload: dict[str, Any]
    vectors: dict[str, Vector] = field(default_factory=dict)


@dataclass
class Hit:
    """A point as an engine returns it; `vectors` holds only those asked for and present."""

    point_id: str
    score: float = 0.0
    payload: dict[str, Any] | None = None
    vectors: dict[str, Vector] = field(default_factory=dict)


WithPayload = bool | list[str]
WithVectors = bool | list[str]


def vector_from(value: Any) -> Vector:
    """A vector as either Qdrant library returns it, in neutral form."""
    if hasattr(value, "indices"):  # qdrant-client's and Edge's sparse vectors alike
        return SparseVector(tuple(value.indices), tuple(value.values))
    return np.asarray(value, dtype=np.float32)


def vector_to(value: Vector, sparse_type: Any) -> Any:
    """A neutral vector as a Qdrant library takes it (`sparse_type` is that library's SparseVector)."""
    if isinstance(value, SparseVector):
        return sparse_type(indices=list(value.indices), values=list(value.values))
    return np.asarray(value, dtype=np.float32).tolist()


def hit_from(record: Any) -> Hit:
    """A point as either Qdrant library returns it (a record or a scored point), in neutral form."""
    vectors = record.vector if isinstance(record.vector, dict) else {}
    return Hit(
        point_id=str(record.id),
        score=float(getattr(record, "score", 0.0) or 0.0),
        payload=record.payload,
        vectors={name: vector_from(v) for name, v in vectors.items()},
    )


class Engine(ABC):
    """One collection in one store. Queries are exact unless the engine was opened approximate."""

    label: str  # for people: the engine and where it stores
    # Batches ingestion may write at once from background threads while it embeds the next ones
    # (0: written in line, by the thread that embeds).
    writers: int = 0

    @abstractmethod
    def exists(self) -> bool:
        """Whether the collection has been created."""

    @abstractmethod
    def create(self, schema: Schema, metadata: dict[str, Any]) -> None:
        """Create the collection with its schema, payload indexes and metadata."""

    @abstractmethod
    def drop(self) -> None:
        """Delete the collection and everything in it."""

    @abstractmethod
    def metadata(self) -> dict[str, Any]:
        """The collection's metadata ({} before it exists)."""

    @abstractmethod
    def update_metadata(self, changes: dict[str, Any]) -> None:
        """Add or replace metadata keys."""

    @abstractmethod
    def upsert(self, points: list[StoredPoint]) -> None:
        """Insert or replace points, durably, before returning."""

    @abstractmethod
    def delete(self, point_ids: list[str]) -> None:
        """Remove points by id."""

    @abstractmethod
    def delete_where(self, where: Filter) -> None:
        """Remove every point that matches `where`."""

    @abstractmethod
    def overwrite_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        """Replace one point's payload, keeping its vectors."""

    @abstractmethod
    def retrieve(self, point_ids: list[str], with_payload: WithPayload, with_vectors: WithVectors) -> list[Hit]:
        """The points with these ids that exist, in no particular order."""

    @abstractmethod
    def scroll(
        self, where: Filter | None, limit: int, offset: str | None, with_payload: WithPayload
    ) -> tuple[list[Hit], str | None]:
        """A page of points in id order, and the offset of the next page (None after the last)."""

    @abstractmethod
    def count(self, where: Filter | None = None) -> int:
        """The exact number of points (that match `where`)."""

    @abstractmethod
    def query(
        self,
        using: str,
        vector: Vector,
        limit: int,
        where: Filter | None = None,
        with_payload: WithPayload = False,
        with_vectors: WithVectors = False,
    ) -> list[Hit]:
        """The best `limit` points for `vector` in the vector `using`, best first, with scores.

        Dense queries score by the vector's distance; sparse ones by the dot product with the
        query's weights scaled by each term's inverse document frequency in the collection.
        """

    @abstractmethod
    def facet(self, key: str, where: Filter | None = None, limit: int = 1000) -> list[tuple[Any, int]]:
        """The values of a keyword or integer payload field with their point counts, most first."""

    def optimize(self) -> bool | None:
        """Build the indexes the engine builds only on request; None where it builds them itself."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Release the store."""
