"""`python -m ingest.first_run CATALOGUE`: ingest a catalogue unless this store already holds it.

The start script calls this before the page opens. A stamp records the catalogue's content hash
per store and collection, so a second start checks a hash and a count instead of loading models.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from ingest.catalogue import read_catalogue
from search.cli import INTERRUPTED, OK, STORE, UNEXPECTED, USAGE, CommandParser, catalogue_file, run_command
from search.index import open_index
from search.settings import Settings, load_settings


def catalogue_digest(catalogue: Path) -> str:
    """Hash of the catalogue file and of the size and time of each local cover file it names."""
    songs, _ = read_catalogue(catalogue)  # first: a catalogue it cannot read is a CatalogueError
    digest = hashlib.sha256(catalogue.read_bytes())
    for cover in sorted({s.cover for s in songs if s.cover and "://" not in s.cover}):
        path = catalogue.parent / Path(cover).expanduser()
        stat = path.stat() if path.is_file() else None
        digest.update(f"{cover}:{stat and stat.st_size}:{stat and stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def stamp_path(settings: Settings) -> Path:
    """Where the stamp for this store and collection lives."""
    key = hashlib.sha256(f"{settings.store_label}|{settings.collection}".encode()).hexdigest()[:16]
    return settings.cache_dir.parent / "state" / f"ingested-{key}.json"


def stored_count(settings: Settings) -> int:
    """How many songs the collection holds (0 when it does not exist)."""
    index = open_index(settings)
    try:
        return index.count()
    finally:
        index.close()


def already_ingested(settings: Settings, catalogue: Path, digest: str) -> int | None:
    """The song count if this catalogue, unchanged, is already in the collection; else None."""
    try:
        stamp = json.loads(stamp_path(settings).read_text())
    except (OSError, ValueError):
        return None
    if stamp.get("catalogue") != str(catalogue.resolve()) or stamp.get("digest") != digest:
        return None
    count = stored_count(settings)
    return count if count == stamp.get("count") and count > 0 else None


def build_parser() -> CommandParser:
    """The command's one argument."""
    parser = CommandParser(
        prog="python -m ingest.first_run", description=__doc__, exit_codes=(OK, UNEXPECTED, USAGE, STORE, INTERRUPTED)
    )
    parser.add_argument("catalogue", type=catalogue_file, help="CSV, Parquet or JSON-lines catalogue")
    return parser


def first_run(catalogue: Path) -> int:
    """Ingest `catalogue` unless it is in the store already; returns the exit status."""
    settings = load_settings()
    digest = catalogue_digest(catalogue)
    count = already_ingested(settings, catalogue, digest)
    if count is not None:
        print(f"songspace: {count} songs ready in {settings.store_label} ({catalogue} already ingested)", file=sys.stderr)
        return OK
    from ingest.__main__ import main as ingest_main

    status = ingest_main([str(catalogue)])
    if status != OK:
        return status
    count = stored_count(settings)
    path = stamp_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"catalogue": str(catalogue.resolve()), "digest": digest, "count": count}))
    return OK


def main(argv: list[str] | None = None) -> int:
    """Ingest when needed; returns the exit status."""
    return run_command(lambda: first_run(build_parser().parse_args(argv).catalogue))


if __name__ == "__main__":
    sys.exit(main())
