"""`python -m search`: recommendations for a song in the collection, a Spotify track or a description.

The table (or, with --json, stdout's JSON list) holds the results only; what was fetched or added
is said on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
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
    format_table,
    non_empty,
    positive_int,
    printable,
    resolve_genres,
    run_command,
    songs_by_id,
    unit_interval,
    with_collection,
    year_range,
)
from search.index import COVER, LYRICS, SongIndex, SongPoint
from search.recommend import Filters, Query, Recommendation, normalised_weights, recommend, seed_query
from search.settings import DEFAULT_LYRICS_WEIGHT, load_settings


def build_parser() -> CommandParser:
    """The command's arguments, each checked as it is parsed."""
    parser = CommandParser(
        prog="python -m search", description=__doc__, exit_codes=(OK, UNEXPECTED, USAGE, STORE, NOT_FOUND, INTERRUPTED)
    )
    seed = parser.add_mutually_exclusive_group(required=True)
    seed.add_argument(
        "--song-id", type=non_empty, action="append",
        help="a liked song's id as tables show it (its catalogue id, else its point id); repeat for several",
    )
    seed.add_argument("--text", type=non_empty, help="a description, matched against lyrics")
    seed.add_argument("--spotify", type=spotify_track, help="a Spotify track id, URI or URL (fetched and added if new)")
    seed.add_argument(
        "--spotify-playlist", type=spotify_collection, metavar="URL",
        help="a Spotify playlist or album: its first PLAYLIST_MAX_TRACKS tracks (100 by default) are the liked "
        "songs (added if new)",
    )
    parser.add_argument(
        "--not-song-id", type=non_empty, action="append", default=[],
        help="a disliked song's id; repeatable (per modality the search uses the mean of the liked songs "
        "minus the mean of the disliked ones)",
    )
    parser.add_argument(
        "--lyrics-weight", type=unit_interval, default=DEFAULT_LYRICS_WEIGHT,
        help="the lyrics share of the score, 0 to 1; the rest is cover",
    )
    parser.add_argument("-k", type=positive_int, default=10, help="number of recommendations")
    parser.add_argument("--exclude-artist", action="store_true", help="leave out the seed's artists")
    parser.add_argument(
        "--genre", type=non_empty, action="append", default=[],
        help="only this genre, in any case; repeat for several (default: every genre)",
    )
    parser.add_argument("--year", type=year_range, help="only this year or range, e.g. 1990-1999 (default: every year)")
    parser.add_argument("--diversity", type=unit_interval, default=0.0, help="MMR diversity, 0 (exact order) to 1")
    parser.add_argument("--collection", type=non_empty, help="collection name (default: QDRANT_COLLECTION, else songs)")
    parser.add_argument("--json", action="store_true", help="print a JSON list; the header goes to stderr")
    parser.add_argument(
        "--export", type=export_path, metavar="FILE",
        help="also write the results as a playlist: .csv, .m3u8 or .jspf, by the file's extension",
    )
    return parser


def export_path(value: str) -> Path:
    """An argument type: a file whose extension names an export format, in an existing folder."""
    from search.export import ExportError, export_format

    path = Path(value)
    try:
        export_format(path)
    except ExportError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"no folder {path.parent} to write {path.name} in")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder: name a file to write")
    return path


def _spotify_reference(value: str, kind: str) -> str:
    """A Spotify reference checked for its form only (Spotify is asked later)."""
    from ingest.spotify import SpotifyError, parse_collection_ref, parse_track_id

    try:
        (parse_track_id if kind == "track" else parse_collection_ref)(non_empty(value))
    except SpotifyError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value.strip()


def spotify_track(value: str) -> str:
    """An argument type: a Spotify track id, URI or URL."""
    return _spotify_reference(value, "track")


def spotify_collection(value: str) -> str:
    """An argument type: a Spotify playlist or album URL or URI."""
    return _spotify_reference(value, "collection")


def named(songs: list[SongPoint]) -> str:
    """Songs for people: "A — X (id), B — Y (id)"."""
    return printable(", ".join(
        f"{p.payload.get('title', '?')} — {', '.join(p.payload.get('artists', [])) or '?'} ({display_id(p.point_id, p.payload)})"
        for p in songs
    ))


def songs_named(index: SongIndex, ids: list[str], collection: str) -> list[SongPoint]:
    """The songs behind table ids, or a not-found error naming the first missing one."""
    songs = []
    for song_id in ids:
        found = songs_by_id(index, song_id)
        if not found:
            raise CommandError(
                f"no song with id {song_id!r} in collection {collection!r}; find ids with `python -m search.store find TITLE`",
                NOT_FOUND,
            )
        songs.extend(found)
    return songs


def describe(seed: str, query: Query, lyrics_weight: float, words_weight: float) -> list[str]:
    """The header of a result list: the seed, the weights as used, any fallback, the filters."""
    weights = normalised_weights(query, lyrics_weight)
    lyrics, cover = weights.get(LYRICS, 0.0), weights.get(COVER, 0.0)
    words = f" (words {words_weight:g} of it)" if query.words and lyrics else ""
    lines = [f"seed: {seed}", f"weights: lyrics {lyrics:.2f}{words}, cover {cover:.2f}"]
    if COVER not in query.vectors:
        lines.append("no cover: ranked by lyrics only")
    elif LYRICS not in query.vectors:
        lines.append("no lyrics: ranked by cover only")
    limits = describe_filters(query.filters)
    if query.filters.exclude_artists:
        limits.append("not by " + printable(", ".join(query.filters.exclude_artists)))
    if limits:
        lines.append("only: " + "; ".join(limits))
    return lines


