"""`python -m ingest.first_run CATALOGUE`: ingest a catalogue unless this store already holds it.

The start script calls this before the page opens. A stamp records the catalogue's content hash
per store and collection, so a second start checks a hash and a count instead of loading models.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from ingest.catalogue import CatalogueError, read_catalogue
from search.index import SongIndexError, open_index
from search.settings import Settings, load_settings


def catalogue_digest(catalogue: Path) -> str:
    """Hash of the catalogue file and of the size and time of each local cover file it names."""
    digest = hashlib.sha256(catalogue.read_bytes())
    songs, _ = read_catalogue(catalogue)
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


def main(argv: list[str] | None = None) -> int:
    """Ingest when needed; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ingest.first_run CATALOGUE", file=sys.stderr)
        return 2
    catalogue = Path(args[0])
    settings = load_settings()
    try:
        digest = catalogue_digest(catalogue)
    except CatalogueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        count = already_ingested(settings, catalogue, digest)
    except SongIndexError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    if count is not None:
        print(f"songspace: {count} songs ready in {settings.store_label} ({catalogue} already ingested)", file=sys.stderr)
        return 0
    from ingest.__main__ import main as ingest_main

    status = ingest_main([str(catalogue)])
    if status != 0:
        return status
    count = stored_count(settings)
    path = stamp_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"catalogue": str(catalogue.resolve()), "digest": digest, "count": count}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
