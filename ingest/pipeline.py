"""Catalogue to points: fetch covers ahead of the encoders, embed what changed, upsert in batches."""

from __future__ import annotations

import csv
import os
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from ingest.catalogue import RowProblem, Song, read_catalogue
from ingest.covers import CoverFetcher
from ingest.embedder import Embedder
from ingest.encoders.base import resolve_runtime
from ingest.enrich import EnrichSummary, enrich
from ingest.preparation import COVER_HASH, LYRICS_HASH, Identity, Preparation, PreparedSong, preparing, stored_alike, worker_processes
from ingest.spotify import SpotifyClient
from search.engines.base import Filter, Match
from search.export import spreadsheet_text
from search.index import CENTRE_SONGS, COVER, DERIVED_FIELDS, LYRICS, SongIndex, SongPoint, normalise_text, song_point_id

# Part 1 of a catalogue loaded in parts stores this many songs of the whole catalogue first and
# learns the centres from them (a margin over CENTRE_SONGS for songs without lyrics or a cover).
CENTRE_SAMPLE = CENTRE_SONGS + 128
# How often the interpreter hands the GIL between threads while ingesting. torch and Qdrant Edge's
# bindings release it inside their calls (Edge while it converts each point's payload) and get it
# back only when the running thread hands it over, by default every 5 ms: beside a busy Python
# thread, writing a song to the store took 10.7 to 18.8 ms instead of 0.23 to 0.38 ms alone, and
# 0.98 to 1.13 ms at 0.1 ms (`bench.gil_handover`, 3 runs). On the CPU, ingestion kept its share
# of the encoders' rate (91.8% against 90.6% at 5 ms, one run each).
SWITCH_INTERVAL_S = 0.0001
T = TypeVar("T")
# Song fields that Spotify enrichment may fill, and the payload keys that hold them.
ENRICHED_FIELDS = {"spotify_id": "spotify_id", "spotify_url": "spotify_url", "cover": "cover_url", "album": "album", "year": "year"}


@dataclass
class IngestSummary:
    """What an ingestion run did, row by row counted."""

    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    lyrics_missing: int = 0
    cover_missing: int = 0
    model_seconds: float = 0.0
    elapsed_seconds: float = 0.0
    # Where the time went: reading and each encoder, and how long the feeding loop waited for
    # prepared batches and for earlier batches to be stored (and, beside a GPU, embedded in their
    # own thread; on a CPU each batch is embedded in line). The stages overlap.
    stages: dict[str, float] = field(default_factory=dict)
    sampled: int = 0  # songs of the whole catalogue part 1 stored first, to learn the centres
    problems_path: Path | None = None
    problems: list[RowProblem] = field(default_factory=list)
    enrichment: EnrichSummary | None = None

    def lines(self) -> list[str]:
        """The summary as printed at the end of a run."""
        rate = self.read / self.elapsed_seconds if self.elapsed_seconds else 0.0
        lines = [
            f"read {self.read}  inserted {self.inserted}  updated {self.updated}  "
            f"unchanged {self.unchanged}  rejected {self.rejected}",
            f"lyrics missing {self.lyrics_missing}  cover missing {self.cover_missing}",
            f"{self.elapsed_seconds:.1f} s ({rate:.1f} songs/s), model time {self.model_seconds:.1f} s",
        ]
        if self.sampled:
            lines.append(
                f"centres learned from {self.sampled} songs of the whole catalogue, stored first "
                "(their own parts find them unchanged)"
            )
        if self.enrichment is not None:
            lines.append(self.enrichment.line())
        if self.problems_path is not None:
            lines.append(f"rejected and incomplete rows: {self.problems_path}")
        return lines


class CentresNotReady(RuntimeError):
    """A part of a catalogue cannot start: the centres that part 1 learns are not recorded yet."""


