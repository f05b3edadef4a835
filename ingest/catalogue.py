"""Reading catalogues (CSV, Parquet, JSON lines) into clean song records, and reporting bad rows."""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

# Catalogue column names we recognise, by the song field they fill (first match wins).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "song_id": ("id", "song_id", "track_id"),
    "title": ("title", "name", "song", "track_name"),
    "artists": ("artists", "artist", "artist_name"),
    "album": ("album", "album_name"),
    "lyrics": ("lyrics", "text"),
    "cover": (
        "cover_url",
        "cover_path",
        "cover",
        "album_cover",
        "album_cover_url",
        "album_image",
        "image_url",
        "image",
    ),
    "genre": ("genre", "category"),
    "year": ("year", "release_year", "release_date"),
    "spotify_id": ("spotify_id",),
    "spotify_url": ("spotify_url",),
    "credit": ("credit", "credits"),
    "cover_generated": ("cover_generated",),
}
MIN_LYRICS_CHARS = 20


class CatalogueError(Exception):
    """The catalogue file cannot be read at all (a fatal error for ingestion)."""


@dataclass
class Song:
    """One catalogue row, cleaned: what ingestion embeds and stores."""

    row: int
    title: str
    artists: list[str]
    song_id: str | None = None
    album: str | None = None
    year: int | None = None
    genre: str | None = None
    lyrics: str | None = None
    cover: str | None = None
    spotify_id: str | None = None
    spotify_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RowProblem:
    """A row that was rejected, or kept with something missing, and why."""

    row: int
    song_id: str | None
    title: str | None
    outcome: str  # "rejected" or "kept"
    reason: str


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def parse_artists(value: Any) -> list[str]:
    """Artists from a list, a stringified Python list (the prototype's shape), or `;`-separated text."""
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        items = list(value.tolist() if hasattr(value, "tolist") else value)
    else:
        text = _text(value)
        if text is None:
            return []
        if text.startswith("["):
            try:
                parsed = ast.literal_eval(text)
                items = list(parsed) if isinstance(parsed, (list, tuple)) else [text]
            except (ValueError, SyntaxError):
                items = [text.strip("[]")]
        else:
            items = text.split(";")
    return [a for a in (_text(item) for item in items) if a]


def parse_year(value: Any) -> int | None:
    """A plausible year from a number or a date string, else None."""
    text = _text(value)
    if text is None:
        return None
    match = re.match(r"\s*(\d{4})", text)
    if not match:
        return None
    year = int(match[1])
    return year if 1000 <= year <= 2100 else None


def read_table(path: Path) -> pd.DataFrame:
    """Load a CSV, Parquet or JSON-lines file with pandas; unreadable files raise CatalogueError."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".jsonl", ".ndjson", ".json"):
            return pd.read_json(path, lines=True, dtype=False)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise CatalogueError(f"cannot read catalogue {path}: {error}") from error
    raise CatalogueError(f"catalogue {path} is not CSV, Parquet or JSON lines (by its suffix)")


def map_columns(columns: list[str], rename: dict[str, str] | None = None) -> dict[str, str]:
    """Which catalogue column fills each song field; `rename` maps catalogue column -> field."""
    lowered = {c.strip().lower(): c for c in columns}
    mapping: dict[str, str] = {}
    for source, target in (rename or {}).items():
        if source not in columns:
            raise CatalogueError(f"--rename names column {source!r}, which the catalogue lacks")
        if target not in COLUMN_ALIASES:
            raise CatalogueError(f"--rename target {target!r} is not one of {sorted(COLUMN_ALIASES)}")
        mapping[target] = source
    for target, aliases in COLUMN_ALIASES.items():
        if target not in mapping:
            found = next((lowered[a] for a in aliases if a in lowered), None)
            if found is not None:
                mapping[target] = found
    if "title" not in mapping:
        raise CatalogueError(f"catalogue has no title column (looked for {COLUMN_ALIASES['title']})")
    return mapping


def read_catalogue(
    path: Path, rename: dict[str, str] | None = None, limit: int | None = None
) -> tuple[list[Song], list[RowProblem]]:
    """Read and validate a catalogue. Rows are numbered from 1 as in a spreadsheet's data rows."""
    frame = read_table(path)
    mapping = map_columns(list(frame.columns), rename)
    if limit is not None:
        frame = frame.head(limit)
    songs: list[Song] = []
    problems: list[RowProblem] = []
    seen_ids: dict[str, int] = {}
    for row_number, record in enumerate(frame.to_dict("records"), start=1):
        values = {field_: record.get(column) for field_, column in mapping.items()}
        title = _text(values.get("title"))
        song_id = _text(values.get("song_id"))
        if title is None:
            problems.append(RowProblem(row_number, song_id, None, "rejected", "no title"))
            continue
        if song_id is not None and song_id in seen_ids:
            problems.append(
                RowProblem(
                    row_number, song_id, title, "rejected", f"duplicate id of row {seen_ids[song_id]}"
                )
            )
            continue
        if song_id is not None:
            seen_ids[song_id] = row_number
        lyrics = _text(values.get("lyrics"))
        if lyrics is not None and len(lyrics) < MIN_LYRICS_CHARS:
            problems.append(
                RowProblem(row_number, song_id, title, "kept", f"lyrics too short ({len(lyrics)} chars)")
            )
            lyrics = None
        extra: dict[str, Any] = {}
        if _text(values.get("credit")):
            extra["credit"] = _text(values.get("credit"))
        if (_text(values.get("cover_generated")) or "").lower() in ("true", "1", "yes"):
            extra["cover_generated"] = True
        songs.append(
            Song(
                row=row_number,
                title=title,
                artists=parse_artists(values.get("artists")),
                song_id=song_id,
                album=_text(values.get("album")),
                year=parse_year(values.get("year")),
                genre=_text(values.get("genre")),
                lyrics=lyrics,
                cover=_text(values.get("cover")),
                spotify_id=_text(values.get("spotify_id")),
                spotify_url=_text(values.get("spotify_url")),
                extra=extra,
            )
        )
    return songs, problems
