"""The song index: one Qdrant collection, a point per song, named `lyrics` and `cover` vectors."""

from __future__ import annotations

import unicodedata
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from search.settings import Settings

LYRICS = "lyrics"
COVER = "cover"
MODALITIES = (LYRICS, COVER)
# Fields that filters use get payload indexes (a server uses them; local mode scans anyway).
INDEXED_FIELDS = {
    "song_id": models.PayloadSchemaType.KEYWORD,
    "artists": models.PayloadSchemaType.KEYWORD,
    "genre": models.PayloadSchemaType.KEYWORD,
    "source": models.PayloadSchemaType.KEYWORD,
    "spotify_id": models.PayloadSchemaType.KEYWORD,
    "year": models.PayloadSchemaType.INTEGER,
}
_ID_NAMESPACE = uuid.UUID("5d0b7f0e-3c55-4c8e-9a7e-1f3c2b9a6d41")


class SongIndexError(RuntimeError):
    """Base for index problems that users can act on."""


class StoreUnavailable(SongIndexError):
    """The Qdrant store cannot be opened: a server is unreachable or the embedded store is locked."""


class EncoderMismatch(SongIndexError):
    """The collection was built with other encoders than the ones asked for."""


@dataclass(frozen=True)
class IndexEncoders:
    """The encoders that built a collection, recorded in its metadata."""

    text: str
    text_dim: int
    image: str
    image_dim: int
    long_text: str = "windows"

    def to_metadata(self) -> dict[str, Any]:
        """The form stored in the collection's metadata."""
        return {"encoders": self.__dict__.copy()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any] | None) -> IndexEncoders | None:
        """Read back what `to_metadata` stored, or None for a collection without it."""
        recorded = (metadata or {}).get("encoders")
        return cls(**recorded) if recorded else None

    def dim(self, modality: str) -> int:
        """The vector size of `lyrics` or `cover`."""
        return self.text_dim if modality == LYRICS else self.image_dim


@dataclass
class SongPoint:
    """A song as stored: its id, payload and whichever vectors it has (never a filler vector)."""

    point_id: str
    payload: dict[str, Any]
    vectors: dict[str, np.ndarray] = field(default_factory=dict)


def normalise_text(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form of a title or artist, for matching."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    kept = "".join(c if c.isalnum() else " " for c in decomposed if not unicodedata.combining(c))
    return " ".join(kept.split())


def song_point_id(
    *, spotify_id: str | None, song_id: str | None, artists: list[str], title: str
) -> str:
    """A deterministic point id: from the Spotify id, else the catalogue id, else artist and title."""
    if spotify_id:
        key = f"spotify:{spotify_id}"
    elif song_id:
        key = f"catalogue:{song_id}"
    else:
        key = f"song:{normalise_text(' '.join(artists))}|{normalise_text(title)}"
    return str(uuid.uuid5(_ID_NAMESPACE, key))


def connect(settings: Settings) -> QdrantClient:
    """Open the server named by QDRANT_URL, or the embedded store at QDRANT_PATH."""
    if settings.qdrant_url:
        client = QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key, timeout=30)
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


