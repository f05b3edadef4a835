"""Preparing songs for the encoders, in worker threads or worker processes.

Preparing a song is hashing its content, computing its words (BM25) vector, tokenising its lyrics
and loading, checking and preprocessing its cover (on a GPU: proving it decodes and keeping the
JPEG's bytes). On a CPU
the encoders are the bottleneck and threads suffice. Beside a GPU this work, about 0.5 ms of
Python a song holding the GIL, ran the lyrics encoder 3.6 times slower than alone on an H200 and
capped ingestion there; worker processes take it out of the process that feeds the GPU.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ingest.catalogue import Song
from ingest.covers import CoverError, CoverFetcher
from ingest.embedder import Embedder, bytes_hash, lyrics_hash
from ingest.encoders.base import resolve_runtime
from search.engines.base import SparseVector
from search.engines.process import ignoring_ctrl_c
from search.index import COVER, LYRICS, WORDS
from search.settings import Settings

if TYPE_CHECKING:  # torch loads with the encoders: the page recommends without it
    import torch

    from ingest.encoders.image import CoverPreparation
    from ingest.encoders.text import TextPreparation

EXCERPT_CHARS = 600
LYRICS_HASH = "lyrics_hash"
COVER_HASH = "cover_hash"
HASH_FIELDS = (LYRICS_HASH, COVER_HASH)
# Songs per task given to a worker process: one message per song would cost the feeding process
# more than the work it hands out.
PROCESS_CHUNK = 32
# What a worker needs to take its Preparation (the tokenizer, torchvision's transforms) and prepare
# with it, imported once by the server that forks the workers: each worker importing them itself
# took 3 s here before its first song.
# (The tokenizer's module is named differently in transformers 4 and 5; the server skips the other.)
WORKER_PRELOAD = [
    __name__, "torch", "torchvision", "transformers.tokenization_utils_fast", "transformers.tokenization_utils_tokenizers",
]

Identity = tuple[str, dict[str, Any] | None]  # a song's point id and the payload stored under it


@dataclass
class PreparedSong:
    """A song with its identity, content hashes and, where needed, a preprocessed cover."""

    song: Song
    point_id: str
    payload: dict[str, Any]
    lyrics_tokens: np.ndarray | None = None  # where the song is to be embedded and the cache lacks its lyrics
    cover_tensor: torch.Tensor | None = None  # where the cache has no vector for this cover
    cover_problem: str | None = None
    words: SparseVector | None = None
    stored: dict[str, Any] | None = None  # the payload stored under this point id, if any
    # The store holds these very lyrics with their words vector: it is computed again only if the
    # song is embedded again (a re-run of an unchanged catalogue then skips BM25 altogether).
    words_stored: bool = False


def song_payload(song: Song, source: str) -> dict[str, Any]:
    """The payload a song is stored with (hashes and cover fields are added as they are known)."""
    payload: dict[str, Any] = {
        "song_id": song.song_id,
        "title": song.title,
        "artists": song.artists,
        "album": song.album,
        "year": song.year,
        "genre": song.genre,
        "spotify_id": song.spotify_id,
        "spotify_url": song.spotify_url,
        "lyrics_excerpt": song.lyrics[:EXCERPT_CHARS] if song.lyrics else None,
        "source": source,
        **song.extra,
    }
    return {key: value for key, value in payload.items() if value is not None}


@dataclass
class Preparation:
    """What preparing a song needs, and the preparing. It holds no model, and pickles: a worker
    process gets its own copy (its own cover session, cache connection and BM25 model)."""

    embedder: Embedder  # for its words encoder and its cache of vectors
    fetcher: CoverFetcher
    lyrics: TextPreparation | None  # None when no song has lyrics
    covers: CoverPreparation | None  # None when no song has a cover

    def prepare(self, song: Song, base_dir: Path | None, source: str, identity: Identity) -> PreparedSong:
        """Hash a song's content and, if its cover is new, load and preprocess it (lyrics are
        tokenised by `prepare_all`, all of a call's at once)."""
        point_id, stored = identity
        prepared = PreparedSong(song, point_id, song_payload(song, source), stored=stored)
        if song.lyrics:
            prepared.payload[LYRICS_HASH] = lyrics_hash(song.lyrics)
            prepared.words_stored = bool(
                stored and stored.get(LYRICS_HASH) == prepared.payload[LYRICS_HASH] and WORDS in (stored.get("vectors") or ())
            )
            if not prepared.words_stored:
                prepared.words = self.embedder.words.document(song.lyrics) or None
        self._load_cover(prepared, base_dir)
        # What the song will be stored with; the index records the same list, so a stored song
        # that lacks one of them (say, from an older version) counts as changed.
        prepared.payload["vectors"] = sorted(
            [LYRICS] * (LYRICS_HASH in prepared.payload)
            + [WORDS] * (prepared.words is not None or prepared.words_stored)
            + [COVER] * (COVER_HASH in prepared.payload)
        )
        return prepared

    def prepare_all(self, songs: list[tuple[Song, Identity]], base_dir: Path | None, source: str) -> list[PreparedSong]:
        """`prepare` for each song, in order, and the lyrics of songs to embed tokenised, all in one
        call (not those of songs stored with the same content, nor lyrics in the cache)."""
        prepared = [self.prepare(song, base_dir, source, identity) for song, identity in songs]
        new = [p for p in prepared if LYRICS_HASH in p.payload and not stored_alike(p)]
        if self.lyrics is not None and new:
            cached = self.embedder.cached(LYRICS, [p.payload[LYRICS_HASH] for p in new])
            new = [p for p in new if p.payload[LYRICS_HASH] not in cached]
            for p, tokens in zip(new, self.lyrics.passages([p.song.lyrics or "" for p in new])):
                p.lyrics_tokens = tokens
        return prepared

    def _load_cover(self, prepared: PreparedSong, base_dir: Path | None) -> None:
        song = prepared.song
        if not song.cover:
            return
        if "://" in song.cover:
            prepared.payload["cover_url"] = song.cover
        else:
            path = Path(song.cover).expanduser()
            prepared.payload["cover_path"] = str((base_dir / path if base_dir else path).resolve())
        try:
            data = self.fetcher.load(song.cover, base_dir)
            cover_hash = bytes_hash(data)
            if self.covers is not None and not self.embedder.cached(COVER, [cover_hash]):
                prepared.cover_tensor = self.covers.prepare(data)
        except CoverError as error:
            prepared.cover_problem = str(error)
            return
        except Exception as error:  # noqa: BLE001 (one row's cover must never stop a run)
            prepared.cover_problem = f"cover could not be used ({error.__class__.__name__}: {error})"
            return
        prepared.payload[COVER_HASH] = cover_hash