@dataclass(frozen=True)
class Part:
    """Share `index` (from 1) of `count` of a catalogue, chosen by song identity, so that several
    machines can load one catalogue into one server; the parts together are the whole."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Part:
        """`I/N`, with 1 <= I <= N."""
        index, slash, count = text.partition("/")
        if not (slash and index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
            raise ValueError(f"a part is I/N with 1 <= I <= N, such as 1/4, not {text!r}")
        return cls(int(index), int(count))

    def holds(self, point_id: str) -> bool:
        """Whether the song with this point id belongs to this part."""
        return uuid.UUID(point_id).int % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


class Ingestor:
    """Runs catalogues into a song index; safe to re-run, and resumable after any interruption."""

    def __init__(
        self,
        index: SongIndex,
        embedder: Embedder,
        fetcher: CoverFetcher,
        batch_size: int = 128,
        workers: int | None = None,
        progress: bool = True,
        writers: int | None = None,
        processes: int | None = None,
        embed_aside: bool | None = None,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.fetcher = fetcher
        self.batch_size = batch_size
        # Cover downloads, decoding and hashing run in threads (they wait on the network or release the GIL).
        self.workers = workers or max(4, os.cpu_count() or 1)
        # ... or in processes (see ingest/preparation.py).
        self.processes = worker_processes(embedder.settings) if processes is None else processes
        self.progress = progress
        self.writers = index.engine.writers if writers is None else writers
        # Batches are embedded in a thread of their own beside a GPU (None: when the encoders run
        # on one). On a CPU the encoders use every core, so overlapping buys nothing (the pipeline
        # keeps 98-102% of their rate either way), and Ctrl-C would wait for the batch being
        # embedded (12 s or more): there each batch is embedded in line.
        self.embed_aside = embed_aside

    def _prepared(
        self, songs: list[Song], base_dir: Path | None, source: str, look_up: bool = True
    ) -> Iterator[list[PreparedSong]]:
        """Batches of prepared songs; the next two batches are prepared while the current one is embedded."""
        batches = [songs[i : i + self.batch_size] for i in range(0, len(songs), self.batch_size)]
        with preparing(self.preparation(songs), self.workers, self.processes) as start:
            pending: deque[Callable[[], list[PreparedSong]]] = deque()
            for batch in batches:
                identities = self.identify(batch, source) if look_up else [(self.point_id(s, source), None) for s in batch]
                pending.append(start(list(zip(batch, identities)), base_dir, source))
                if len(pending) > 2:
                    yield pending.popleft()()
            while pending:
                yield pending.popleft()()

    def preparation(self, songs: list[Song]) -> Preparation:
        """What preparing these songs needs (from the encoders, loaded here, that they need)."""
        lyrics = self.embedder.text.preparation if any(song.lyrics for song in songs) else None
        covers = self.embedder.image.preparation if any(song.cover for song in songs) else None
        return Preparation(self.embedder, self.fetcher, lyrics, covers)

    @staticmethod
    def point_id(song: Song, source: str) -> str:
        """A song's own point id: songs added by visitors never share one with a catalogue song."""
        return song_point_id(
            spotify_id=song.spotify_id, song_id=song.song_id, artists=song.artists, title=song.title,
            visitor=source == "user",
        )

    def identify(self, songs: list[Song], source: str) -> list[Identity]:
        """Each song's point id and stored payload, in the songs' order: a stored song keeps its point.

        A catalogue song stored under another point id keeps that point, so no order of runs, with
        or without Spotify enrichment, makes a second point: it is found by its catalogue id, or,
        without one, by its artists and title (the point they name, or a point that enrichment
        gave a Spotify id). A song the catalogue gives without what enrichment once filled in
        keeps it.
        """
        ids = [self.point_id(song, source) for song in songs]
        # Songs without a catalogue id (and without a Spotify id of the catalogue's own) are known
        # by their artists and title until enrichment gives them a Spotify id.
        named = {
            n: _named_point_id(s.title, s.artists)
            for n, s in enumerate(songs)
            if source == "catalogue" and not s.song_id and (not s.spotify_id or "spotify_id" in s.extra.get("enriched", []))
        }
        stored = {p.point_id: p.payload for p in self.index.get(list({*ids, *named.values()}), with_vectors=False)}
        elsewhere = [s.song_id for n, s in enumerate(songs) if s.song_id and ids[n] not in stored] if source == "catalogue" else []
        by_song_id: dict[str, tuple[str, dict[str, Any]]] = {}
        if elsewhere:
            where = Filter(must=(Match("song_id", tuple(elsewhere)), Match("source", ("catalogue",))))
            by_song_id = {payload["song_id"]: (i, payload) for i, payload in self.index.scroll_payloads(where=where)}
        unnamed = [songs[n] for n, point_id in named.items() if ids[n] not in stored and point_id not in stored]
        by_name: dict[str, tuple[str, dict[str, Any]]] = {}
        if unnamed:
            titles = tuple({normalise_text(s.title) for s in unnamed})
            where = Filter(must=(Match("title_key", titles), Match("source", ("catalogue",))))
            for i, payload in self.index.scroll_payloads(where=where):
                if "song_id" not in payload and "spotify_id" in payload.get("enriched", []):
                    by_name[_named_point_id(str(payload.get("title", "")), list(payload.get("artists", [])))] = (i, payload)
        identities: list[Identity] = []
        for n, song in enumerate(songs):
            point_id = ids[n]
            if point_id not in stored:
                if song.song_id in by_song_id:
                    point_id, stored[point_id] = by_song_id[song.song_id]
                elif named.get(n) in stored:
                    point_id = named[n]
                elif named.get(n) in by_name:
                    point_id, stored[point_id] = by_name[named[n]]
            payload = stored.get(point_id)
            if payload and payload.get("source") == source:
                self._keep_enrichment(song, payload)
            identities.append((point_id, payload))
        return identities

    @staticmethod
    def _keep_enrichment(song: Song, stored: dict[str, Any]) -> None:
        kept = []
        for name in stored.get("enriched", []):
            if getattr(song, name) is None and stored.get(ENRICHED_FIELDS[name]) is not None:
                setattr(song, name, stored[ENRICHED_FIELDS[name]])
                kept.append(name)
        if kept:
            song.extra["enriched"] = sorted({*song.extra.get("enriched", []), *kept})

    def _enrich(self, songs: list[Song], spotify: SpotifyClient, problems: list[RowProblem]) -> EnrichSummary:
        """Enrich from Spotify and record, per song, which fields enrichment filled.

        A Spotify id that enrichment gives a song is its identity from then on, so two songs of
        the catalogue must never get the same one: the song that has it already (stored under
        it, or given it by the catalogue), else the first row, keeps it, and the other keeps
        what the catalogue gave.
        """
        before = [{name: getattr(song, name) for name in ENRICHED_FIELDS} for song in songs]
        summary = enrich(songs, spotify, problems)
        point_ids = [self.point_id(song, "catalogue") for song in songs]
        given = sorted({i for song, old, i in zip(songs, before, point_ids) if old["spotify_id"] is None and song.spotify_id})
        holders = self._stored_catalogue_songs(given)
        claimed: dict[str, Song] = {}
        for song, old, point_id in sorted(zip(songs, before, point_ids), key=lambda t: (t[1]["spotify_id"] is None, t[0].row)):
            other, holder = claimed.get(point_id), holders.get(point_id)
            if other is not None:
                taken_by = f"row {other.row}'s song"
            elif holder is not None and holder[0] != _catalogue_key(song.song_id, song.title, song.artists):
                taken_by = f"the stored song {holder[1]!r}"
            else:
                taken_by = None
            if taken_by is None or old["spotify_id"] is not None:  # the catalogue's own Spotify id stands
                claimed.setdefault(point_id, song)
                continue
            reason = f"Spotify gave the track {song.spotify_id} of {taken_by} too; not used for this one"
            for name, value in old.items():
                setattr(song, name, value)
            problems.append(RowProblem(song.row, song.song_id, song.title, "kept", reason))
        for song, old in zip(songs, before):
            filled = [name for name, value in old.items() if value is None and getattr(song, name) is not None]
            if filled:
                song.extra["enriched"] = sorted({*song.extra.get("enriched", []), *filled})
        return summary

    def _stored_catalogue_songs(self, point_ids: list[str]) -> dict[str, tuple[str, str]]:
        """For each of these points that holds a catalogue song: its identity and title."""
        found: dict[str, tuple[str, str]] = {}
        if not point_ids or not self.index.exists():
            return found
        for start in range(0, len(point_ids), 1024):
            for point in self.index.get(point_ids[start : start + 1024], with_vectors=False):
                payload = point.payload
                if payload.get("source") == "catalogue":
                    title = str(payload.get("title", ""))
                    found[point.point_id] = (_catalogue_key(payload.get("song_id"), title, list(payload.get("artists", []))), title)
        return found

    def run(
        self,
        catalogue: Path,
        rename: dict[str, str] | None = None,
        limit: int | None = None,
        dry_run: bool = False,
        problems_path: Path | None = None,
        spotify: SpotifyClient | None = None,
        read: tuple[list[Song], list[RowProblem]] | None = None,
        part: Part | None = None,
        wait_for_centres_s: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
        source: str = "catalogue",
    ) -> IngestSummary:
        """Ingest one catalogue file and return its summary; with `spotify`, enrich it first.

        `read` is the catalogue as `read_catalogue` returned it, for callers that check it before
        opening the store (`rename` and `limit` are then not used); without it, it is read here.
        With `part`, only that share of the catalogue is ingested (see `Part`); part 1 first
        learns the centres, and the other parts wait up to `wait_for_centres_s` for them.
        `on_batch(songs)` is told each time a batch of that many songs has been stored. `source`
        is "catalogue" for the command, and "upload" for a catalogue loaded from the page, which
        never replaces a song stored from another source.
        """
        started = time.perf_counter()
        model_before = dict(self.embedder.seconds_by_modality)
        songs, problems = read if read is not None else read_catalogue(catalogue, rename, limit)
        read_seconds = time.perf_counter() - started
        summary = IngestSummary(read=len(songs) + sum(p.outcome == "rejected" for p in problems))
        songs = self._drop_duplicate_identities(songs, problems)
        sample: list[Song] = []
        if part is not None:
            identity = {song.row: self.point_id(song, "catalogue") for song in songs}
            if part.index == 1 and not dry_run and not self.index.centres_shared:
                # Part 1 learns the centres that every part uses, from a sample of the whole
                # catalogue chosen by identity (so any machine would choose the same songs).
                sample = sorted(songs, key=lambda s: identity[s.row])[:CENTRE_SAMPLE]
            rows = set(identity)
            songs = [song for song in songs if part.holds(identity[song.row])]
            # Rows that never became songs (unreadable, duplicates) are reported by part 1 only.
            own = {song.row for song in songs}
            problems[:] = [p for p in problems if p.row in own or (part.index == 1 and p.row not in rows)]
            summary.read = len(songs) + sum(p.outcome == "rejected" for p in problems)
        if spotify is not None:
            summary.enrichment = self._enrich(list({id(s): s for s in [*songs, *sample]}.values()), spotify, problems)
        with _switching_often():
            if sample:
                self._ingest(sample, catalogue.parent, [], IngestSummary(), dry_run=False)
                self.index.recentre(freeze=True)
                summary.sampled = len(sample)
            elif part is not None and not dry_run:
                self._wait_for_centres(part, wait_for_centres_s)
            self._ingest(songs, catalogue.parent, problems, summary, dry_run, on_batch, source)
        summary.rejected = sum(p.outcome == "rejected" for p in problems)
        summary.problems = problems
        model = {m: self.embedder.seconds_by_modality[m] - model_before[m] for m in model_before}
        summary.model_seconds = sum(model.values())
        summary.stages = {"read": read_seconds, "embed_lyrics": model[LYRICS], "embed_covers": model[COVER], **summary.stages}
        summary.elapsed_seconds = time.perf_counter() - started
        if problems and problems_path is not None:
            write_problems(problems, problems_path)
            summary.problems_path = problems_path
        return summary

    def _ingest(
        self,
        songs: list[Song],
        base_dir: Path,
        problems: list[RowProblem],
        summary: IngestSummary,
        dry_run: bool,
        on_batch: Callable[[int], None] | None = None,
        source: str = "catalogue",
    ) -> None:
        """Prepare, embed and store songs batch by batch, each stage beside the others.

        With `embed_aside`, batches are embedded in a thread of their own, so that a GPU never
        waits while the next batch is looked up in the store and screened; with `writers` (the
        engine's, unless given), that many embedded batches are written in background threads,
        else each is written in line. A batch that may teach a centre is stored in step (see
        `_store_while_centring`). On an error or Ctrl-C, the songs queued for preparing, the
        encoders' thread and the writers are dropped: only those already under way finish.
        """
        bar = tqdm(total=len(songs), unit="song", disable=not self.progress, desc="ingest")
        stages = summary.stages
        batches = self._prepared(songs, base_dir, source, look_up=not dry_run)

        def stored(count: int) -> None:
            bar.update(count)
            if on_batch is not None:
                on_batch(count)

        aside = self.embed_aside
        if aside is None:
            aside = not dry_run and resolve_runtime(self.embedder.settings.device).device == "cuda"
        with ThreadPoolExecutor(1) if aside else _InLine() as encoders, ThreadPoolExecutor(max(self.writers, 1)) as writers:
            writing: deque[tuple[Future[None], int]] = deque()

            def wait_for_writes(left: int) -> None:
                while len(writing) > left:
                    write, count = writing.popleft()
                    write.result()  # a failed write (or embedding) stops the run here, with its error
                    stored(count)

            def write(embedding: Future[list[SongPoint]]) -> None:
                self.index.upsert(embedding.result())

            try:
                while True:
                    with _timed(stages, "wait_for_loading"):  # songs prepared in threads or processes
                        batch = next(batches, None)
                    if batch is None:
                        break
                    kept = self._screen(batch, problems)
                    if source != "catalogue":
                        kept = self._keep_out_others(kept, source, problems)
                    summary.lyrics_missing += sum(LYRICS_HASH not in p.payload for p in kept)
                    summary.cover_missing += sum(COVER_HASH not in p.payload for p in kept)
                    if dry_run:
                        stored(len(batch))
                        continue
                    to_embed = self._to_embed(kept, summary)
                    embedding = encoders.submit(self.embed, to_embed)
                    with _timed(stages, "wait_for_embedding_and_store"):
                        if self._may_teach_a_centre(to_embed, sum(count for _, count in writing)):
                            wait_for_writes(0)
                            self._store_while_centring(embedding.result())
                            stored(len(batch))
                        elif self.writers:
                            writing.append((writers.submit(write, embedding), len(batch)))
                            wait_for_writes(self.writers)
                        else:
                            write(embedding)
                            stored(len(batch))
                with _timed(stages, "wait_for_embedding_and_store"):
                    wait_for_writes(0)
            except BaseException:
                batches.close()  # drops the songs queued for preparing
                encoders.shutdown(wait=False, cancel_futures=True)
                writers.shutdown(wait=False, cancel_futures=True)
                raise
        bar.close()
        if not dry_run:
            self.index.recentre()

    def _may_teach_a_centre(self, batch: list[PreparedSong], unwritten: int) -> bool:
        """Whether storing these songs may bring a modality whose centre is not final to
        CENTRE_SONGS songs, counting the `unwritten` songs of batches still being written as if
        each had it (a modality few songs have thus stores its batches in the background)."""
        for modality in self.index.provisional():
            joining = sum(modality in p.payload["vectors"] for p in batch)
            if joining and self.index.songs_with(modality) + unwritten + joining >= CENTRE_SONGS:
                return True
        return False

    def _store_while_centring(self, points: list[SongPoint]) -> None:
        """Store songs while the centres are learned, so that as few as possible are stored under
        provisional centres (each is written again when they change): up to the song that brings a
        modality whose centre is not final to CENTRE_SONGS songs, then learn the centres, and so on.
        """
        while points:
            cut, reached = len(points), False
            for modality in self.index.provisional():
                having = self.index.songs_with(modality)
                for position, point in enumerate(points[:cut]):
                    having += modality in point.vectors
                    if having >= CENTRE_SONGS:
                        cut, reached = position + 1, True
                        break
            self.index.upsert(points[:cut])
            if reached:
                self.index.recentre()
            points = points[cut:]

    @staticmethod
    def _keep_out_others(batch: list[PreparedSong], source: str, problems: list[RowProblem]) -> list[PreparedSong]:
        """Only the command's catalogue runs may take over a song stored from another source."""
        kept = []
        for prepared in batch:
            other = (prepared.stored or {}).get("source", source)
            if other == source:
                kept.append(prepared)
                continue
            song = prepared.song
            problems.append(RowProblem(
                song.row, song.song_id, song.title, "rejected",
                f"the store has this song (same id) from {other!r}; a catalogue loaded here never replaces it",
            ))
        return kept

    def _wait_for_centres(self, part: Part, patience_s: float) -> None:
        deadline = time.monotonic() + patience_s
        while True:
            self.index.reload()
            if self.index.centres_shared:
                return
            if time.monotonic() >= deadline:
                raise CentresNotReady(
                    f"part {part} needs the centres that part 1/{part.count} learns first: run part "
                    f"1/{part.count} (it records them within its first minutes), or give --wait-for-centres SECONDS"
                )
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))

    def add(self, songs: list[Song], source: str) -> tuple[IngestSummary, list[PreparedSong]]:
        """Store a few songs at once (no progress bar, no problems file), as unseen songs arrive.

        A stored song is never replaced from here: not a catalogue song, and not a song another
        visitor added by hand under the same title and artist (the first one stays).
        """
        summary = IngestSummary(read=len(songs))
        problems: list[RowProblem] = []
        prepared = self.preparation(songs).prepare_all(list(zip(songs, self.identify(songs, source))), None, source)
        kept = [p for p in self._screen(prepared, problems) if not p.stored]
        self.index.upsert(self.embed(self._to_embed(kept, summary)))
        self.index.recentre()
        summary.rejected = sum(p.outcome == "rejected" for p in problems)
        summary.problems = problems
        return summary, prepared

    def _drop_duplicate_identities(self, songs: list[Song], problems: list[RowProblem]) -> list[Song]:
        first_row: dict[str, int] = {}
        unique = []
        for song in songs:
            point_id = self.point_id(song, "catalogue")
            if point_id in first_row:
                problems.append(
                    RowProblem(
                        song.row, song.song_id, song.title, "rejected",
                        f"same song as row {first_row[point_id]} (same Spotify id, id or artist and title)",
                    )
                )
                continue
            first_row[point_id] = song.row
            unique.append(song)
        return unique

    @staticmethod
    def _screen(batch: list[PreparedSong], problems: list[RowProblem]) -> list[PreparedSong]:
        """Reject songs with neither lyrics nor a cover; report kept songs that lost their cover."""
        kept = []
        for prepared in batch:
            song = prepared.song
            has_lyrics = LYRICS_HASH in prepared.payload
            if prepared.cover_problem:
                outcome = "kept" if has_lyrics else "rejected"
                problems.append(RowProblem(song.row, song.song_id, song.title, outcome, prepared.cover_problem))
            elif not has_lyrics and COVER_HASH not in prepared.payload:
                problems.append(RowProblem(song.row, song.song_id, song.title, "rejected", "neither lyrics nor cover"))
            if has_lyrics or COVER_HASH in prepared.payload:
                kept.append(prepared)
        return kept

    def _to_embed(self, batch: list[PreparedSong], summary: IngestSummary) -> list[PreparedSong]:
        """Count each song's outcome, rewrite payloads whose content is unchanged, and return the
        songs whose content is new or changed."""
        to_embed, payload_only = [], []
        for prepared in batch:
            old = prepared.stored
            if old is not None:
                old = {key: value for key, value in old.items() if key not in DERIVED_FIELDS}
            if old is None:
                summary.inserted += 1
                to_embed.append(prepared)
            elif old == prepared.payload:
                summary.unchanged += 1
            else:
                summary.updated += 1
                (payload_only if stored_alike(prepared) else to_embed).append(prepared)
        for prepared in payload_only:
            self.index.overwrite_payload(prepared.point_id, prepared.payload)
        return to_embed

    def embed(self, batch: list[PreparedSong]) -> list[SongPoint]:
        """Points for prepared songs, with the encoders' vector for each modality they have."""
        # Lyrics come as the tokens prepared for them, else (stored unchanged, or in the cache when
        # prepared) as their text, tokenised only if the cache lacks them now; covers the cache
        # lacked when prepared come as the encoder's input, the others from the cache.
        lyrics = self.embedder.lyrics_vectors({
            p.payload[LYRICS_HASH]: p.lyrics_tokens if p.lyrics_tokens is not None else p.song.lyrics or ""
            for p in batch if LYRICS_HASH in p.payload
        })
        covers = self.embedder.cover_vectors(
            {p.payload[COVER_HASH]: p.cover_tensor for p in batch if p.cover_tensor is not None}
        )
        covers.update(
            self.embedder.cached(
                COVER, [p.payload[COVER_HASH] for p in batch if p.cover_tensor is None and COVER_HASH in p.payload]
            )
        )
        points = []
        for prepared in batch:
            if prepared.words_stored:  # stored with its words, and embedded again: the words are needed now
                prepared.words = self.embedder.words.document(prepared.song.lyrics or "") or None
            vectors = {}
            if LYRICS_HASH in prepared.payload:
                vectors[LYRICS] = lyrics[prepared.payload[LYRICS_HASH]]
            if COVER_HASH in prepared.payload:
                vectors[COVER] = covers[prepared.payload[COVER_HASH]]
            points.append(SongPoint(prepared.point_id, prepared.payload, vectors, prepared.words))
        return points


