"""The song index: one collection, a point per song, and every operation the programs need on it.

Each song is one point with, under cosine distance, a `lyrics` vector and a `cover` vector
(whichever it has: never a filler), a sparse `words` vector (BM25 term weights of its lyrics,
scored with the collection's inverse document frequencies), and a `fused` vector under dot
product: [lyrics, cover] in index space, zeros for a missing modality. Querying `fused` with
[w_l * q_lyrics, w_c * q_cover] scores every song by exactly `w_l * cos_lyrics + w_c * cos_cover`,
with a missing modality adding nothing, in one native query with native filters.
"""

from __future__ import annotations

import hashlib
import unicodedata
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from search.engines import Engine, open_engine
from search.engines.base import (
    DenseSpec,
    Filter,
    Hit,
    Match,
    Schema,
    SongIndexError,
    SparseVector,
    StoredPoint,
    StoreUnavailable,
    Vector,
)
from search.settings import Settings

LYRICS = "lyrics"
COVER = "cover"
FUSED = "fused"
WORDS = "words"
MODALITIES = (LYRICS, COVER)
# Fields that filters and lookups use get payload indexes.
INDEXED_FIELDS: dict[str, Any] = {
    "song_id": "keyword",
    "artists": "keyword",
    "genre": "keyword",
    "source": "keyword",
    "title_key": "keyword",
    "search_text": "text",
    "vectors": "keyword",
    "centring": "keyword",
    "spotify_id": "keyword",
    "year": "integer",
}
# Payload fields the index derives on every write: the centres the fused vector used, and the
# normalised title (exact matches) and title with artists (full-text search).
DERIVED_FIELDS = ("centring", "title_key", "search_text")
# Each modality's centre is learned from at least this many songs, and final at the second figure.
MIN_CENTRE_SONGS = 32
CENTRE_SONGS = 512
RELEARN_GROWTH = 1.25
_ID_NAMESPACE = uuid.UUID("5d0b7f0e-3c55-4c8e-9a7e-1f3c2b9a6d41")

__all__ = [
    "COVER", "FUSED", "LYRICS", "MODALITIES", "WORDS", "EncoderMismatch", "IndexEncoders", "SongIndex",
    "SongIndexError", "SongPoint", "StoreUnavailable", "normalise_text", "older_format", "open_index", "search_key",
    "song_point_id",
]


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
    words: str = "bm25-english"
    text_fingerprint: str = ""  # the text model's configuration and weights ("" if not recorded)
    image_fingerprint: str = ""  # the cover model's preprocessing and weights ("" if not recorded)

    def to_metadata(self) -> dict[str, Any]:
        """The form stored in the collection's metadata."""
        return {"encoders": asdict(self)}

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
    """A song: id, payload, its lyrics/cover vectors (only those it has) and its words vector.

    Vectors given to `SongIndex.upsert` are the encoders' output; those `SongIndex.get` returns
    are in index space (centred and unit length), as the search compares them.
    """

    point_id: str
    payload: dict[str, Any]
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    words: SparseVector | None = None


