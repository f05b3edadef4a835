"""Recommendations as files to keep: CSV for spreadsheets, M3U8 for music players, and JSPF (XSPF as
JSON, https://xspf.org/jspf) for playlist services such as ListenBrainz. The format follows the
file name's extension.

Titles, artists and albums come from catalogues and Spotify, so each format escapes them its own
way: CSV quotes them (and defuses spreadsheet formulas), M3U8 keeps every entry on its lines
(line breaks in a title become spaces), JSON escapes them itself.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from search.recommend import Recommendation

DEFAULT_TITLE = "Songspace recommendations"
CSV_COLUMNS = (
    "rank", "title", "artists", "album", "year", "score", "lyrics_score", "words_score", "cover_score",
    "spotify_url", "song_id",
)
# Songs without a Spotify link are named by these URIs: the catalogue's song id, else the point id.
SONG_URI = "songspace:song:"
POINT_URI = "songspace:point:"
JSPF_EXTENSION = "urn:x-songspace:recommendation"  # XSPF extensions are keyed by a URI naming the application
_SPOTIFY_ID = re.compile(r"^[0-9A-Za-z]{22}$")
# Characters that end a line for some reader of M3U files, and other control characters.
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# A cell starting so is a formula to spreadsheet programs (CSV injection); a leading ' shows it as text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ExportError(ValueError):
    """The file name asks for a format Songspace cannot write."""


def spotify_url(result: Recommendation) -> str | None:
    """The song's open.spotify.com link, rebuilt from its Spotify id so that it is well formed."""
    spotify_id = str(result.payload.get("spotify_id") or "")
    return f"https://open.spotify.com/track/{spotify_id}" if _SPOTIFY_ID.match(spotify_id) else None


def song_uri(result: Recommendation) -> str:
    """A URI naming the song in Songspace: `songspace:song:<song id>`, else `songspace:point:<point id>`."""
    if result.song_id:
        return SONG_URI + quote(result.song_id, safe="")
    return POINT_URI + quote(result.point_id, safe="")


def _duration_ms(result: Recommendation) -> int | None:
    duration = result.payload.get("duration_ms")
    return int(duration) if isinstance(duration, (int, float)) and duration > 0 else None


def spreadsheet_text(text: Any) -> str:
    """Outside text for a CSV cell that spreadsheets must not run as a formula (a leading `'`)."""
    text = "" if text is None else str(text)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def to_csv(results: list[Recommendation]) -> str:
    """One row per song: rank, title, artists ("; "-joined), album, year, scores, Spotify link, song id."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180
    writer.writerow(CSV_COLUMNS)
    for rank, result in enumerate(results, start=1):
        writer.writerow([
            rank,
            spreadsheet_text(result.title),
            spreadsheet_text("; ".join(result.artists)),
            spreadsheet_text(result.payload.get("album")),
            result.payload.get("year") or "",
            _score(result.score),
            _score(result.lyrics_score),
            _score(result.words_score),
            _score(result.cover_score),
            spotify_url(result) or "",
            spreadsheet_text(result.song_id),
        ])
    return buffer.getvalue()


def _one_line(text: str) -> str:
    return " ".join(_LINE_BREAKING.sub(" ", text).split())


def to_m3u8(results: list[Recommendation], title: str = DEFAULT_TITLE) -> str:
    """An extended M3U playlist in UTF-8: `#EXTINF:<seconds or -1>,Artist - Title`, then the Spotify
    link, or the song's Songspace URI when it has none."""
    lines = ["#EXTM3U", f"#PLAYLIST:{_one_line(title)}"]
    for result in results:
        duration = _duration_ms(result)
        seconds = round(duration / 1000) if duration else -1
        label = _one_line(f"{', '.join(result.artists)} - {result.title}" if result.artists else result.title)
        lines += [f"#EXTINF:{seconds},{label}", spotify_url(result) or song_uri(result)]
    return "\n".join(lines) + "\n"


def to_jspf(results: list[Recommendation], title: str = DEFAULT_TITLE, created: datetime | None = None) -> str:
    """A JSPF playlist: XSPF's playlist and track fields, scores in a Songspace extension."""
    tracks = []
    for rank, result in enumerate(results, start=1):
        link = spotify_url(result)
        track: dict[str, Any] = {
            "title": result.title,
            "creator": ", ".join(result.artists),
            "identifier": [song_uri(result)] + ([link] if link else []),
        }
        if link:
            track["location"] = [link]
        if result.payload.get("album"):
            track["album"] = str(result.payload["album"])
        if _duration_ms(result):
            track["duration"] = _duration_ms(result)
        track["extension"] = {JSPF_EXTENSION: [{
            "rank": rank,
            "score": result.score,
            "lyrics_score": result.lyrics_score,
            "words_score": result.words_score,
            "cover_score": result.cover_score,
            "song_id": result.song_id,
            "point_id": result.point_id,
            "year": result.payload.get("year"),
        }]}
        tracks.append(track)
    date = (created or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    playlist = {"title": title, "creator": "Songspace", "date": date, "track": tracks}
    return json.dumps({"playlist": playlist}, ensure_ascii=False, indent=2) + "\n"


# Extension -> (MIME type, writer).
EXPORT_FORMATS: dict[str, tuple[str, Callable[[list[Recommendation], str], str]]] = {
    ".csv": ("text/csv", lambda results, title: to_csv(results)),  # a table has no title
    ".m3u8": ("audio/x-mpegurl", to_m3u8),
    ".jspf": ("application/jspf+json", to_jspf),
}


def export_format(filename: str | Path) -> tuple[str, Callable[[list[Recommendation], str], str]]:
    """The MIME type and writer for a file name, by its extension (case does not matter)."""
    suffix = Path(filename).suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise ExportError(f"cannot export to {str(filename)!r}: name a .csv, .m3u8 or .jspf file")
    return EXPORT_FORMATS[suffix]


def render_export(results: list[Recommendation], filename: str | Path, title: str = DEFAULT_TITLE) -> bytes:
    """The file's bytes (UTF-8) in the format its name asks for; for a download button."""
    _, write = export_format(filename)
    return write(results, title).encode("utf-8")


def write_export(results: list[Recommendation], path: Path, title: str = DEFAULT_TITLE) -> None:
    """Write the recommendations to `path`, in the format its extension names."""
    data = render_export(results, path, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