class _InLine(Executor):
    """Runs each task at once, in the thread that submits it."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # noqa: BLE001 (handed over with the future, as a thread's would be)
            future.set_exception(error)
        return future


def _catalogue_key(song_id: str | None, title: str, artists: list[str]) -> str:
    """What makes a catalogue song itself: its catalogue id, else its artists and title."""
    return f"id:{song_id}" if song_id else _named_point_id(title, artists)


def _named_point_id(title: str, artists: list[str]) -> str:
    """The point id of a catalogue song known by its artists and title alone."""
    return song_point_id(spotify_id=None, song_id=None, artists=artists, title=title)


_runs_lock = threading.Lock()
_runs = 0  # ingestion runs under way in this process
_interval_before = 0.0


@contextmanager
def _switching_often() -> Iterator[None]:
    """SWITCH_INTERVAL_S while any run is under way; the interval from before once none is."""
    global _runs, _interval_before
    with _runs_lock:
        if _runs == 0:
            _interval_before = sys.getswitchinterval()
            sys.setswitchinterval(SWITCH_INTERVAL_S)
        _runs += 1
    try:
        yield
    finally:
        with _runs_lock:
            _runs -= 1
            if _runs == 0:
                sys.setswitchinterval(_interval_before)


@contextmanager
def _timed(stages: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        stages[stage] = stages.get(stage, 0.0) + time.perf_counter() - started


def write_problems(problems: list[RowProblem], path: Path) -> None:
    """Write rejected and incomplete rows, with reasons, as CSV (the page offers it for download, so
    outside text is kept from being run as a spreadsheet formula)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["row", "song_id", "title", "outcome", "reason"])
        writer.writeheader()
        for problem in sorted(problems, key=lambda p: p.row):
            writer.writerow({k: v if k == "row" else spreadsheet_text(v) for k, v in asdict(problem).items()})
