"""An engine run in a process of its own, behind the same interface.

Beside a GPU, the process that feeds the encoders is bound by its GIL, and writing to the embedded
engine cost it about 0.3 ms a song (building each point's vectors and payload for Qdrant Edge, and
Edge's update). Here that runs in another process: the caller pickles each call's arguments and
waits on a socket with the GIL free. Each calling thread has a connection of its own, served by a
thread of its own in the engine's process, so calls from several threads run at once, as with the
engine in-process. The engine's process ignores Ctrl-C (its owner reports it) and exits with its
owner, even if that is killed; if it ends first, the owner's next call raises StoreUnavailable.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import secrets
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from search.engines.base import Engine, Filter, Hit, Schema, StoredPoint, StoreUnavailable, Vector, WithPayload, WithVectors

Connection = multiprocessing.connection.Connection
# How long closing the store waits for the calls still under way (a large write takes seconds).
CLOSE_WAIT_S = 60.0


@contextmanager
def ignoring_ctrl_c() -> Iterator[None]:
    """Ctrl-C ignored while a helper process starts, which it inherits (Python leaves an ignored
    SIGINT as it is): its owner reports an interruption in one line, and a helper still importing
    would print a traceback. Only the main thread can change it; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        if previous is not None:  # None: a handler Python did not install, which it cannot put back
            signal.signal(signal.SIGINT, previous)


class ProcessEngine(Engine):
    """The engine `open_engine()` opens, in a `spawn` process (Linux: its socket's address is
    abstract, so there is no file to leave behind)."""

    def __init__(self, open_engine: Callable[[], Engine]) -> None:
        context = multiprocessing.get_context("spawn")
        self._address = f"\0songspace-store-{secrets.token_hex(16)}"
        self._key = secrets.token_bytes(32)
        ready, child_end = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_serve, args=(open_engine, self._address, self._key, child_end), name="songspace-store", daemon=True
        )
        with ignoring_ctrl_c():
            self._process.start()
        child_end.close()
        try:
            status, value = ready.recv()
        except EOFError:
            self._process.join()
            raise StoreUnavailable(f"the store's process ended while opening the store (exit code {self._process.exitcode})") from None
        finally:
            ready.close()
        if status == "error":
            self._process.join()
            raise value
        self.label, self.writers = value
        self._local = threading.local()
        self._lock = threading.Lock()
        self._closed = False

    def _call(self, name: str, *args: Any) -> Any:
        if self._closed:
            raise StoreUnavailable("the store was closed")
        return self._request(name, args)

    def _request(self, name: str, args: tuple[Any, ...]) -> Any:
        connection = getattr(self._local, "connection", None)
        try:
            if connection is None:
                connection = multiprocessing.connection.Client(self._address, "AF_UNIX", authkey=self._key)
                self._local.connection = connection
            connection.send((name, args))
            status, value = connection.recv()
        except BaseException as error:
            # Interrupted or cut off, the connection may be out of step with its answers: a new one
            # serves this thread's next call.
            self._forget(connection)
            if isinstance(error, (EOFError, OSError)):
                raise StoreUnavailable(
                    f"the store's process ended ({self._ending()}); what was stored stays, run the command again"
                ) from None
            raise
        if status == "error":
            raise value
        return value

    def _forget(self, connection: Connection | None) -> None:
        self._local.connection = None
        if connection is not None:
            connection.close()

    def _ending(self) -> str:
        self._process.join(timeout=1)
        code = self._process.exitcode
        return "it is still running" if code is None else f"exit code {code}"

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
        """Close the engine in its process (which then exits), once; a call after it is refused."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self._process.is_alive():
                self._request("close", ())
        except StoreUnavailable:
            pass  # it ended on its own: nothing is left to close
        finally:
            # Only this thread's connection: another thread may still be reading its last answer
            # (each connection closes with its thread, or when it finds the process gone).
            self._forget(getattr(self._local, "connection", None))
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()


def _serve(open_engine: Callable[[], Engine], address: str, key: bytes, ready: Connection) -> None:
    """The engine's process: open the engine, then answer each connection in a thread of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        engine = open_engine()
        listener = multiprocessing.connection.Listener(address, "AF_UNIX", authkey=key)
    except BaseException as error:  # noqa: BLE001 (handed to the owner, who raises it; Edge's panics too)
        ready.send(("error", _sendable(error)))
        return
    ready.send(("ok", (engine.label, engine.writers)))
    ready.close()
    owner = multiprocessing.parent_process()
    if owner is not None:
        threading.Thread(target=_end_with, args=(owner.sentinel,), daemon=True).start()
    calls = _Calls()
    while True:
        try:
            connection = listener.accept()
        except (OSError, EOFError, multiprocessing.AuthenticationError):
            continue  # a client that went away while connecting
        threading.Thread(target=_answer, args=(engine, connection, calls), daemon=True).start()


class _Calls:
    """The calls under way in the engine's process, so that closing waits for them: an owner
    interrupted in a call closes the store while that call still runs here."""

    def __init__(self) -> None:
        self.running = 0
        self.changed = threading.Condition()

    @contextmanager
    def one(self) -> Iterator[None]:
        with self.changed:
            self.running += 1
        try:
            yield
        finally:
            with self.changed:
                self.running -= 1
                self.changed.notify_all()

    def wait_for_the_others(self, seconds: float) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.running <= 1, timeout=seconds)


def _answer(engine: Engine, connection: Connection, calls: _Calls) -> None:
    """Answer one owner thread's calls, in order, until it closes its connection or closes the engine."""
    while True:
        try:
            name, args = connection.recv()
        except BaseException:  # noqa: BLE001 (closed, or cut off mid-message: that caller has gone)
            return
        with calls.one():  # until answered: closing must not end the process before that
            if name == "close":
                calls.wait_for_the_others(CLOSE_WAIT_S)
            try:
                answer: tuple[str, Any] = ("ok", getattr(engine, name)(*args))
            except BaseException as error:  # noqa: BLE001 (Edge's panics are BaseExceptions too)
                error.add_note("in the store's process:\n" + traceback.format_exc())
                answer = ("error", _sendable(error))
            sent = _send(connection, answer, name)
        if name == "close":
            os._exit(0)
        if not sent:
            return


def _send(connection: Connection, answer: tuple[str, Any], name: str) -> bool:
    """Send an answer (an error's text if it does not pickle); False if the caller has gone."""
    try:
        connection.send(answer)
    except BaseException:  # noqa: BLE001
        try:
            connection.send(("error", _sendable(RuntimeError(f"the store's answer to {name} could not be sent"))))
        except BaseException:  # noqa: BLE001 (the caller has gone)
            return False
    return True


def _sendable(error: BaseException) -> BaseException:
    """The error itself if it crosses a process boundary intact, else its text in a RuntimeError."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{error.__class__.__name__}: {error}")


def _end_with(sentinel: int) -> None:
    """Exit once the owner has (killed or not): the engine's lock must not outlive it."""
    multiprocessing.connection.wait([sentinel])
    os._exit(1)