def normalise_text(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form of a title or artist, for matching."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    kept = "".join(c if c.isalnum() else " " for c in decomposed if not unicodedata.combining(c))
    return " ".join(kept.split())


def song_point_id(
    *, spotify_id: str | None, song_id: str | None, artists: list[str], title: str, visitor: bool = False
) -> str:
    """A deterministic point id: from the Spotify id, else the catalogue id, else artist and title.

    Songs that visitors add by hand have ids of their own (from artist and title), so they can
    never take a catalogue song's point.
    """
    if visitor:
        key = f"user:{normalise_text(' '.join(artists))}|{normalise_text(title)}"
    elif spotify_id:
        key = f"spotify:{spotify_id}"
    elif song_id:
        key = f"catalogue:{song_id}"
    else:
        key = f"song:{normalise_text(' '.join(artists))}|{normalise_text(title)}"
    return str(uuid.uuid5(_ID_NAMESPACE, key))


def _having(modality: str) -> Filter:
    return Filter(must=(Match("vectors", (modality,)),))


def search_key(title: str, artists: Sequence[str]) -> str:
    """What a typed title search is compared with: the normalised title and artists."""
    return normalise_text(f"{title} {' '.join(artists)}")


def _derived(payload: dict[str, Any]) -> dict[str, Any]:
    title, artists = str(payload.get("title", "")), list(payload.get("artists", []))
    return {"title_key": normalise_text(title), "search_text": search_key(title, artists)}


def older_format(metadata: dict[str, Any]) -> bool:
    """Whether a collection was made by the Songspace before the engines: centred vectors stored,
    no fused vector, its centres recorded as plain lists."""
    return any(not isinstance(c, dict) for c in metadata.get("centres", {}).values())


def open_index(settings: Settings) -> SongIndex:
    """Open the store the settings name (an embedded engine or a server) at QDRANT_COLLECTION."""
    return SongIndex(open_engine(settings), settings.collection)


class SongIndex:
    """One collection of songs, with the encoders that built it."""

    def __init__(self, engine: Engine, collection: str) -> None:
        self.engine = engine
        self.collection = collection
        self._metadata: dict[str, Any] | None = None
        self._centres: dict[str, np.ndarray] | None = None  # the recorded centres, as arrays

    @property
    def label(self) -> str:
        """Which engine holds the collection, and where, for people."""
        return self.engine.label

    def exists(self) -> bool:
        """Whether the collection has been created."""
        return self.engine.exists()

    def metadata(self) -> dict[str, Any]:
        """The collection's metadata ({} before it exists), cached: it changes only through here."""
        if self._metadata is None:
            if not self.exists():
                return {}
            self._metadata = self.engine.metadata()
        return self._metadata

    @property
    def encoders(self) -> IndexEncoders | None:
        """The encoders recorded in the collection, or None if it does not exist yet."""
        return IndexEncoders.from_metadata(self.metadata())

    @staticmethod
    def schema(encoders: IndexEncoders) -> Schema:
        """The collection's vectors and payload indexes for these encoders."""
        return Schema(
            dense=(
                DenseSpec(LYRICS, encoders.text_dim, "cosine"),
                DenseSpec(COVER, encoders.image_dim, "cosine"),
                DenseSpec(FUSED, encoders.text_dim + encoders.image_dim, "dot"),
            ),
            sparse=(WORDS,),
            indexed=dict(INDEXED_FIELDS),
            searched=FUSED,
        )

    def ensure(self, encoders: IndexEncoders, notice: str = "") -> None:
        """Create the collection for `encoders` (recording why they were chosen), or check that it
        was built with them."""
        recorded = self.encoders
        if recorded is not None:
            if older_format(self.metadata()):
                raise EncoderMismatch(
                    f"collection {self.collection!r} was made by an older Songspace (its vectors are "
                    "stored centred, without the fused vector this version searches). Copy it into a "
                    "new store with `python -m search.store migrate --from PATH` (see its --help)."
                )
            if recorded != encoders:
                raise EncoderMismatch(
                    f"collection {self.collection!r} was built with {recorded}, not {encoders}. "
                    "Use the recorded encoders (unset TEXT_ENCODER/IMAGE_ENCODER), or choose "
                    "another collection with --collection / QDRANT_COLLECTION."
                )
            self._refresh_fused()  # completes a recentring that an interrupted process began
            return
        if self.exists():
            raise EncoderMismatch(
                f"collection {self.collection!r} exists but records no encoders; it was not made "
                "by this version of Songspace. Migrate it (`python -m search.store migrate`) or "
                "choose another collection name."
            )
        self.engine.create(self.schema(encoders), {**encoders.to_metadata(), "encoder_notice": notice})
        self._metadata = None

    @property
    def encoder_notice(self) -> str:
        """Why the collection's encoders were chosen when it was created ("" if not recorded)."""
        return str(self.metadata().get("encoder_notice", ""))

    @property
    def centres(self) -> dict[str, np.ndarray]:
        """Each modality's mean encoder vector, subtracted before cosine ({} until learned).

        Subtracting the catalogue's mean removes the direction that every song shares, which
        measurably sharpens both modalities (see the README's quality table).
        """
        if self._centres is None:
            recorded = {} if older_format(self.metadata()) else self.metadata().get("centres", {})
            self._centres = {m: np.asarray(c["vector"], dtype=np.float32) for m, c in recorded.items()}
        return self._centres

    def centring(self) -> dict[str, dict[str, Any]]:
        """Per modality: how many songs its centre was learned from, and whether it is final."""
        if older_format(self.metadata()):
            return {}
        frozen = set(self.metadata().get("frozen", []))
        return {
            m: {"songs": c["songs"], "final": m in frozen or c["songs"] >= CENTRE_SONGS}
            for m, c in self.metadata().get("centres", {}).items()
        }

    def songs_with(self, modality: str) -> int:
        """How many stored songs have this modality's vector."""
        return self.count(_having(modality))

    def provisional(self) -> set[str]:
        """The modalities whose centre may still change (not learned yet, or from too few songs and not frozen)."""
        centring = self.centring()
        return {m for m in MODALITIES if not centring.get(m, {}).get("final")}

    @property
    def centring_final(self) -> bool:
        """Whether the centres will never change again (each frozen, or learned from enough songs)."""
        return not self.provisional()

    @property
    def centres_shared(self) -> bool:
        """Whether the centres for a catalogue loaded in parts have been learned (by part 1)."""
        return bool(self.metadata().get("sample_centred"))

    def reload(self) -> None:
        """Forget the cached metadata, to see what another process recorded."""
        self._metadata = None
        self._centres = None

    @property
    def centring_version(self) -> str:
        """A short fingerprint of the centres; each song's fused vector records the one it used."""
        digest = hashlib.sha256()
        for modality in sorted(self.centres):
            digest.update(modality.encode() + self.centres[modality].tobytes())
        return digest.hexdigest()[:12] if self.centres else "none"

    def recentre(self, freeze: bool = False) -> list[str]:
        """Learn each modality's centre from the stored songs while there are few, then freeze it.

        A modality is centred once it has MIN_CENTRE_SONGS songs; its centre is learned again
        each time it has grown by a quarter, from up to CENTRE_SONGS songs, and never changes
        once learned from that many, or once `freeze` was asked for (part 1 of a catalogue loaded in parts
        learns the centres every part uses, and records that it has). A modality with too few
        songs to learn from is never frozen: it is centred later, once it has enough. Songs whose
        fused vector used other centres are rewritten (the raw vectors are stored, so this is
        exact and can be redone after an interruption, or after a write that raced a change).
        Returns the modalities whose centre changed.
        """
        recorded = dict(self.metadata().get("centres", {}))
        frozen = set(self.metadata().get("frozen", []))
        changed = []
        for modality in MODALITIES:
            used = recorded.get(modality, {}).get("songs", 0)
            if used >= CENTRE_SONGS or modality in frozen:
                continue
            having = _having(modality)
            count = self.count(having)
            # Re-learning rewrites every stored song's fused vector: do it when the collection
            # has grown by a quarter (or reached CENTRE_SONGS), not for each song added.
            if count < MIN_CENTRE_SONGS or (used and count < min(CENTRE_SONGS, used * RELEARN_GROWTH)):
                continue
            sample = self._raw_vectors(having, modality, CENTRE_SONGS)
            recorded[modality] = {"vector": np.mean(sample, axis=0).tolist(), "songs": len(sample)}
            changed.append(modality)
        if freeze:
            frozen |= set(recorded)
        if changed or freeze:
            shared = {"frozen": sorted(frozen), "sample_centred": True} if freeze else {}
            self.engine.update_metadata({"centres": recorded, **shared})
            self.reload()
        self._refresh_fused()
        return changed

    def _raw_vectors(self, where: Filter, modality: str, limit: int) -> list[np.ndarray]:
        hits, _ = self.engine.scroll(where, limit, None, False)
        found = self.engine.retrieve([h.point_id for h in hits], False, [modality])
        return [h.vectors[modality] for h in found if modality in h.vectors]  # type: ignore[misc]

    def _refresh_fused(self) -> None:
        """Rewrite the fused vectors of songs stored under other centres than the current ones."""
        stale = Filter(must_not=(Match("centring", (self.centring_version,)),))
        while True:
            hits, _ = self.engine.scroll(stale, 256, None, False)
            if not hits:
                return
            found = self.engine.retrieve([h.point_id for h in hits], True, [LYRICS, COVER, WORDS])
            self.upsert([self.point_from(h) for h in found])

    def to_index_space(self, modality: str, vector: np.ndarray) -> np.ndarray:
        """An encoder's unit vector as the search compares it: centred, then unit length again."""
        centre = self.centres.get(modality)
        if centre is not None:
            vector = vector - centre
        return (vector / np.linalg.norm(vector)).astype(np.float32)

    def fused_vector(self, vectors: dict[str, np.ndarray]) -> np.ndarray:
        """[lyrics, cover] as given (index space, or weighted query parts), zeros where missing."""
        encoders = self.encoders
        if encoders is None:
            raise SongIndexError(f"collection {self.collection!r} does not exist yet")
        parts = [vectors.get(m, np.zeros(encoders.dim(m), dtype=np.float32)) for m in MODALITIES]
        return np.concatenate(parts).astype(np.float32)

    def count(self, where: Filter | None = None) -> int:
        """The number of songs in the collection (that match `where`; 0 when it does not exist)."""
        if not self.exists():
            return 0
        return self.engine.count(where)

    def upsert(self, points: list[SongPoint]) -> None:
        """Insert or replace songs given with their encoders' vectors, waiting until they are stored.

        `lyrics` and `cover` are stored as the encoders gave them; `fused` holds them centred. The
        payload records the vectors each song has (`vectors`) and the centres used (`centring`).
        """
        if not points:
            return
        version = self.centring_version
        stored = []
        for point in points:
            raw = {m: np.asarray(v, dtype=np.float32) for m, v in point.vectors.items() if m in MODALITIES}
            if not raw:
                raise ValueError(f"song {point.point_id} has neither a lyrics nor a cover vector")
            centred = {m: self.to_index_space(m, v) for m, v in raw.items()}
            vectors: dict[str, Vector] = {**raw, FUSED: self.fused_vector(centred)}
            if point.words:
                vectors[WORDS] = point.words
            payload = {
                **point.payload,
                "vectors": sorted(n for n in vectors if n != FUSED),
                "centring": version,
                **_derived(point.payload),
            }
            stored.append(StoredPoint(point.point_id, payload, vectors))
        self.engine.upsert(stored)

    def delete(self, point_ids: list[str]) -> None:
        """Remove songs by point id."""
        if point_ids:
            self.engine.delete(point_ids)

    def delete_where(self, where: Filter) -> int:
        """Remove every song that matches `where`; returns how many there were."""
        found = self.count(where)
        if found:
            self.engine.delete_where(where)
        return found

    def overwrite_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        """Replace one song's payload, keeping its vectors (and the record of them)."""
        (current,) = self.engine.retrieve([point_id], with_payload=["vectors", "centring"], with_vectors=False)
        kept = {key: (current.payload or {}).get(key) for key in ("vectors", "centring")}
        self.engine.overwrite_payload(point_id, {**payload, **kept, **_derived(payload)})

    def scroll_payloads(
        self, fields: list[str] | None = None, where: Filter | None = None, page: int = 1024
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every song's id and payload (or just `fields` of it), page by page."""
        if not self.exists():
            return
        offset = None
        while True:
            hits, offset = self.engine.scroll(where, page, offset, fields if fields is not None else True)
            for hit in hits:
                yield hit.point_id, hit.payload or {}
            if offset is None:
                return

    def get(self, point_ids: list[str], with_vectors: bool = True) -> list[SongPoint]:
        """The songs with these ids, in the order given, with their vectors in index space."""
        if not point_ids:
            return []
        names = [LYRICS, COVER, WORDS] if with_vectors else False
        by_id = {hit.point_id: hit for hit in self.engine.retrieve(list(point_ids), True, names)}
        found = [self.point_from(by_id[i]) for i in map(str, point_ids) if i in by_id]
        for point in found:
            point.vectors = {m: self.to_index_space(m, v) for m, v in point.vectors.items()}
        return found

    @staticmethod
    def point_from(hit: Hit) -> SongPoint:
        """A stored point as a song: its lyrics and cover vectors and its words vector, as stored."""
        words = hit.vectors.get(WORDS)
        return SongPoint(
            hit.point_id,
            hit.payload or {},
            {m: v for m, v in hit.vectors.items() if m in MODALITIES and isinstance(v, np.ndarray)},
            words if isinstance(words, SparseVector) else None,
        )

    def find(self, key: str, value: str | int, limit: int = 16) -> list[SongPoint]:
        """Songs whose payload field `key` equals `value` (for example song_id or spotify_id)."""
        if not self.exists():
            return []
        hits, _ = self.engine.scroll(Filter(must=(Match(key, (value,)),)), limit, None, False)
        return self.get([hit.point_id for hit in hits])

    def query(
        self,
        using: str,
        vector: Vector,
        limit: int,
        where: Filter | None = None,
        with_vectors: list[str] | None = None,
    ) -> list[Hit]:
        """The best `limit` songs for `vector` in the vector `using`, best first, with scores."""
        return self.engine.query(using, vector, limit, where, with_payload=False, with_vectors=with_vectors or False)

    def facet(self, key: str, where: Filter | None = None) -> list[tuple[Any, int]]:
        """A payload field's values and how many songs have each, most first."""
        if not self.exists():
            return []
        return self.engine.facet(key, where)

    def optimize(self) -> bool | None:
        """Build the indexes the engine builds only on request; None where it builds them itself."""
        return self.engine.optimize()

    def drop(self) -> None:
        """Delete the whole collection."""
        self.engine.drop()
        self._metadata = None
        self._centres = None

    def close(self) -> None:
        """Release the store (an embedded store admits one process at a time)."""
        self.engine.close()