def why_nothing(index: SongIndex, filters: Filters) -> str:
    """Why a search returned no song: no song passes the filters, or only left-out songs do."""
    chosen = Filters(genres=filters.genres, years=filters.years)
    if index.count(chosen.to_filter()) == 0:
        return f"nothing matched: no song in collection {index.collection!r} has {' and '.join(describe_filters(chosen))}"
    return "nothing matched: every song that passes the filters is a seed or by the seed's artists"


def results_table(results: list[Recommendation]) -> str:
    """Ranked results with each part's similarity and the id that names the song in other commands."""
    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    rows = [
        [str(rank), cell(r.score), cell(r.lyrics_score), cell(r.words_score), cell(r.cover_score),
         display_id(r.point_id, r.payload), f"{r.title} — {', '.join(r.artists) or '?'}"]
        for rank, r in enumerate(results, start=1)
    ]
    return format_table(["#", "score", "lyrics", "words", "cover", "id", "title — artists"], rows, right=5)


def liked_songs(args: argparse.Namespace, songspace: Any, collection: str) -> list[SongPoint]:
    """The liked seeds: songs by id, or a Spotify track, playlist or album (added if new)."""
    if args.song_id:
        return songs_named(songspace.index, args.song_id, collection)
    from ingest.spotify import SpotifyClient, SpotifyError
    from ingest.unseen import UnseenSongError, add_spotify_collection, add_spotify_track

    try:
        if args.spotify:
            added = [add_spotify_track(songspace, args.spotify)]
        else:
            playlist = add_spotify_collection(
                songspace, args.spotify_playlist, SpotifyClient(songspace.settings),
                limit=songspace.settings.playlist_max_tracks,
            )
            print("\n".join(playlist.lines()), file=sys.stderr)
            added = playlist.songs
            if not added:
                raise CommandError(f"no track of {args.spotify_playlist} could be used", NOT_FOUND)
    except (SpotifyError, UnseenSongError) as error:
        raise CommandError(str(error), NOT_FOUND) from error
    for song in added:
        print(printable(f"{song.point.payload.get('title', '?')}: {song.message}"), file=sys.stderr)
    return [song.point for song in added]


def search(args: argparse.Namespace) -> int:
    """Answer one parsed command line; returns the exit status."""
    settings = with_collection(load_settings(), args.collection)
    if args.text and args.not_song_id:
        raise CommandError("--not-song-id goes with liked songs (--song-id, --spotify, --spotify-playlist), not --text")
    both = sorted(set(args.song_id or ()) & set(args.not_song_id or ()))
    if both:
        raise CommandError(f"{', '.join(map(repr, both))} is both liked (--song-id) and disliked (--not-song-id)")
    needs_spotify = "--spotify-playlist" if args.spotify_playlist else "--spotify" if args.spotify else None
    no_spotify = f"{needs_spotify} needs Spotify: set SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET (in the environment or .env)"
    if args.spotify_playlist and not settings.spotify_configured:
        raise CommandError(no_spotify)
    from ingest.context import EmptyCatalogue, open_songspace  # loads torch: only once the arguments are known good

    # A Spotify track may join the collection (made if need be); without Spotify only a stored one can be the seed.
    try:
        songspace = open_songspace(settings, create=bool(needs_spotify and settings.spotify_configured))
    except EmptyCatalogue:
        if needs_spotify:
            raise CommandError(no_spotify) from None
        raise
    try:
        index = songspace.index
        filters = Filters(genres=resolve_genres(index, args.genre), years=args.year)
        if args.text:
            query = songspace.text_query(args.text, filters)
            seed = f"lyrics that match {args.text!r}"
        else:
            liked = liked_songs(args, songspace, settings.collection)
            disliked = songs_named(index, args.not_song_id, settings.collection)
            try:
                query = seed_query(liked, disliked, exclude_seed_artists=args.exclude_artist, filters=filters)
            except ValueError as error:  # liked and disliked songs that cancel out: the user's choice, not a bug
                raise CommandError(str(error)) from None
            seed = named(liked) + (f"; not {named(disliked)}" if disliked else "")
        results = recommend(index, query, args.lyrics_weight, args.k, args.diversity, words_weight=settings.words_weight)
        header = describe(seed, query, args.lyrics_weight, settings.words_weight)
        nothing = why_nothing(index, query.filters) if not results else None
    finally:
        songspace.close()
    if args.export:
        from search.export import write_export

        try:
            write_export(results, args.export, title=f"Songspace: like {seed}")
        except OSError as error:
            raise CommandError(f"cannot write {args.export}: {error.strerror or error}") from error
        print(f"wrote {len(results)} songs to {args.export}", file=sys.stderr)
    if args.json:
        print("\n".join(header + [nothing] * (nothing is not None)), file=sys.stderr)
        print(json.dumps([r.to_dict() for r in results], ensure_ascii=False, indent=2))
    else:
        print("\n".join(header))
        print(nothing or results_table(results))
    return OK


def main(argv: list[str] | None = None) -> int:
    """Run the search command; returns the exit status."""
    return run_command(lambda: search(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
