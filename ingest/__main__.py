"""`python -m ingest CATALOGUE`: load a catalogue into the song index."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from ingest.catalogue import CatalogueError
from ingest.context import open_songspace
from ingest.encoders import EncoderUnavailable
from ingest.pipeline import Ingestor
from ingest.spotify import SpotifyClient, SpotifyError
from search.index import SongIndexError
from search.settings import load_settings


def parse_rename(pairs: list[str]) -> dict[str, str]:
    """Turn `column=field` options into a mapping."""
    rename = {}
    for pair in pairs:
        column, sep, target = pair.partition("=")
        if not sep:
            raise SystemExit(f"--rename expects COLUMN=FIELD, got {pair!r}")
        rename[column] = target
    return rename


def main(argv: list[str] | None = None) -> int:
    """Run the ingestion command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__)
    parser.add_argument("catalogue", type=Path, help="CSV, Parquet or JSON-lines catalogue")
    parser.add_argument("--collection", help="collection name (default: QDRANT_COLLECTION)")
    parser.add_argument("--limit", type=int, help="ingest only the first N rows")
    parser.add_argument("--batch-size", type=int, default=128, help="songs embedded and upserted together")
    parser.add_argument("--dry-run", action="store_true", help="validate and report; store nothing")
    parser.add_argument(
        "--rename", action="append", default=[], metavar="COLUMN=FIELD",
        help="read COLUMN as FIELD (title, artists, lyrics, cover, genre, year, album, song_id, ...)",
    )
    parser.add_argument("--problems", type=Path, help="CSV for rejected and incomplete rows")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--spotify", action="store_true", help="fill missing covers and Spotify links from Spotify search"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    settings = load_settings()
    if args.collection:
        settings = replace(settings, collection=args.collection)
    problems = args.problems or settings.cache_dir.parent / "ingest" / f"{args.catalogue.stem}-problems.csv"
    spotify = None
    if args.spotify:
        try:
            spotify = SpotifyClient(settings, disk_cache=True)
        except SpotifyError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    try:
        songspace = open_songspace(settings)
    except (SongIndexError, EncoderUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    print(f"{settings.store_label}, collection {settings.collection!r}: {songspace.notice}", file=sys.stderr)
    try:
        ingestor = Ingestor(
            songspace.index, songspace.embedder, songspace.fetcher,
            batch_size=args.batch_size, progress=not args.no_progress,
        )
        summary = ingestor.run(
            args.catalogue, parse_rename(args.rename), args.limit, args.dry_run, problems, spotify
        )
    except CatalogueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: what was stored stays; run the same command again to finish", file=sys.stderr)
        return 130
    finally:
        songspace.close()
    for line in summary.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
