"""`python -m search.store COMMAND`: look into the song collection and tidy it.

  list    songs, with filters
  find    songs by title or artist, as the page's search box finds them
  status  the store, the collection, its song count, encoders, centring and sources
  delete  songs by id, by source (what visitors added, say) or the whole collection
  migrate copy a collection from another store (an older Songspace's local-mode store, say)
  optimize build the indexes Qdrant Edge builds only when asked (HNSW in approximate mode)

No model is loaded: these commands only read and change the collection. `delete` deletes nothing
without --yes; it says what it would delete instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

from search.cli import (
    INTERRUPTED,
    NOT_FOUND,
    OK,
    STORE,
    UNEXPECTED,
    USAGE,
    CommandError,
    CommandParser,
    describe_filters,
    display_id,
    empty_collection,
    format_table,
    non_empty,
    positive_int,
    resolve_genres,
    run_command,
    songs_by_id,
    with_collection,
    year_range,
)
from search.index import MIN_CENTRE_SONGS, SongIndex, SongPoint, older_format, open_index
from search.recommend import Filters
from search.settings import ENGINES, Settings, load_settings
from search.titles import TitleIndex

EXIT_CODES = (OK, UNEXPECTED, USAGE, STORE, NOT_FOUND, INTERRUPTED)
# The payload's `source`: a catalogue's song (the command), a catalogue loaded from the page, a
# Spotify track fetched on demand, a song added by hand.
SOURCES = ("catalogue", "upload", "spotify", "user")
SONG_FIELDS = ["song_id", "title", "artists", "album", "year", "genre", "source"]
SONG_HEADER = ["id", "source", "year", "genre", "title — artists"]


def build_parser() -> CommandParser:
    """The commands and their arguments, each checked as it is parsed."""
    parser = CommandParser(prog="python -m search.store", description=__doc__, exit_codes=EXIT_CODES)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--collection", type=non_empty, help="collection name (default: QDRANT_COLLECTION, else songs)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> CommandParser:
        return commands.add_parser(name, parents=[common], help=summary, description=summary, exit_codes=EXIT_CODES)

    listing = command("list", "list songs in store order, with filters")
    listing.add_argument("--limit", type=positive_int, default=20, help="show at most this many songs")
    listing.add_argument(
        "--genre", type=non_empty, action="append", default=[],
        help="only this genre, in any case; repeat for several (default: every genre)",
    )
    listing.add_argument("--year", type=year_range, help="only this year or range, e.g. 1990-1999 (default: every year)")
    listing.add_argument(
        "--source", choices=SOURCES, action="append", default=[],
        help="only songs from this source; repeat for several (default: every source)",
    )
    listing.add_argument("--json", action="store_true", help="print a JSON list")

    find = command("find", "find songs by title and/or artist; case, accents and small typos do not matter")
    find.add_argument("query", type=non_empty, help="a title, an artist, or both")
    find.add_argument("--limit", type=positive_int, default=8, help="show at most this many songs")
    find.add_argument("--json", action="store_true", help="print a JSON list")

    status = command("status", "show the store, the collection, its songs, encoders, centring and sources")
    status.add_argument("--json", action="store_true", help="print a JSON object")

    delete = command("delete", "delete songs by id, by source, or the whole collection (needs --yes)")
    which = delete.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--id", dest="ids", type=non_empty, nargs="+", metavar="ID",
        help="songs by the id tables show: a catalogue id or a point id",
    )
    which.add_argument("--source", choices=SOURCES, help="every song from this source, e.g. user: what visitors added")
    which.add_argument("--all", action="store_true", help="the whole collection, with its encoders and centres")
    delete.add_argument("--yes", action="store_true", help="delete; without it, say what would be deleted and exit 2")

    migrate = command("migrate", "copy a collection from another store into this one (an empty collection)")
    migrate.add_argument("--from", dest="source", type=existing_folder, required=True, metavar="PATH",
                         help="the other embedded store's folder, e.g. var/qdrant")
    migrate.add_argument("--from-engine", choices=ENGINES, default="local",
                         help="the other store's engine (an older Songspace's store is local mode)")
    migrate.add_argument("--from-collection", type=non_empty, help="the collection there (default: the same name)")

    command("optimize", "build what Qdrant Edge builds only when asked: merged segments, and HNSW in approximate mode")
    return parser


def existing_folder(value: str) -> Path:
    """An argument type: a folder that exists."""
    path = Path(value).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no folder at {path}")
    return path


def migrate_collection(index: SongIndex, settings: Settings, args: argparse.Namespace) -> int:
    """Copy the other store's collection into this one and say what was copied."""
    from search.engines import open_engine
    from search.migrate import MigrationError, migrate

    source_settings = replace(settings, qdrant_url=None, engine=args.from_engine, qdrant_path=args.source.resolve())
    if source_settings.qdrant_path == settings.qdrant_path.resolve() and not settings.qdrant_url:
        raise CommandError("the source and the target are the same store; set QDRANT_PATH or QDRANT_ENGINE for the target")
    name = args.from_collection or settings.collection
    source = open_engine(source_settings, name)
    try:
        if not source.exists():
            raise CommandError(f"no collection {name!r} at {args.source} ({args.from_engine})", NOT_FOUND)
        done = migrate(source, index)
    except MigrationError as error:
        raise CommandError(str(error)) from error
    finally:
        source.close()
    print(f"copied {songs_text(done.songs)} into {index.label}, collection {index.collection!r}"
          + (" (from an older Songspace's format)" if done.older_format else ""))
    if done.without_words:
        print(f"{songs_text(done.without_words)} with lyrics have no words vector yet: ingest their catalogue again "
              "(`python -m ingest CATALOGUE`; nothing is re-embedded) to add them")
    return OK


