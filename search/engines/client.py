"""The qdrant-client engine: a Qdrant server (QDRANT_URL), or qdrant-client's local mode on a folder.

Both speak the same API, so one module serves both. Local mode is pure Python, scans every vector
and ignores indexes and search parameters; a server uses HNSW, quantization and payload indexes
as the settings say, and is queried exactly (`exact=True`) unless SEARCH_MODE=approximate.
"""

from __future__ import annotations

import warnings
from typing import Any

from qdrant_client import QdrantClient, models

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

_DISTANCES = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT}
_FIELD_TYPES = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "text": models.PayloadSchemaType.TEXT,
}


def to_qdrant_filter(where: Filter | None) -> models.Filter | None:
    """A neutral filter as qdrant-client's."""
    if not where:
        return None

    def condition(c: Any) -> Any:
        if isinstance(c, Match):
            return models.FieldCondition(key=c.key, match=models.MatchAny(any=list(c.values)))
        if isinstance(c, Range):
            return models.FieldCondition(key=c.key, range=models.Range(gte=c.gte, lte=c.lte))
        if isinstance(c, Text):
            return models.FieldCondition(key=c.key, match=models.MatchText(text=c.text))
        if isinstance(c, HasId):
            return models.HasIdCondition(has_id=list(c.ids))
        raise TypeError(f"unknown condition {c!r}")

    return models.Filter(
        must=[condition(c) for c in where.must] or None,
        must_not=[condition(c) for c in where.must_not] or None,
    )


class ClientEngine(Engine):
    """A collection on a Qdrant server or in qdrant-client's local mode."""

    def __init__(self, settings: Settings, collection: str) -> None:
        self.settings = settings
        self.collection = collection
        self.server = bool(settings.qdrant_url)
        # A server takes parallel writes; local mode's in-process store is written in line.
        self.writers = 4 if self.server else 0
        self.client = self._connect(settings)
        self.label = f"server {settings.qdrant_url}" if self.server else f"local mode at {settings.qdrant_path}"
        self._params = None
        if self.server:
            self._params = (
                models.SearchParams(exact=True, quantization=models.QuantizationSearchParams(ignore=True))
                if settings.search_mode == "exact"
                else models.SearchParams(
                    hnsw_ef=settings.hnsw_ef,
                    quantization=models.QuantizationSearchParams(rescore=True, oversampling=2.0),
                )
            )

    @staticmethod
    def _connect(settings: Settings) -> QdrantClient:
        if settings.qdrant_url:
            client = QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key, timeout=60)
            try:
                client.get_collections()
            except Exception as error:  # the client raises transport-specific errors
                raise StoreUnavailable(
                    f"Qdrant at {settings.qdrant_url} is unreachable or refused the key "
                    f"({error.__class__.__name__}). Start it with `docker compose up -d`, or unset "
                    "QDRANT_URL to use the embedded store."
                ) from error
            return client
        settings.qdrant_path.mkdir(parents=True, exist_ok=True)
        try:
            return QdrantClient(path=str(settings.qdrant_path))
        except RuntimeError as error:
            if "already accessed" not in str(error):
                raise
            raise StoreUnavailable(
                f"The embedded store at {settings.qdrant_path} is open in another process (only one "
                "may use it at a time). Stop the other Songspace process (the app or an ingestion), "
                "or run a Qdrant server with `docker compose up -d` and set QDRANT_URL."
            ) from None

    def exists(self) -> bool:
        return self.client.collection_exists(self.collection)

    def create(self, schema: Schema, metadata: dict[str, Any]) -> None:
        settings = self.settings
        quantization = (
            models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True))
            if settings.quantization == "int8"
            else None
        )
        vectors = {}
        for spec in schema.dense:
            searched = spec.name == schema.searched
            vectors[spec.name] = models.VectorParams(
                size=spec.size,
                distance=_DISTANCES[spec.distance],
                # Only the ranking vector is searched (its quantized copy stays in RAM); the others are
                # read by id, a few songs at a time, so they always live on disk.
                on_disk=settings.on_disk if searched else True,
                hnsw_config=None if searched else models.HnswConfigDiff(m=0),
                quantization_config=quantization if searched else None,
            )
        self.client.create_collection(
            self.collection,
            vectors_config=vectors,
            sparse_vectors_config={
                name: models.SparseVectorParams(modifier=models.Modifier.IDF) for name in schema.sparse
            },
            hnsw_config=models.HnswConfigDiff(m=settings.hnsw_m, ef_construct=settings.hnsw_ef_construct),
            shard_number=settings.shards,
            replication_factor=settings.replication_factor,
            write_consistency_factor=settings.write_consistency_factor,
            on_disk_payload=settings.on_disk,
            metadata=metadata,
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for name, kind in schema.indexed.items():
                self.client.create_payload_index(self.collection, name, field_schema=_FIELD_TYPES[kind], wait=True)

    def drop(self) -> None:
        self.client.delete_collection(self.collection)

    def metadata(self) -> dict[str, Any]:
        if not self.exists():
            return {}
        return dict(self.client.get_collection(self.collection).config.metadata or {})

    def update_metadata(self, changes: dict[str, Any]) -> None:
        self.client.update_collection(self.collection, metadata=changes)

    def upsert(self, points: list[StoredPoint]) -> None:
        self.client.upsert(
            self.collection,
            points=[
                models.PointStruct(
                    id=p.point_id,
                    payload=p.payload,
                    vector={n: vector_to(v, models.SparseVector) for n, v in p.vectors.items()},
                )
                for p in points
            ],
            wait=True,
        )

    def delete(self, point_ids: list[str]) -> None:
        self.client.delete(self.collection, points_selector=models.PointIdsList(points=point_ids), wait=True)

    def delete_where(self, where: Filter) -> None:
        self.client.delete(self.collection, points_selector=models.FilterSelector(filter=to_qdrant_filter(where)), wait=True)

    def overwrite_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        self.client.overwrite_payload(self.collection, payload=payload, points=[point_id], wait=True)

    def retrieve(self, point_ids: list[str], with_payload: WithPayload, with_vectors: WithVectors) -> list[Hit]:
        records = self.client.retrieve(
            self.collection, ids=point_ids, with_payload=with_payload, with_vectors=with_vectors
        )
        return [hit_from(r) for r in records]

    def scroll(
        self, where: Filter | None, limit: int, offset: str | None, with_payload: WithPayload
    ) -> tuple[list[Hit], str | None]:
        records, next_offset = self.client.scroll(
            self.collection,
            scroll_filter=to_qdrant_filter(where),
            limit=limit,
            offset=offset,
            with_payload=with_payload,
            with_vectors=False,
        )
        return [hit_from(r) for r in records], None if next_offset is None else str(next_offset)

    def count(self, where: Filter | None = None) -> int:
        return self.client.count(self.collection, count_filter=to_qdrant_filter(where), exact=True).count

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
        points = self.client.query_points(
            self.collection,
            query=vector_to(vector, models.SparseVector),
            using=using,
            limit=limit,
            query_filter=to_qdrant_filter(where),
            # Sparse search is exact by construction; dense search follows SEARCH_MODE.
            search_params=None if sparse else self._params,
            with_payload=with_payload,
            with_vectors=with_vectors,
        ).points
        return [hit_from(p) for p in points]

    def facet(self, key: str, where: Filter | None = None, limit: int = 1000) -> list[tuple[Any, int]]:
        response = self.client.facet(self.collection, key, facet_filter=to_qdrant_filter(where), limit=limit, exact=True)
        return [(hit.value, hit.count) for hit in response.hits]

    def close(self) -> None:
        self.client.close()
