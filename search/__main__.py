"""`python -m search`: recommendations for a catalogue song, a Spotify track or a description."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace

from search.recommend import Filters, Recommendation, recommend, seed_query
from search.settings import DEFAULT_LYRICS_WEIGHT, load_settings


def format_table(results: list[Recommendation]) -> str:
    """A readable table of recommendations."""
    def cell(value: float | None) -> str:
        return "   -  " if value is None else f"{value:6.3f}"

    lines = [f"{'#':>2}  {'score':>6}  {'lyrics':>6}  {'cover':>6}  title — artists"]
    for rank, r in enumerate(results, start=1):
        lines.append(
            f"{rank:>2}  {r.score:6.3f}  {cell(r.lyrics_score)}  {cell(r.cover_score)}  "
            f"{r.title} — {', '.join(r.artists) or '?'}"
        )
    return "\n".join(lines)


def parse_years(value: str | None) -> tuple[int, int] | None:
    """`1990` or `1990-1999` as an inclusive range."""
    if not value:
        return None
    low, _, high = value.partition("-")
    return int(low), int(high or low)


def main(argv: list[str] | None = None) -> int:
    """Run the search command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m search", description=__doc__)
    seed = parser.add_mutually_exclusive_group(required=True)
    seed.add_argument("--song-id", help="a catalogue song's id")
    seed.add_argument("--text", help="a description, matched against lyrics")
    seed.add_argument("--spotify", help="a Spotify track id, URI or URL (fetched and added if new)")
    parser.add_argument("--lyrics-weight", type=float, default=DEFAULT_LYRICS_WEIGHT, help="0 = cover only, 1 = lyrics only")
    parser.add_argument("-k", type=int, default=10, help="number of recommendations")
    parser.add_argument("--exclude-artist", action="store_true", help="leave out the seed's artists")
    parser.add_argument("--genre", action="append", default=[], help="only these genres")
    parser.add_argument("--year", help="only this year or range, e.g. 1990-1999")
    parser.add_argument("--diversity", type=float, default=0.0, help="MMR diversity, 0 to 1")
    parser.add_argument("--collection", help="collection name (default: QDRANT_COLLECTION)")
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    from ingest.context import EmptyCatalogue, open_songspace
    from ingest.encoders import EncoderUnavailable
    from search.index import SongIndexError

    settings = load_settings()
    if args.collection:
        settings = replace(settings, collection=args.collection)
    filters = Filters(genres=tuple(args.genre), years=parse_years(args.year))
    try:
        songspace = open_songspace(settings, create=bool(args.spotify))
    except (SongIndexError, EncoderUnavailable, EmptyCatalogue) as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    try:
        if args.text:
            query = songspace.text_query(args.text, filters)
        else:
            if args.spotify:
                from ingest.spotify import SpotifyError
                from ingest.unseen import UnseenSongError, add_spotify_track

                try:
                    added = add_spotify_track(songspace, args.spotify)
                except (UnseenSongError, SpotifyError) as error:
                    print(f"error: {error}", file=sys.stderr)
                    return 4
                print(added.message, file=sys.stderr)
                seeds = [added.point]
            else:
                seeds = songspace.index.find("song_id", args.song_id)
                if not seeds:
                    print(f"error: no song with id {args.song_id!r} in {settings.collection!r}", file=sys.stderr)
                    return 4
            query = seed_query(seeds, exclude_seed_artists=args.exclude_artist, filters=filters)
        results = recommend(
            songspace.index, query, args.lyrics_weight, args.k, args.diversity, words_weight=settings.words_weight
        )
    finally:
        songspace.close()
    if args.json:
        print(json.dumps([r.to_dict() for r in results], ensure_ascii=False, indent=2))
    else:
        print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
