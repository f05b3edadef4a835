"""Catalogue to points: fetch covers ahead of the encoders, embed what changed, upsert in batches."""

from __future__ import annotations

import csv
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ingest.catalogue import RowProblem, Song, read_catalogue
from ingest.covers import CoverError, CoverFetcher
from ingest.embedder import Embedder, bytes_hash, lyrics_hash
from ingest.enrich import EnrichSummary, enrich
from ingest.spotify import SpotifyClient
from search.engines.base import SparseVector
from search.index import COVER, LYRICS, WORDS, SongIndex, SongPoint, song_point_id

EXCERPT_CHARS = 600
LYRICS_HASH = "lyrics_hash"
COVER_HASH = "cover_hash"
HASH_FIELDS = (LYRICS_HASH, COVER_HASH)
# A new collection's centres are the mean vectors of its first songs (at most this many, at least
# the minimum; fewer songs than that and the collection is stored uncentred).
CALIBRATION_SONGS = 512
MIN_CALIBRATION_SONGS = 32


@dataclass
class PreparedSong:
    """A song with its identity, content hashes and, where needed, a preprocessed cover."""

    song: Song
    point_id: str
    payload: dict[str, Any]
    cover_tensor: torch.Tensor | None = None
    cover_problem: str | None = None
    words: SparseVector | None = None


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
        if self.enrichment is not None:
            lines.append(self.enrichment.line())
        if self.problems_path is not None:
            lines.append(f"rejected and incomplete rows: {self.problems_path}")
        return lines


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