class SongIndex:
    """One collection of songs, with the encoders that built it."""

    def __init__(self, client: QdrantClient, collection: str) -> None:
        self.client = client
        self.collection = collection
        self._metadata: dict[str, Any] | None = None
        self._centres: dict[str, np.ndarray] | None = None  # the recorded centres, as arrays

    def exists(self) -> bool:
        """Whether the collection has been created."""
        return self.client.collection_exists(self.collection)

    def metadata(self) -> dict[str, Any]:
        """The collection's metadata ({} before it exists), read once: what it records never changes."""
        if self._metadata is None:
            if not self.exists():
                return {}
            self._metadata = dict(self.client.get_collection(self.collection).config.metadata or {})
        return self._metadata

    @property
    def encoders(self) -> IndexEncoders | None:
        """The encoders recorded in the collection, or None if it does not exist yet."""
        return IndexEncoders.from_metadata(self.metadata())

    def ensure(self, encoders: IndexEncoders, notice: str = "") -> None:
        """Create the collection for `encoders` (recording why they were chosen), or check that it
        was built with them."""
        recorded = self.encoders
        if recorded is not None:
            if recorded != encoders:
                raise EncoderMismatch(
                    f"collection {self.collection!r} was built with {recorded}, not {encoders}. "
                    "Use the recorded encoders (unset TEXT_ENCODER/IMAGE_ENCODER), or choose "
                    "another collection with --collection / QDRANT_COLLECTION."
                )
            return
        if self.exists():
            raise EncoderMismatch(
                f"collection {self.collection!r} exists but records no encoders; it was not made "
                "by Songspace. Choose another collection name."
            )
        self.client.create_collection(
            self.collection,
            vectors_config={
                modality: models.VectorParams(size=encoders.dim(modality), distance=models.Distance.COSINE)
                for modality in MODALITIES
            },
            metadata={**encoders.to_metadata(), "encoder_notice": notice},
        )
        self._metadata = None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for name, schema in INDEXED_FIELDS.items():
                self.client.create_payload_index(self.collection, name, field_schema=schema)

    @property
    def encoder_notice(self) -> str:
        """Why the collection's encoders were chosen when it was created ("" if not recorded)."""
        return str(self.metadata().get("encoder_notice", ""))

    @property
    def centres(self) -> dict[str, np.ndarray] | None:
        """Each modality's mean encoder vector, subtracted before storing; None until calibrated.

        Subtracting the catalogue's mean before cosine removes the direction that every song
        shares, which measurably sharpens both modalities (see the README's quality table).
        An empty dict means the collection is stored without centring.
        """
        if self._centres is None and "centres" in self.metadata():
            self._centres = {m: np.asarray(v, dtype=np.float32) for m, v in self.metadata()["centres"].items()}
        return self._centres

    def set_centres(self, centres: dict[str, np.ndarray]) -> None:
        """Record the centres once, before the first song is stored; they never change after."""
        if self.centres is not None:
            raise ValueError(f"collection {self.collection!r} already has its centres")
        recorded = {m: np.asarray(v, dtype=np.float32).tolist() for m, v in centres.items()}
        self.client.update_collection(self.collection, metadata={"centres": recorded})
        self.metadata()["centres"] = recorded
        self._centres = None

    def to_index_space(self, modality: str, vector: np.ndarray) -> np.ndarray:
        """An encoder's unit vector as the index stores it: centred, then unit length again."""
        centre = (self.centres or {}).get(modality)
        if centre is not None:
            vector = vector - centre
        return (vector / np.linalg.norm(vector)).astype(np.float32)

    def count(self) -> int:
        """The number of songs in the collection (0 when it does not exist)."""
        if not self.exists():
            return 0
        return self.client.count(self.collection, exact=True).count

    def upsert(self, points: list[SongPoint]) -> None:
        """Insert or replace songs given with their encoders' vectors, waiting until they are stored."""
        if not points:
            return
        if self.centres is None:
            raise ValueError("record the collection's centres (set_centres) before storing songs")
        self.client.upsert(
            self.collection,
            points=[
                models.PointStruct(
                    id=p.point_id,
                    payload=p.payload,
                    vector={m: self.to_index_space(m, v).tolist() for m, v in p.vectors.items()},
                )
                for p in points
            ],
            wait=True,
        )

    def delete(self, point_ids: list[str]) -> None:
        """Remove songs by point id."""
        if point_ids:
            self.client.delete(self.collection, points_selector=models.PointIdsList(points=point_ids), wait=True)

    def scroll_payloads(self, fields: list[str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every point's id and payload (or just `fields` of it), page by page."""
        if not self.exists():
            return
        offset = None
        while True:
            records, offset = self.client.scroll(
                self.collection,
                limit=1024,
                offset=offset,
                with_payload=fields if fields is not None else True,
                with_vectors=False,
            )
            for record in records:
                yield str(record.id), record.payload or {}
            if offset is None:
                return

    def get(self, point_ids: list[str], with_vectors: bool = True) -> list[SongPoint]:
        """The songs with these ids, in the order given, with stored (index-space) vectors."""
        if not point_ids:
            return []
        records = self.client.retrieve(
            self.collection, ids=point_ids, with_payload=True, with_vectors=with_vectors
        )
        by_id = {str(r.id): r for r in records}
        found = []
        for point_id in point_ids:
            record = by_id.get(str(point_id))
            if record is None:
                continue
            vectors = record.vector if isinstance(record.vector, dict) else {}
            found.append(
                SongPoint(
                    str(record.id),
                    record.payload or {},
                    {name: np.asarray(v, dtype=np.float32) for name, v in vectors.items()},
                )
            )
        return found

    def find(self, key: str, value: str | int) -> list[SongPoint]:
        """Songs whose payload field `key` equals `value` (for example song_id or spotify_id)."""
        records, _ = self.client.scroll(
            self.collection,
            scroll_filter=models.Filter(
                must=[models.FieldCondition(key=key, match=models.MatchValue(value=value))]
            ),
            limit=16,
            with_payload=False,
        )
        return self.get([str(r.id) for r in records])

    def search(
        self,
        modality: str,
        vector: np.ndarray,
        limit: int,
        query_filter: models.Filter | None = None,
        with_vectors: list[str] | None = None,
    ) -> list[models.ScoredPoint]:
        """Nearest songs to `vector` in one modality, best first, with cosine scores (and the
        stored vectors named in `with_vectors`)."""
        return self.client.query_points(
            self.collection,
            query=vector.tolist(),
            using=modality,
            limit=limit,
            query_filter=query_filter,
            with_payload=False,
            with_vectors=with_vectors or False,
        ).points