def optimize_store(index: SongIndex) -> int:
    """Build what the engine builds only on request."""
    done = index.optimize()
    print({None: f"nothing to do: {index.label} builds its indexes by itself", True: "optimized", False: "already optimal"}[done])
    return OK


def songs_text(count: int) -> str:
    """'1 song', '9 songs'."""
    return f"{count} song{'s' * (count != 1)}"


def song_record(point_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A song as the JSON output gives it."""
    return {"point_id": point_id, **{name: payload.get(name) for name in SONG_FIELDS}}


def song_rows(songs: list[tuple[str, dict[str, Any]]]) -> list[list[str]]:
    """Table rows: id, source, year, genre, title — artists."""
    return [
        [display_id(point_id, payload), str(payload.get("source", "")), str(payload.get("year") or ""),
         str(payload.get("genre") or ""), f"{payload.get('title', '?')} — {', '.join(payload.get('artists', [])) or '?'}"]
        for point_id, payload in songs
    ]


def list_songs(index: SongIndex, args: argparse.Namespace) -> int:
    """Print the first songs that pass the filters, and how many there are."""
    filters = Filters(genres=resolve_genres(index, args.genre), years=args.year, sources=tuple(args.source))
    where = filters.to_filter() or None
    total = index.count(where)
    songs = list(islice(index.scroll_payloads(SONG_FIELDS, where), args.limit))
    if args.json:
        print(json.dumps([song_record(*song) for song in songs], ensure_ascii=False, indent=2))
    elif songs:
        print(format_table(SONG_HEADER, song_rows(songs)))
    if not songs:
        nothing = f"nothing matched: no song in collection {index.collection!r} has {' and '.join(describe_filters(filters))}"
        print(nothing, file=sys.stderr if args.json else sys.stdout)
    elif total > len(songs):
        print(f"{len(songs)} of {songs_text(total)} shown; --limit shows more", file=sys.stderr)
    return OK


def find_songs(index: SongIndex, args: argparse.Namespace) -> int:
    """Print the songs whose title and artists best match the query."""
    matches = TitleIndex(index).find(args.query, args.limit)
    if not matches:
        raise CommandError(
            f"no song in collection {index.collection!r} matches {args.query!r}; "
            "`python -m search.store list` shows what is there",
            NOT_FOUND,
        )
    payloads = {p.point_id: p.payload for p in index.get([m.point_id for m in matches], with_vectors=False)}
    if args.json:
        records = [{**song_record(m.point_id, payloads.get(m.point_id, {})), "match": round(m.score, 1)} for m in matches]
        print(json.dumps(records, ensure_ascii=False, indent=2))
    else:
        rows = [
            [display_id(m.point_id, payloads.get(m.point_id, {})), f"{m.score:.0f}", f"{m.title} — {', '.join(m.artists) or '?'}"]
            for m in matches
        ]
        print(format_table(["id", "match", "title — artists"], rows))
    return OK


def store_status(index: SongIndex, settings: Settings) -> dict[str, Any]:
    """What the store holds, as a JSON-ready object."""
    encoders = index.encoders
    return {
        "store": settings.store_label,
        "engine": index.label,
        "collection": settings.collection,
        "exists": index.exists(),
        "songs": index.count(),
        "encoders": asdict(encoders) if encoders else None,
        "encoder_notice": index.encoder_notice,
        "centred": sorted(index.centres or {}),  # the modalities whose vectors are centred
        "centring": index.centring(),  # per modality: songs its centre was learned from, final or not
        "older_format": older_format(index.metadata()),  # made by an older Songspace: migrate it
        "sources": dict(index.facet("source")),
    }


def status_lines(status: dict[str, Any]) -> list[str]:
    """The status for people."""
    lines = [f"store: {status['engine']}"]
    if not status["exists"]:
        lines.append(f"collection: {status['collection']!r} does not exist yet; `python -m ingest CATALOGUE` creates it")
        return lines
    lines.append(f"collection: {status['collection']!r}, {songs_text(status['songs'])}")
    encoders = status["encoders"]
    if encoders:
        lines.append(
            f"encoders: lyrics {encoders['text']} ({encoders['text_dim']} dims, long lyrics: {encoders['long_text']}), "
            f"cover {encoders['image']} ({encoders['image_dim']} dims), words {encoders['words']}"
        )
    if status["encoder_notice"]:
        lines.append(f"chosen: {status['encoder_notice']}")
    if status["older_format"]:
        lines.append("made by an older Songspace: copy it into a new store with `python -m search.store migrate --from PATH`")
    centring = status["centring"]
    lines.append("centred: " + (", ".join(
        f"{m} ({'final, ' if c['final'] else ''}from {c['songs']} songs)" for m, c in sorted(centring.items())
    ) or f"not yet (each modality is centred once {MIN_CENTRE_SONGS} songs have it)"))
    sources = ", ".join(f"{source} {count}" for source, count in status["sources"].items())
    lines.append(f"sources: {sources or 'none'}")
    return lines


def show_status(index: SongIndex, settings: Settings, args: argparse.Namespace) -> int:
    """Print the store's status."""
    status = store_status(index, settings)
    print(json.dumps(status, ensure_ascii=False, indent=2) if args.json else "\n".join(status_lines(status)))
    return OK


def delete_songs(index: SongIndex, settings: Settings, args: argparse.Namespace) -> int:
    """Delete what the arguments name once --yes confirms it; otherwise say what it would be."""
    if not index.exists():
        raise CommandError(f"collection {settings.collection!r} does not exist in the {settings.store_label}: nothing to delete", STORE)
    act: Callable[[], object]
    listed: list[SongPoint] = []
    if args.all:
        what = f"collection {settings.collection!r} and its {songs_text(index.count())}"
        act = index.drop
    elif args.source:
        where = Filters(sources=(args.source,)).to_filter()
        count = index.count(where)
        if count == 0:
            print(f"nothing to delete: no song in collection {settings.collection!r} is from source {args.source!r}", file=sys.stderr)
            return OK
        what = f"{songs_text(count)} from source {args.source!r}"
        act = partial(index.delete_where, where)
    else:
        found = {ident: songs_by_id(index, ident) for ident in dict.fromkeys(args.ids)}
        missing = [ident for ident, songs in found.items() if not songs]
        if missing:
            raise CommandError(
                f"no song with id {', '.join(map(repr, missing))} in collection {settings.collection!r}; nothing "
                "was deleted. `python -m search.store find TITLE` shows ids",
                NOT_FOUND,
            )
        listed = list({p.point_id: p for songs in found.values() for p in songs}.values())
        what = songs_text(len(listed))
        act = partial(index.delete, [p.point_id for p in listed])
    if listed:
        print(format_table(SONG_HEADER, song_rows([(p.point_id, p.payload) for p in listed])))
    if not args.yes:
        raise CommandError(f"nothing was deleted: add --yes to delete {what}", USAGE)
    act()
    print(f"deleted {what}")
    return OK


def run_store(args: argparse.Namespace) -> int:
    """Run one parsed command line against the collection; returns the exit status."""
    settings = with_collection(load_settings(), args.collection)
    index = open_index(settings)
    try:
        if args.command == "status":
            return show_status(index, settings, args)
        if args.command == "delete":
            return delete_songs(index, settings, args)
        if args.command == "migrate":
            return migrate_collection(index, settings, args)
        if args.command == "optimize":
            if not index.exists():
                raise CommandError(f"collection {settings.collection!r} does not exist in the {settings.store_label}: nothing to optimize", STORE)
            return optimize_store(index)
        if index.count() == 0:
            raise CommandError(empty_collection(settings), STORE)
        return (list_songs if args.command == "list" else find_songs)(index, args)
    finally:
        index.close()


def main(argv: list[str] | None = None) -> int:
    """Run a store command; returns the exit status."""
    return run_command(lambda: run_store(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
