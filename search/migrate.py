"""Copying a collection into another store: from an older Songspace's local-mode store, or between
engines (local mode, Edge, a server).

An older Songspace (before the engines) kept its songs in qdrant-client's local mode with `lyrics`
and `cover` vectors already centred, and no `fused` or `words` vectors. Those centred vectors are
turned back into the encoders' unit vectors exactly: a stored v = (r - c) / |r - c| of a unit r
gives r = c + t v with t = -(c.v) + sqrt((c.v)^2 - |c|^2 + 1). Their lyrics text was never
stored, so migrated songs have no words vector until their catalogue is ingested again (which
re-embeds nothing: the embedding cache has their vectors).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.engines.base import Engine
from search.index import (
    CENTRE_SONGS,
    COVER,
    LYRICS,
    WORDS,
    IndexEncoders,
    SongIndex,
    older_format,
)

PAGE = 256


class MigrationError(RuntimeError):
    """The collection cannot be migrated; the message says why and what to do."""


@dataclass
class Migration:
    """What a migration copied."""

    songs: int
    older_format: bool
    without_words: int


def raw_from_centred(centred: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The encoder's unit vector r that centring turned into `centred` (see the module's doc)."""
    v = centred / np.linalg.norm(centred)
    along = float(centre @ v)
    t = -along + np.sqrt(along * along - float(centre @ centre) + 1.0)
    return (centre + t * v).astype(np.float32)


def _pages(source: Engine) -> Iterator[list[str]]:
    offset = None
    while True:
        hits, offset = source.scroll(None, PAGE, offset, False)
        if hits:
            yield [h.point_id for h in hits]
        if offset is None:
            return


def migrate(source: Engine, target: SongIndex) -> Migration:
    """Copy every song of `source` into the empty collection `target`, with the same encoders."""
    metadata = source.metadata()
    encoders = IndexEncoders.from_metadata(metadata)
    if encoders is None:
        raise MigrationError("the source collection records no encoders: it was not made by Songspace")
    if target.count():
        raise MigrationError(
            f"collection {target.collection!r} already holds songs: migrate into a new collection "
            "(--collection NAME), or delete it first with `python -m search.store delete --all --yes`"
        )
    older = older_format(metadata)
    target.ensure(encoders, str(metadata.get("encoder_notice", "")))
    old_centres: dict[str, np.ndarray] = {}
    if older:
        old_centres = {m: np.asarray(c, dtype=np.float32) for m, c in metadata["centres"].items()}
        # The older version learned its centres from its first songs and never changed them: they
        # stay final here.
        songs = min(CENTRE_SONGS, source.count())
        recorded: dict[str, Any] = {m: {"vector": c.tolist(), "songs": songs} for m, c in old_centres.items()}
        target.engine.update_metadata({"centres": recorded, "frozen": sorted(recorded)})
    else:
        target.engine.update_metadata(
            {k: metadata[k] for k in ("centres", "frozen", "sample_centred") if k in metadata}
        )
    target.reload()
    copied = without_words = 0
    for ids in _pages(source):
        hits = source.retrieve(ids, True, [LYRICS, COVER, WORDS])
        points = []
        for hit in hits:
            point = SongIndex.point_from(hit)  # the payload's centring and derived fields are set again by upsert
            if older:
                point.vectors = {m: raw_from_centred(v, old_centres[m]) if m in old_centres else v for m, v in point.vectors.items()}
            if LYRICS in point.vectors and point.words is None:
                without_words += 1
            points.append(point)
        target.upsert(points)
        copied += len(points)
    target.recentre()
    return Migration(copied, older, without_words)