class Ingestor:
    """Runs catalogues into a song index; safe to re-run, and resumable after any interruption."""

    def __init__(
        self,
        index: SongIndex,
        embedder: Embedder,
        fetcher: CoverFetcher,
        batch_size: int = 128,
        workers: int = 4,
        progress: bool = True,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.fetcher = fetcher
        self.batch_size = batch_size
        self.workers = workers
        self.progress = progress

    def prepare(self, song: Song, base_dir: Path | None, source: str) -> PreparedSong:
        """Hash a song's content and, if its cover is new, load and preprocess it (runs in threads)."""
        prepared = PreparedSong(song, self._id(song), song_payload(song, source))
        if song.lyrics:
            prepared.payload[LYRICS_HASH] = lyrics_hash(song.lyrics)
            prepared.words = self.embedder.words.document(song.lyrics) or None
        self._load_cover(prepared, base_dir)
        # What the song will be stored with; the index records the same list, so a stored song
        # that lacks one of them (say, from an older version) counts as changed.
        prepared.payload["vectors"] = sorted(
            [LYRICS] * (LYRICS_HASH in prepared.payload)
            + [WORDS] * (prepared.words is not None)
            + [COVER] * (COVER_HASH in prepared.payload)
        )
        return prepared

    def _load_cover(self, prepared: PreparedSong, base_dir: Path | None) -> None:
        song = prepared.song
        if song.cover:
            if "://" in song.cover:
                prepared.payload["cover_url"] = song.cover
            else:
                path = Path(song.cover).expanduser()
                prepared.payload["cover_path"] = str((base_dir / path if base_dir else path).resolve())
            try:
                data = self.fetcher.load(song.cover, base_dir)
                cover_hash = bytes_hash(data)
                if not self.embedder.cached(COVER, [cover_hash]):
                    prepared.cover_tensor = self.embedder.image.preprocess(self.fetcher.decode(data))
            except CoverError as error:
                prepared.cover_problem = str(error)
                return
            except Exception as error:  # noqa: BLE001 (one row's cover must never stop a run)
                prepared.cover_problem = f"cover could not be used ({error.__class__.__name__}: {error})"
                return
            prepared.payload[COVER_HASH] = cover_hash

    def _prepared(
        self, songs: list[Song], base_dir: Path | None, source: str
    ) -> Iterator[list[PreparedSong]]:
        """Batches of prepared songs; the next two batches load while the current one is embedded."""
        def submit(pool: ThreadPoolExecutor, batch: list[Song]) -> list[Future[PreparedSong]]:
            return [pool.submit(self.prepare, s, base_dir, source) for s in batch]

        batches = [songs[i : i + self.batch_size] for i in range(0, len(songs), self.batch_size)]
        if any(song.cover for song in songs):
            self.embedder.image  # noqa: B018 (load the cover encoder here, not once per thread)
        with ThreadPoolExecutor(self.workers) as pool:
            pending: deque[list[Future[PreparedSong]]] = deque()
            for batch in batches:
                pending.append(submit(pool, batch))
                if len(pending) > 2:
                    yield [f.result() for f in pending.popleft()]
            while pending:
                yield [f.result() for f in pending.popleft()]

    @staticmethod
    def _id(song: Song) -> str:
        return song_point_id(
            spotify_id=song.spotify_id, song_id=song.song_id, artists=song.artists, title=song.title
        )

    def run(
        self,
        catalogue: Path,
        rename: dict[str, str] | None = None,
        limit: int | None = None,
        dry_run: bool = False,
        problems_path: Path | None = None,
        spotify: SpotifyClient | None = None,
    ) -> IngestSummary:
        """Ingest one catalogue file and return its summary; with `spotify`, enrich it first."""
        started = time.perf_counter()
        model_before = self.embedder.model_seconds
        songs, problems = read_catalogue(catalogue, rename, limit)
        summary = IngestSummary(read=len(songs) + sum(p.outcome == "rejected" for p in problems))
        if spotify is not None:
            summary.enrichment = enrich(songs, spotify, problems)
        songs = self._drop_duplicate_identities(songs, problems)
        known = dict(self.index.scroll_payloads()) if not dry_run else {}
        bar = tqdm(total=len(songs), unit="song", disable=not self.progress, desc="ingest")
        calibration: list[SongPoint] | None = None
        if not dry_run and self.index.centres is None:
            if self.index.count():  # stored before centring existed: keep the collection as it is
                self.index.set_centres({})
            else:
                calibration = []
        for batch in self._prepared(songs, catalogue.parent, "catalogue"):
            kept = self._screen(batch, problems)
            if not dry_run:
                points = self._store(kept, known, summary)
                if calibration is not None:
                    calibration.extend(points)
                    if len(calibration) >= CALIBRATION_SONGS:
                        self._calibrate(calibration)
                        calibration = None
                else:
                    self.index.upsert(points)
            summary.lyrics_missing += sum(LYRICS_HASH not in p.payload for p in kept)
            summary.cover_missing += sum(COVER_HASH not in p.payload for p in kept)
            bar.update(len(batch))
        bar.close()
        if calibration is not None:
            self._calibrate(calibration)
        summary.rejected = sum(p.outcome == "rejected" for p in problems)
        summary.problems = problems
        summary.model_seconds = self.embedder.model_seconds - model_before
        summary.elapsed_seconds = time.perf_counter() - started
        if problems and problems_path is not None:
            write_problems(problems, problems_path)
            summary.problems_path = problems_path
        return summary

    def add(self, songs: list[Song], source: str) -> tuple[IngestSummary, list[PreparedSong]]:
        """Store a few songs at once (no progress bar, no problems file), as unseen songs arrive."""
        summary = IngestSummary(read=len(songs))
        problems: list[RowProblem] = []
        prepared = [self.prepare(song, None, source) for song in songs]
        kept = self._screen(prepared, problems)
        known = {p.point_id: p.payload for p in self.index.get([k.point_id for k in kept], with_vectors=False)}
        if self.index.centres is None:
            self.index.set_centres({})  # a collection begun from single songs has no centres to learn
        self.index.upsert(self._store(kept, known, summary))
        summary.rejected = sum(p.outcome == "rejected" for p in problems)
        summary.problems = problems
        return summary, prepared

    def _drop_duplicate_identities(self, songs: list[Song], problems: list[RowProblem]) -> list[Song]:
        first_row: dict[str, int] = {}
        unique = []
        for song in songs:
            point_id = self._id(song)
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

    def _calibrate(self, points: list[SongPoint]) -> None:
        """Record the collection's centres from its first songs, then store those songs."""
        centres = {}
        for modality in (LYRICS, COVER):
            vectors = [p.vectors[modality] for p in points if modality in p.vectors]
            if len(vectors) >= MIN_CALIBRATION_SONGS:
                centres[modality] = np.mean(vectors, axis=0)
        self.index.set_centres(centres)
        self.index.upsert(points)

    def _store(
        self, batch: list[PreparedSong], known: dict[str, dict[str, Any]], summary: IngestSummary
    ) -> list[SongPoint]:
        """Count each song's outcome, rewrite payloads whose content is unchanged, and return
        points for songs whose content is new or changed."""
        to_embed, payload_only = [], []
        for prepared in batch:
            old = known.get(prepared.point_id)
            replaced = self._earlier_identity(prepared.song, known)
            if old is None and replaced is not None:
                # Enrichment gave a catalogue song a Spotify id, and so a new point id: move it. If
                # the run stops before the new point is stored, the next run stores it.
                self.index.delete([replaced])
                known.pop(replaced)
                summary.updated += 1
                to_embed.append(prepared)
                continue
            if old is None:
                summary.inserted += 1
                to_embed.append(prepared)
            elif old == prepared.payload:
                summary.unchanged += 1
            else:
                summary.updated += 1
                same_content = all(old.get(f) == prepared.payload.get(f) for f in (*HASH_FIELDS, "vectors"))
                (payload_only if same_content else to_embed).append(prepared)
        for prepared in payload_only:
            self.index.overwrite_payload(prepared.point_id, prepared.payload)
        for prepared in batch:
            known[prepared.point_id] = prepared.payload
        return self.embed(to_embed)

    @staticmethod
    def _earlier_identity(song: Song, known: dict[str, dict[str, Any]]) -> str | None:
        """The point id a song had by its catalogue id before it gained a Spotify id, if stored."""
        if not (song.spotify_id and song.song_id):
            return None
        earlier = song_point_id(spotify_id=None, song_id=song.song_id, artists=song.artists, title=song.title)
        return earlier if earlier in known else None

    def embed(self, batch: list[PreparedSong]) -> list[SongPoint]:
        """Points for prepared songs, with the encoders' vector for each modality they have."""
        lyrics = self.embedder.lyrics_vectors(
            {p.payload[LYRICS_HASH]: p.song.lyrics or "" for p in batch if LYRICS_HASH in p.payload}
        )
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
            vectors = {}
            if LYRICS_HASH in prepared.payload:
                vectors[LYRICS] = lyrics[prepared.payload[LYRICS_HASH]]
            if COVER_HASH in prepared.payload:
                vectors[COVER] = covers[prepared.payload[COVER_HASH]]
            points.append(SongPoint(prepared.point_id, prepared.payload, vectors, prepared.words))
        return points


def write_problems(problems: list[RowProblem], path: Path) -> None:
    """Write rejected and incomplete rows, with reasons, as CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["row", "song_id", "title", "outcome", "reason"])
        writer.writeheader()
        for problem in sorted(problems, key=lambda p: p.row):
            writer.writerow(asdict(problem))
