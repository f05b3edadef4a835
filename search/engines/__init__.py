"""Storage engines behind the song index; `open_engine` picks one from the settings.

- `edge` (default embedded engine): Qdrant Edge, the server's engine in-process (search/engines/edge.py).
- `local`: qdrant-client's pure-Python local mode (search/engines/client.py).
- a Qdrant server or cluster when QDRANT_URL is set (search/engines/client.py).

With STORE_PROCESS, on Linux, an embedded engine runs in a process of its own (search/engines/process.py).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from functools import partial

from search.engines.base import Engine, StoreUnavailable
from search.settings import Settings

__all__ = ["Engine", "StoreUnavailable", "open_engine"]


def open_engine(settings: Settings, collection: str | None = None) -> Engine:
    """Open the store the settings name, for one collection (default: QDRANT_COLLECTION)."""
    name = collection or settings.collection
    if settings.qdrant_url:
        from search.engines.client import ClientEngine

        return ClientEngine(settings, name)
    if settings.store_process and sys.platform == "linux":  # its socket's address is Linux's abstract kind
        from search.engines.process import ProcessEngine

        return ProcessEngine(partial(open_engine, replace(settings, store_process=False), name))
    if settings.engine == "local":
        from search.engines.client import ClientEngine

        return ClientEngine(settings, name)
    from search.engines.edge import EdgeEngine

    return EdgeEngine(settings, name)