def stored_alike(prepared: PreparedSong) -> bool:
    """Whether the store holds this song's content as it is (it will not be embedded again)."""
    stored = prepared.stored
    return stored is not None and all(stored.get(f) == prepared.payload.get(f) for f in (*HASH_FIELDS, "vectors"))


Prepare = Callable[[list[tuple[Song, Identity]], Path | None, str], Callable[[], list[PreparedSong]]]


@contextmanager
def preparing(preparation: Preparation, threads: int, processes: int) -> Iterator[Prepare]:
    """A function that starts preparing songs and returns a function that waits for them, in
    order: in `processes` worker processes if any, else in `threads` threads. On an error or
    Ctrl-C, songs not yet being prepared are dropped."""
    pool: Executor
    if processes:
        start_worker_server()  # if the command has not
        pool = ProcessPoolExecutor(processes, mp_context=_context(), initializer=_start_worker, initargs=(preparation,))
        chunk = PROCESS_CHUNK
    else:
        pool = ThreadPoolExecutor(threads)
        chunk = 1  # threads share the work song by song
    work = _prepare_in_worker if processes else preparation.prepare_all
    with pool:
        def start(songs: list[tuple[Song, Identity]], base_dir: Path | None, source: str) -> Callable[[], list[PreparedSong]]:
            chunks = [songs[i : i + chunk] for i in range(0, len(songs), chunk)]
            futures: list[Future[list[PreparedSong]]] = [pool.submit(work, c, base_dir, source) for c in chunks]
            return lambda: [_received(p) for f in futures for p in f.result()]

        try:
            yield start
        except BaseException:  # an error, Ctrl-C, or the batches given up: drop what is queued
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _context() -> multiprocessing.context.BaseContext:
    # forkserver: workers start from a clean process that has imported what they need once, never
    # from a fork of one that runs threads (the store's writer, the GPU's).
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_PRELOAD)
    return context


def worker_processes(settings: Settings) -> int:
    """How many processes prepare songs: PREPARE_PROCESSES, else one per core but two (the
    encoders' and the store's) when the encoders run on a GPU, and none (threads) on a CPU."""
    if settings.prepare_processes is not None:
        return settings.prepare_processes
    if resolve_runtime(settings.device).device != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores - 2)


def start_worker_server() -> None:
    """Start the server that forks worker processes now, so that its imports (seconds) run beside
    whatever comes before the first batch (opening the store, loading the encoders, reading)."""
    if _context().get_start_method() == "forkserver":
        with ignoring_ctrl_c():
            multiprocessing.forkserver.ensure_running()


_worker: Preparation | None = None


def _start_worker(preparation: Preparation) -> None:
    import torch

    global _worker
    _worker = preparation
    # One process per core already: torch and the tokenizer each run on one thread.
    torch.set_num_threads(1)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    # Ctrl-C is the ingestion's to report, in one line; the workers end with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_end_with_ingestion, daemon=True).start()


def _end_with_ingestion() -> None:
    """Exit once the ingestion has: a killed one must not leave its workers behind (each holds the
    others' pipes open, so none would see its work queue end)."""
    ingestion = multiprocessing.parent_process()
    if ingestion is not None:  # its sentinel closes when it exits, killed or not, reaped or not
        multiprocessing.connection.wait([ingestion.sentinel])
        os._exit(1)


def _prepare_in_worker(songs: list[tuple[Song, Identity]], base_dir: Path | None, source: str) -> list[PreparedSong]:
    if _worker is None:
        raise RuntimeError("a preparing worker was started without its preparation")
    prepared = _worker.prepare_all(songs, base_dir, source)
    for song in prepared:
        # Tensors cross as NumPy arrays, copied with the message: torch would share each one
        # through a file descriptor of its own, and a batch of 1,024 covers would run out of them.
        if song.cover_tensor is not None:
            song.cover_tensor = song.cover_tensor.numpy()  # type: ignore[assignment]
    return prepared


def _received(prepared: PreparedSong) -> PreparedSong:
    """A prepared song as the encoders take it: a cover that crossed from a worker process as a
    NumPy array is a tensor again."""
    if isinstance(prepared.cover_tensor, np.ndarray):
        import torch

        prepared.cover_tensor = torch.from_numpy(prepared.cover_tensor)
    return prepared
