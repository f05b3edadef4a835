"""`python -m search`: recommendations for a song in the collection, a Spotify track or a description.

The table (or, with --json, stdout's JSON list) holds the results only; what was fetched or added
is said on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

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
    resolve_genres,
    run_command,
    songs_by_id,
    unit_interval,
    with_collection,
    year_range,
)
from search.index import COVER, LYRICS, SongIndex
from search.recommend import Filters, Query, Recommendation, normalised_weights, recommend, seed_query
from search.settings import DEFAULT_LYRICS_WEIGHT, load_settings


def build_parser() -> CommandParser:
    """The command's arguments, each checked as it is parsed."""
    parser = CommandParser(
        prog="python -m search", description=__doc__, exit_codes=(OK, UNEXPECTED, USAGE, STORE, NOT_FOUND, INTERRUPTED)
    )
    seed = parser.add_mutually_exclusive_group(required=True)
    seed.add_argument("--song-id", type=non_empty, help="a song's id as tables show it: its catalogue id, else its point id")
    seed.add_argument("--text", type=non_empty, help="a description, matched against lyrics")
    seed.add_argument("--spotify", type=non_empty, help="a Spotify track id, URI or URL (fetched and added if new)")
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
    return parser


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
        limits.append("not by " + ", ".join(query.filters.exclude_artists))
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


def search(args: argparse.Namespace) -> int:
    """Answer one parsed command line; returns the exit status."""
    from ingest.context import open_songspace

    settings = with_collection(load_settings(), args.collection)
    songspace = open_songspace(settings, create=bool(args.spotify))
    try:
        index = songspace.index
        filters = Filters(genres=resolve_genres(index, args.genre), years=args.year)
        if args.text:
            query = songspace.text_query(args.text, filters)
            seed = f"lyrics that match {args.text!r}"
        else:
            if args.spotify:
                from ingest.spotify import SpotifyError
                from ingest.unseen import UnseenSongError, add_spotify_track

                try:
                    added = add_spotify_track(songspace, args.spotify)
                except (UnseenSongError, SpotifyError) as error:
                    raise CommandError(str(error), NOT_FOUND) from error
                print(added.message, file=sys.stderr)
                seeds = [added.point]
            else:
                seeds = songs_by_id(index, args.song_id)
                if not seeds:
                    raise CommandError(
                        f"no song with id {args.song_id!r} in collection {settings.collection!r}; "
                        "find ids with `python -m search.store find TITLE`",
                        NOT_FOUND,
                    )
            query = seed_query(seeds, exclude_seed_artists=args.exclude_artist, filters=filters)
            song = seeds[0]
            seed = f"{song.payload.get('title', '?')} — {', '.join(song.payload.get('artists', [])) or '?'} ({display_id(song.point_id, song.payload)})"
        results = recommend(index, query, args.lyrics_weight, args.k, args.diversity, words_weight=settings.words_weight)
        header = describe(seed, query, args.lyrics_weight, settings.words_weight)
        nothing = why_nothing(index, query.filters) if not results else None
    finally:
        songspace.close()
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
