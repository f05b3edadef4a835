"""`python -m ingest CATALOGUE`: load a catalogue into the song index.

The catalogue is read and checked first: a missing or unreadable catalogue, or one without a
usable song, leaves the store as it was. Progress and notices go to stderr, the summary to stdout.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from search.cli import (
    INTERRUPTED,
    OK,
    STORE,
    UNEXPECTED,
    USAGE,
    CommandError,
    CommandParser,
    catalogue_file,
    non_empty,
    positive_int,
    run_command,
    with_collection,
)
from search.settings import Settings, load_settings

if TYPE_CHECKING:
    from ingest.catalogue import RowProblem, Song
    from ingest.pipeline import Part


def rename_pair(value: str) -> tuple[str, str]:
    """An argument type: `COLUMN=FIELD`."""
    column, sep, target = value.partition("=")
    if not (sep and column.strip() and target.strip()):
        raise argparse.ArgumentTypeError(f"expected COLUMN=FIELD, got {value!r}")
    return column.strip(), target.strip()


def part_of(value: str) -> Part:
    """An argument type: `I/N`."""
    from ingest.pipeline import Part

    try:
        return Part.parse(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def seconds(value: str) -> float:
    """An argument type: a number of seconds, 0 or more."""
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0.0 <= number < float("inf"):  # NaN fails this too
        raise argparse.ArgumentTypeError(f"expected a number of seconds, 0 or more, got {value!r}")
    return number


def problems_file(value: str) -> Path:
    """An argument type: a file the problems CSV can be written to (checked now, not after the run)."""
    path = Path(value)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a folder: name the CSV file to write")
    existing = next((folder for folder in path.absolute().parents if folder.exists()), None)
    if existing is not None and not existing.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {value}: {existing} is a file, not a folder")
    return path


def build_parser() -> CommandParser:
    """The command's arguments, each checked as it is parsed."""
    parser = CommandParser(
        prog="python -m ingest", description=__doc__, exit_codes=(OK, UNEXPECTED, USAGE, STORE, INTERRUPTED)
    )
    parser.add_argument("catalogue", type=catalogue_file, help="CSV, Parquet or JSON-lines catalogue")
    parser.add_argument("--collection", type=non_empty, help="collection name (default: QDRANT_COLLECTION, else songs)")
    parser.add_argument("--limit", type=positive_int, help="ingest only the first N rows (default: every row)")
    parser.add_argument(
        "--batch-size", type=positive_int,
        help="songs embedded and upserted together (default: 128 on the CPU, 1024 on a GPU)",
    )
    parser.add_argument(
        "--part", type=part_of, metavar="I/N",
        help="ingest share I of N of the catalogue, chosen by song identity, so that N machines load "
        "it into one server; part 1 learns the centres the others use (default: the whole catalogue)",
    )
    parser.add_argument(
        "--wait-for-centres", type=seconds, default=600.0, metavar="SECONDS",
        help="how long parts 2..N wait for part 1's centres before giving up",
    )
    parser.add_argument(
        "--dry-run", action="store_true",
        help="read and check the catalogue and its covers and write the problems file; the store "
        "and the caches are left as they are",
    )
    parser.add_argument(
        "--rename", type=rename_pair, action="append", default=[], metavar="COLUMN=FIELD",
        help="read COLUMN as FIELD (title, artists, lyrics, cover, genre, year, album, song_id, ...); repeatable",
    )
    parser.add_argument(
        "--problems", type=problems_file,
        help="CSV for rejected and incomplete rows (default: var/ingest/<catalogue name>-problems.csv)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--spotify", action="store_true",
        help="fill missing covers and Spotify links: songs with a Spotify id are looked up 50 to a "
        "request, the others searched for by title and artist",
    )
    return parser


def ingest(args: argparse.Namespace) -> int:
    """Run one parsed command line; returns the exit status."""
    # The pipeline's modules load torch: imported only once the arguments are known to be good.
    from ingest.catalogue import read_catalogue
    from ingest.pipeline import write_problems

    settings = with_collection(load_settings(), args.collection)
    problems_path = args.problems or settings.cache_dir.parent / "ingest" / f"{args.catalogue.stem}-problems.csv"
    songs, problems = read_catalogue(args.catalogue, dict(args.rename), args.limit)
    if not songs:
        if problems:
            write_problems(problems, problems_path)
        reason = f"{len(problems)} rows rejected, reasons in {problems_path}" if problems else "it has no rows"
        raise CommandError(f"no usable song in {args.catalogue} ({reason}); nothing was stored")
    if args.dry_run:
        # Downloads and answers a dry run fetches are cached in a folder that goes with it.
        with tempfile.TemporaryDirectory(prefix="songspace-dry-run-") as scratch:
            return load(args, replace(settings, cache_dir=Path(scratch)), (songs, problems), problems_path)
    return load(args, settings, (songs, problems), problems_path)


def load(args: argparse.Namespace, settings: Settings, read: tuple[list[Song], list[RowProblem]], problems_path: Path) -> int:
    """Open the store (unchanged on a dry run) and run the read catalogue into it."""
    from ingest.context import open_songspace, open_unchanged
    from ingest.encoders.base import resolve_runtime
    from ingest.pipeline import CentresNotReady, Ingestor
    from ingest.preparation import start_worker_server, worker_processes

    processes = worker_processes(settings)
    if processes:
        start_worker_server()  # its imports run while the store opens and the encoders load
    if settings.store_process is None:
        # Beside a GPU, the store's writes leave the process that feeds the encoders too.
        settings = replace(settings, store_process=processes > 0)

    spotify = None
    if args.spotify:
        from ingest.spotify import SpotifyClient, SpotifyError

        try:
            spotify = SpotifyClient(settings, disk_cache=True)
        except SpotifyError as error:
            raise CommandError(str(error)) from error
    songspace = open_unchanged(settings) if args.dry_run else open_songspace(settings)
    dry_run = " (dry run: nothing is stored)" if args.dry_run else ""
    print(f"{settings.store_label}, collection {settings.collection!r}{dry_run}: {songspace.notice}", file=sys.stderr)
    try:
        on_gpu = resolve_runtime(settings.device).device == "cuda"
        ingestor = Ingestor(
            songspace.index, songspace.embedder, songspace.fetcher,
            batch_size=args.batch_size or (1024 if on_gpu else 128), progress=not args.no_progress,
        )
        summary = ingestor.run(
            args.catalogue, dry_run=args.dry_run, problems_path=problems_path, spotify=spotify, read=read,
            part=args.part, wait_for_centres_s=args.wait_for_centres,
        )
    except CentresNotReady as error:
        raise CommandError(str(error), STORE) from None
    except KeyboardInterrupt:
        raise CommandError("interrupted: what was stored stays; run the same command again to finish", INTERRUPTED) from None
    finally:
        songspace.close()
    for line in summary.lines():
        print(line)
    return OK


def main(argv: list[str] | None = None) -> int:
    """Run the ingestion command; returns the exit status."""
    return run_command(lambda: ingest(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
