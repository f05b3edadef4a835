"""Storage engines behind the song index; `open_engine` picks one from the settings.

- `edge` (default embedded engine): Qdrant Edge, the server's engine in-process (search/engines/edge.py).
- `local`: qdrant-client's pure-Python local mode (search/engines/client.py).
- a Qdrant server or cluster when QDRANT_URL is set (search/engines/client.py).
"""

from __future__ import annotations

from search.engines.base import Engine, StoreUnavailable
from search.settings import Settings

__all__ = ["Engine", "StoreUnavailable", "open_engine"]


def open_engine(settings: Settings, collection: str | None = None) -> Engine:
    """Open the store the settings name, for one collection (default: QDRANT_COLLECTION)."""
    name = collection or settings.collection
    if settings.qdrant_url or settings.engine == "local":
        from search.engines.client import ClientEngine

        return ClientEngine(settings, name)
    from search.engines.edge import EdgeEngine

    return EdgeEngine(settings, name)
