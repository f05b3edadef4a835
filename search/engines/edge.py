"""The Qdrant Edge engine: the server's Rust engine in-process, one shard per collection folder.

Layout: `QDRANT_PATH/<collection>/shard/` holds the shard (segments and write-ahead log) and
`QDRANT_PATH/<collection>/metadata.json` what a server keeps as collection metadata. Edge builds
no HNSW unless asked (`optimize()`), so by default every dense query is an exact scan; sparse
queries use the inverted index, which is exact too. With SEARCH_MODE=approximate the ranking
vector gets an HNSW graph and int8 quantization (as on a server) once `optimize()` has run, and
is searched with them. One process at a time: the write-ahead log is locked.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from typing import Any

import qdrant_edge as qe

from search.engines.base import (
    Engine,
    Filter,
    HasId,
    Hit,
    Match,
    Range,
    Schema,
    SparseVector,
    StoredPoint,
    StoreUnavailable,
    hit_from,
    vector_to,
    Text,
    Vector,
    WithPayload,
    WithVectors,
)
from search.settings import Settings

_DISTANCES = {"cosine": qe.Distance.Cosine, "dot": qe.Distance.Dot}
_FIELD_TYPES = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "integer": qe.PayloadSchemaType.Integer,
    "text": qe.PayloadSchemaType.Text,
}
METADATA_FILE = "metadata.json"


def to_edge_filter(where: Filter | None) -> qe.Filter | None:
    """A neutral filter as Edge's."""
    if not where:
        return None

    def condition(c: Any) -> Any:
        if isinstance(c, Match):
            values = list(c.values)
            match = qe.MatchValue(values[0]) if len(values) == 1 else qe.MatchAny(values)
            return qe.FieldCondition(key=c.key, match=match)
        if isinstance(c, Range):
            return qe.FieldCondition(key=c.key, range=qe.RangeFloat(gte=c.gte, lte=c.lte))
        if isinstance(c, Text):
            return qe.FieldCondition(key=c.key, match=qe.MatchText(c.text))
        if isinstance(c, HasId):
            return qe.HasIdCondition({str(i) for i in c.ids})
        raise TypeError(f"unknown condition {c!r}")

    return qe.Filter(
        must=[condition(c) for c in where.must] or None,
        must_not=[condition(c) for c in where.must_not] or None,
    )


def _point_id(value: str) -> Any:
    # Edge takes UUIDs as UUID objects or strings, and integer ids as ints.
    return int(value) if value.isdigit() else str(uuid.UUID(value))


