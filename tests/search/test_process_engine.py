"""An embedded engine in a process of its own: its lock, errors and lifetime follow its owner's
(what it answers is tested with every engine by the index and search tests)."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from search.engines import StoreUnavailable, open_engine
from search.engines.base import DenseSpec, Filter, Match, Schema, StoredPoint
from search.engines.process import ProcessEngine
from tests.conftest import outlived, store_settings

PROJECT = Path(__file__).resolve().parents[2]
SCHEMA = Schema(dense=(DenseSpec("v", 4, "cosine"),), sparse=(), indexed={"tag": "keyword"}, searched="v")


def points(start: int, count: int) -> list[StoredPoint]:
    rng = np.random.default_rng(start)
    return [StoredPoint(str(i), {"tag": f"t{i % 3}"}, {"v": rng.normal(size=4).astype(np.float32)}) for i in range(start, start + count)]


def test_the_store_is_locked_while_its_process_holds_it_and_free_after(tmp_path):
    settings = store_settings("edge-process", tmp_path)
    engine = open_engine(settings)
    assert isinstance(engine, ProcessEngine)
    try:
        engine.create(SCHEMA, {"made": "here"})
        engine.upsert(points(0, 10))
        with pytest.raises(StoreUnavailable, match="open in another process"):
            open_engine(replace(settings, store_process=False))
        with pytest.raises(StoreUnavailable, match="open in another process"):
            open_engine(settings)  # nor by a second process of its own
    finally:
        engine.close()
    plain = open_engine(replace(settings, store_process=False))
    try:
        assert plain.count() == 10 and plain.metadata()["made"] == "here"
    finally:
        plain.close()


def test_errors_come_back_as_the_engine_raised_them(tmp_path):
    engine = open_engine(store_settings("edge-process", tmp_path))
    try:
        with pytest.raises(RuntimeError, match="no shard yet") as raised:
            engine.count()  # the collection was never created
        assert type(raised.value) is RuntimeError and "in the store's process" in "".join(raised.value.__notes__)
        engine.create(SCHEMA, {})
        assert engine.count() == 0  # and the process goes on answering
    finally:
        engine.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        engine.count()
    engine.close()  # twice is harmless


def test_closing_waits_for_the_calls_under_way(tmp_path):
    """Closed from one thread while another writes (an owner interrupted in a call closes the
    store while that call still runs in the store's process): the write lands whole."""
    settings = store_settings("edge-process", tmp_path)
    engine = open_engine(settings)
    engine.create(SCHEMA, {})
    batch = points(0, 30_000)
    started = time.perf_counter()
    pickle.dumps(batch)
    sending = time.perf_counter() - started  # about a quarter of the time Edge then takes to write them
    failed: list[BaseException] = []

    def write() -> None:
        try:
            engine.upsert(batch)
        except BaseException as error:  # noqa: BLE001 (asserted below)
            failed.append(error)

    writing = threading.Thread(target=write)
    writing.start()
    time.sleep(2.5 * sending + 0.2)  # the write has been sent and is under way
    engine.close()
    writing.join()
    assert not failed
    plain = open_engine(replace(settings, store_process=False))
    try:
        assert plain.count() == 30_000
    finally:
        plain.close()


def test_a_store_whose_process_died_says_so(tmp_path):
    engine = open_engine(store_settings("edge-process", tmp_path))
    engine.create(SCHEMA, {})
    engine._process.kill()
    engine._process.join()
    with pytest.raises(StoreUnavailable, match="the store's process ended .exit code -9."):
        engine.upsert(points(0, 3))
    with pytest.raises(StoreUnavailable, match="the store's process ended"):
        engine.count()  # each call says so, from a new connection
    engine.close()


def test_threads_write_and_read_at_once(tmp_path):
    """Writer threads and a reader share the store as they would in-process: every write lands."""
    engine = open_engine(store_settings("edge-process", tmp_path))
    try:
        engine.create(SCHEMA, {})
        counts: list[int] = []

        def write(start: int) -> None:
            for batch in range(5):
                engine.upsert(points(start + 20 * batch, 20))

        def read() -> None:
            for _ in range(20):
                counts.append(engine.count(Filter(must=(Match("tag", ("t1",)),))))

        threads = [threading.Thread(target=write, args=(start,)) for start in (0, 1000)] + [threading.Thread(target=read)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert engine.count() == 200 and len(counts) == 20
        expected = sum(int(i) % 3 == 1 for start in (0, 1000) for i in range(start, start + 100))
        assert engine.count(Filter(must=(Match("tag", ("t1",)),))) == expected
        assert {hit.point_id for hit in engine.retrieve(["5", "1099"], True, False)} == {"5", "1099"}
    finally:
        engine.close()


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc")
def test_the_store_outlives_no_killed_owner(tmp_path):
    """Its process exits with its owner, killed or not, and the next one may open the store."""
    settings = store_settings("edge-process", tmp_path)
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from search.engines import open_engine\n"
        "from tests.conftest import store_settings\n"
        "from tests.search.test_process_engine import SCHEMA\n"
        "from dataclasses import replace\n"
        f"settings = replace(store_settings('edge-process', Path({str(tmp_path)!r})), collection={settings.collection!r})\n"
        "engine = open_engine(settings)\n"
        "engine.create(SCHEMA, {})\n"
        "print(engine._process.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT, stdout=subprocess.PIPE, text=True)
    try:
        store_pid = int(owner.stdout.readline())
    finally:
        owner.kill()
        owner.wait()
    left = outlived({store_pid})
    for pid in left:
        os.kill(pid, signal.SIGKILL)  # not left behind by a failing test
    assert not left
    engine = open_engine(replace(settings, store_process=False))
    try:
        assert engine.exists()
    finally:
        engine.close()
