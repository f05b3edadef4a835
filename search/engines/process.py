"""An engine run in a process of its own, behind the same interface.

Beside a GPU, the process that feeds the encoders is bound by its GIL, and writing to the embedded
engine costs it about 0.3 ms a song (building each point's vectors and payload for Qdrant Edge,
and Edge's update). Here that runs in another process: the caller pickles each call's arguments
and waits on a socket with the GIL free. Each calling thread has a connection of its own, served
by a thread of its own in the engine's process, so a lookup never waits behind another thread's
write, as with the engine in-process. The engine's process ignores Ctrl-C (its owner reports it)
and exits with its owner, even if that is killed.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import secrets
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search.engines.base import Engine, Filter, Hit, Schema, StoredPoint, Vector, WithPayload, WithVectors


class ProcessEngine(Engine):
    """The engine `open_engine()` opens, in a process of its own (`spawn`: it imports only the engine)."""

    def __init__(self, open_engine: Callable[[], Engine]) -> None:
        context = multiprocessing.get_context("spawn")
        self._folder = tempfile.mkdtemp(prefix="songspace-store-")
        self._address = str(Path(self._folder) / "engine")
        self._key = secrets.token_bytes(32)
        ready, child_end = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_serve, args=(open_engine, self._address, self._key, child_end), name="songspace-store", daemon=True
        )
        self._process.start()
        child_end.close()
        try:
            status, value = ready.recv()
        except EOFError:
            raise RuntimeError("the store's process ended while opening the store") from None
        finally:
            ready.close()
        if status == "error":
            raise value
        self.label, self.writers = value
        self._local = threading.local()
        self._connections: list[multiprocessing.connection.Connection] = []
        self._lock = threading.Lock()

    def _call(self, name: str, *args: Any) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = multiprocessing.connection.Client(self._address, "AF_UNIX", authkey=self._key)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        connection.send((name, args))
        status, value = connection.recv()
        if status == "error":
            raise value
        return value

    def exists(self) -> bool:
        return self._call("exists")

    def create(self, schema: Schema, metadata: dict[str, Any]) -> None:
        self._call("create", schema, metadata)

    def drop(self) -> None:
        self._call("drop")

    def metadata(self) -> dict[str, Any]:
        return self._call("metadata")

    def update_metadata(self, changes: dict[str, Any]) -> None:
        self._call("update_metadata", changes)

    def upsert(self, points: list[StoredPoint]) -> None:
        self._call("upsert", points)

    def delete(self, point_ids: list[str]) -> None:
        self._call("delete", point_ids)

    def delete_where(self, where: Filter) -> None:
        self._call("delete_where", where)

    def overwrite_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        self._call("overwrite_payload", point_id, payload)

    def retrieve(self, point_ids: list[str], with_payload: WithPayload, with_vectors: WithVectors) -> list[Hit]:
        return self._call("retrieve", point_ids, with_payload, with_vectors)

    def scroll(
        self, where: Filter | None, limit: int, offset: str | None, with_payload: WithPayload
    ) -> tuple[list[Hit], str | None]:
        return self._call("scroll", where, limit, offset, with_payload)

    def count(self, where: Filter | None = None) -> int:
        return self._call("count", where)

    def query(
        self,
        using: str,
        vector: Vector,
        limit: int,
        where: Filter | None = None,
        with_payload: WithPayload = False,
        with_vectors: WithVectors = False,
    ) -> list[Hit]:
        return self._call("query", using, vector, limit, where, with_payload, with_vectors)

    def facet(self, key: str, where: Filter | None = None, limit: int = 1000) -> list[tuple[Any, int]]:
        return self._call("facet", key, where, limit)

    def optimize(self) -> bool | None:
        return self._call("optimize")

    def close(self) -> None:
        if not self._process.is_alive():
            return
        try:
            self._call("close")
        finally:
            with self._lock:
                for connection in self._connections:
                    connection.close()
                self._connections.clear()
            self._process.join(timeout=30)
            Path(self._address).unlink(missing_ok=True)
            os.rmdir(self._folder)


def _serve(
    open_engine: Callable[[], Engine], address: str, key: bytes, ready: multiprocessing.connection.Connection
) -> None:
    """The engine's process: open the engine, then answer each connection in a thread of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        engine = open_engine()
        listener = multiprocessing.connection.Listener(address, "AF_UNIX", authkey=key)
    except Exception as error:  # noqa: BLE001 (handed to the owner, who raises it)
        ready.send(("error", error))
        return
    ready.send(("ok", (engine.label, engine.writers)))
    ready.close()
    owner = multiprocessing.parent_process()
    if owner is not None:
        threading.Thread(target=_end_with, args=(owner.sentinel,), daemon=True).start()
    while True:
        connection = listener.accept()
        threading.Thread(target=_answer, args=(engine, connection, listener), daemon=True).start()


def _answer(engine: Engine, connection: multiprocessing.connection.Connection, listener: Any) -> None:
    while True:
        try:
            name, args = connection.recv()
        except EOFError:  # that thread's connection was closed
            return
        try:
            result = getattr(engine, name)(*args)
        except Exception as error:  # noqa: BLE001 (raised again in the caller)
            try:
                connection.send(("error", error))
            except Exception:  # noqa: BLE001 (an error that does not pickle is sent as its text)
                connection.send(("error", RuntimeError(f"{error.__class__.__name__}: {error}")))
            continue
        connection.send(("ok", result))
        if name == "close":
            listener.close()
            os._exit(0)


def _end_with(sentinel: int) -> None:
    """Exit once the owner has (killed or not): the engine's lock must not outlive it."""
    multiprocessing.connection.wait([sentinel])
    os._exit(1)