class EdgeEngine(Engine):
    """A collection in a Qdrant Edge shard on this machine."""

    # One writer thread, so batches land in order: the shard's update releases the GIL, and on a
    # GPU the next batch is embedded meanwhile.
    writers = 1

    def __init__(self, settings: Settings, collection: str) -> None:
        self.settings = settings
        self.folder = settings.qdrant_path / collection
        self.label = f"Qdrant Edge at {settings.qdrant_path}"
        self._shard: qe.EdgeShard | None = None
        self._metadata: dict[str, Any] | None = None
        self._params = (
            qe.SearchParams(exact=True)
            if settings.search_mode == "exact"
            else qe.SearchParams(
                hnsw_ef=settings.hnsw_ef, quantization=qe.QuantizationSearchParams(rescore=True, oversampling=2.0)
            )
        )
        if (self.folder / "shard").is_dir():
            self._shard = self._open(lambda: qe.EdgeShard.load(str(self.folder / "shard")))

    def _open(self, opener: Any) -> qe.EdgeShard:
        try:
            return opener()
        except Exception as error:  # Edge raises a plain Exception carrying the runtime's message
            if "WouldBlock" not in str(error):
                raise
            raise StoreUnavailable(
                f"The embedded store at {self.folder.parent} is open in another process (only one "
                "may use it at a time). Stop the other Songspace process (the app or an ingestion), "
                "or run a Qdrant server with `docker compose up -d` and set QDRANT_URL."
            ) from None

    @property
    def shard(self) -> qe.EdgeShard:
        """The open shard; the collection must exist."""
        if self._shard is None:
            raise RuntimeError(f"collection folder {self.folder} has no shard yet")
        return self._shard

    def exists(self) -> bool:
        return self._shard is not None and (self.folder / METADATA_FILE).is_file()

    def create(self, schema: Schema, metadata: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._shard is None:
            settings = self.settings
            quantization = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, always_ram=True)
            vectors = {}
            for spec in schema.dense:
                searched = spec.name == schema.searched
                vectors[spec.name] = qe.EdgeVectorParams(
                    size=spec.size,
                    distance=_DISTANCES[spec.distance],
                    quantization_config=quantization if searched and settings.quantization == "int8" else None,
                    # Only the ranking vector is searched; the others are read by id, a few songs at
                    # a time, so they stay on disk and cost no memory until read.
                    memory=None if searched else qe.Memory.Cold,
                    hnsw_config=qe.HnswIndexConfig(
                        m=settings.hnsw_m if searched else 0, ef_construct=settings.hnsw_ef_construct, full_scan_threshold=10_000
                    ),
                )
            config = qe.EdgeConfig(
                vectors=vectors,
                sparse_vectors={name: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf) for name in schema.sparse},
            )
            self._shard = self._open(lambda: qe.EdgeShard.create(str(self.folder / "shard"), config))
        for name, kind in schema.indexed.items():
            self.shard.update(qe.UpdateOperation.create_field_index(name, _FIELD_TYPES[kind]))
        # The metadata file is written last: its presence is what makes the collection exist.
        self._write_metadata(metadata)

    def drop(self) -> None:
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        self._metadata = None

    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            path = self.folder / METADATA_FILE
            self._metadata = json.loads(path.read_text()) if path.is_file() else {}
        return dict(self._metadata)

    def update_metadata(self, changes: dict[str, Any]) -> None:
        self._write_metadata({**self.metadata(), **changes})

    def _write_metadata(self, metadata: dict[str, Any]) -> None:
        # Atomic: a reader or a crash sees the old file or the new one, never half of one.
        handle, partial = tempfile.mkstemp(dir=self.folder, prefix=".metadata-", suffix=".json")
        with os.fdopen(handle, "w") as out:
            json.dump(metadata, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, self.folder / METADATA_FILE)
        self._metadata = dict(metadata)

    def upsert(self, points: list[StoredPoint]) -> None:
        self.shard.update(
            qe.UpdateOperation.upsert_points(
                [
                    qe.Point(
                        id=_point_id(p.point_id),
                        vector={n: vector_to(v, qe.SparseVector) for n, v in p.vectors.items()},
                        payload=p.payload,
                    )
                    for p in points
                ]
            )
        )

    def delete(self, point_ids: list[str]) -> None:
        self.shard.update(qe.UpdateOperation.delete_points([_point_id(i) for i in point_ids]))

    def delete_where(self, where: Filter) -> None:
        self.shard.update(qe.UpdateOperation.delete_points_by_filter(to_edge_filter(where)))

    def overwrite_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        self.shard.update(qe.UpdateOperation.overwrite_payload([_point_id(point_id)], payload))

    def retrieve(self, point_ids: list[str], with_payload: WithPayload, with_vectors: WithVectors) -> list[Hit]:
        records = self.shard.retrieve([_point_id(i) for i in point_ids], with_payload=with_payload, with_vector=with_vectors)
        return [hit_from(r) for r in records]

    def scroll(
        self, where: Filter | None, limit: int, offset: str | None, with_payload: WithPayload
    ) -> tuple[list[Hit], str | None]:
        records, next_offset = self.shard.scroll(
            qe.ScrollRequest(
                offset=None if offset is None else _point_id(offset),
                limit=limit,
                filter=to_edge_filter(where),
                with_payload=with_payload,
                with_vector=False,
            )
        )
        return [hit_from(r) for r in records], None if next_offset is None else str(next_offset)

    def count(self, where: Filter | None = None) -> int:
        return self.shard.count(qe.CountRequest(exact=True, filter=to_edge_filter(where)))

    def query(
        self,
        using: str,
        vector: Vector,
        limit: int,
        where: Filter | None = None,
        with_payload: WithPayload = False,
        with_vectors: WithVectors = False,
    ) -> list[Hit]:
        sparse = isinstance(vector, SparseVector)
        points = self.shard.query(
            qe.QueryRequest(
                query=qe.Query.Nearest(vector_to(vector, qe.SparseVector), using=using),
                limit=limit,
                filter=to_edge_filter(where),
                # Sparse search is exact by construction; dense search follows SEARCH_MODE.
                params=qe.SearchParams(exact=True) if sparse else self._params,
                with_payload=with_payload,
                with_vector=with_vectors,
            )
        )
        return [hit_from(p) for p in points]

    def facet(self, key: str, where: Filter | None = None, limit: int = 1000) -> list[tuple[Any, int]]:
        response = self.shard.facet(qe.FacetRequest(key=key, limit=limit, exact=True, filter=to_edge_filter(where)))
        return [(hit.value, hit.count) for hit in response]

    def optimize(self) -> bool:
        """Merge segments and, in approximate mode, build HNSW: Edge does neither by itself."""
        return self.shard.optimize()

    def close(self) -> None:
        if self._shard is not None:
            self._shard.close()
            self._shard = None

