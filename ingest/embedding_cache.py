"""A disk cache of embeddings keyed by encoder and content hash, so no content is embedded twice."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np


class EmbeddingCache:
    """SQLite table of float32 vectors; each write is committed, so a killed run keeps its work.

    One connection is shared by the cover-loading threads, behind a lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS embedding ("
            " encoder TEXT NOT NULL, content_hash TEXT NOT NULL, vector BLOB NOT NULL,"
            " PRIMARY KEY (encoder, content_hash))"
        )

    def __reduce__(self) -> tuple[type[EmbeddingCache], tuple[Path]]:
        return EmbeddingCache, (self.path,)  # for worker processes: each opens its own connection

    def get_many(self, encoder: str, hashes: list[str]) -> dict[str, np.ndarray]:
        """The cached vectors among `hashes`."""
        found: dict[str, np.ndarray] = {}
        with self._lock:
            self._get_into(found, encoder, hashes)
        return found

    def _get_into(self, found: dict[str, np.ndarray], encoder: str, hashes: list[str]) -> None:
        for start in range(0, len(hashes), 500):
            chunk = hashes[start : start + 500]
            rows = self._db.execute(
                f"SELECT content_hash, vector FROM embedding WHERE encoder = ? AND content_hash IN "
                f"({','.join('?' * len(chunk))})",
                [encoder, *chunk],
            )
            for content_hash, blob in rows:
                found[content_hash] = np.frombuffer(blob, dtype=np.float32)

    def put_many(self, encoder: str, vectors: dict[str, np.ndarray]) -> None:
        """Store vectors by content hash."""
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO embedding VALUES (?, ?, ?)",
                [(encoder, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in vectors.items()],
            )

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
