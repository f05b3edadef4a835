"""Reading catalogues (CSV, Parquet, JSON lines) into clean song records, and reporting bad rows.

A catalogue is read row by row, so that one bad row costs only that row: a line with too many or too
few fields, a broken JSON line, bytes that are not UTF-8 or a value that makes no sense is reported
(with its row number and, for text files, its line) and every other row is read as it is.
"""

from __future__ import annotations

import ast
import codecs
import csv
import datetime
import inspect
import json
import math
import re
from collections.abc import Generator, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

# Catalogue column names we recognise, by the song field they fill (the first name found wins).
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
# Except for covers: every recognised cover column names an image, so a row's cover is its first
# non-empty one, left to right. Other fields read one name only (a `text` column next to `lyrics`
# may hold something else entirely).
FIRST_NON_EMPTY_FIELDS = ("cover",)
MIN_LYRICS_CHARS = 20
MIN_YEAR = 1000
CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson", ".json")
# Long lyrics exceed the csv module's default field limit (128 KiB); a field only costs memory.
CSV_FIELD_LIMIT = 2**31 - 1
# Bytes that are not UTF-8 are read as Windows-1252 (what spreadsheets on Windows write); only
# those bytes, so that UTF-8 text on the same line stays as it is.
LEGACY_ENCODING = "cp1252"
_FALLBACK_ERRORS = "songspace-cp1252"
_INTEGRAL_ID = re.compile(r"(-?\d+)\.0+")  # `1.0`: an integer id that went through a spreadsheet
_YEAR = re.compile(r"(\d{4})(?:\.0+)?")
_DATE = re.compile(r"(\d{4})[-/](\d{1,2})(?:[-/](\d{1,2}))?(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?Z?)?")
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"")
_PLAIN_STRING = r"(?:'[^'\\\n]*'|\"[^\"\\\n]*\")"
_SIMPLE_LIST = re.compile(rf"\[\s*(?:{_PLAIN_STRING}\s*(?:,\s*{_PLAIN_STRING}\s*)*,?\s*)?\]")


def _decode_as_legacy(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return error.object[error.start : error.end].decode(LEGACY_ENCODING, "replace"), error.end


codecs.register_error(_FALLBACK_ERRORS, _decode_as_legacy)


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


@dataclass
class _Record:
    """One data row as it came out of the file, before its values are checked."""

    row: int
    values: Sequence[Any]  # by column position
    problem: str | None = None  # why the row could not be read at all (it is rejected)
    notes: list[str] = field(default_factory=list)  # what was repaired while reading it


Table = tuple[list[str], Iterator[_Record]]  # a catalogue's column names, and its data rows


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        text = value.strip()
        return text or None
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        if float(value).is_integer():
            # Integer columns with gaps arrive as floats (Parquet, JSON): 7.0 means 7.
            return str(int(value))
    return str(value).strip() or None


def _is_empty(value: Any) -> bool:
    if isinstance(value, (list, tuple, np.ndarray)):
        return len(value) == 0
    return _text(value) is None


def parse_song_id(value: Any) -> str | None:
    """A catalogue id as text; `1.0` (an integer id after a spreadsheet) reads as `1`."""
    text = _text(value)
    if text is None:
        return None
    match = _INTEGRAL_ID.fullmatch(text)
    return match[1] if match else text


def _quoted_strings(text: str) -> list[str]:
    return [single or double for single, double in _QUOTED.findall(text)]


def _list_literal(text: str) -> list[Any] | None:
    """The items of a Python list literal, or None if `text` is not one."""
    if _SIMPLE_LIST.fullmatch(text):  # the usual shape, at a tenth of ast's cost
        return _quoted_strings(text)
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return list(parsed) if isinstance(parsed, (list, tuple)) else None


def parse_artists(value: Any) -> tuple[list[str], str | None]:
    """Artists from a list, a stringified Python list (the prototype's shape), or `;`-separated text,
    and a note when the text looked like a list but was not one (its quoted names are used)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
    else:
        text = _text(value)
        if text is None:
            return [], None
        if not text.startswith("["):
            items = text.split(";")
        elif (listed := _list_literal(text)) is not None:
            items = listed
        else:
            artists = [a for a in (_text(item) for item in _quoted_strings(text) or [text.strip("[]")]) if a]
            return artists, f"artists {_shorten(text)} is not a valid list; read as {'; '.join(artists) or 'none'}"
    names = (_text(item) for item in items if isinstance(item, (str, int, float, np.integer, np.floating)))
    return [name for name in names if name], None


def parse_year(value: Any) -> int | None:
    """The year of a number, a year text or a valid date (`1987`, `1987-05`, `1987-05-01T10:00`),
    if it lies between MIN_YEAR and next year; else None."""
    if isinstance(value, datetime.date):  # dates, datetimes and pandas' Timestamps
        year = value.year
    elif isinstance(value, (bool, np.bool_)):
        return None
    elif isinstance(value, (int, np.integer)):
        year = int(value)
    else:
        text = _text(value)
        if text is None:
            return None
        year_match, date_match = _YEAR.fullmatch(text), _DATE.fullmatch(text)
        if year_match:
            year = int(year_match[1])
        elif date_match:
            year, month, day = int(date_match[1]), int(date_match[2]), int(date_match[3] or 1)
            try:
                datetime.date(year, month, day)
            except ValueError:
                return None
        else:
            return None
    return year if MIN_YEAR <= year <= datetime.date.today().year + 1 else None


def _shorten(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _span(first: int, last: int) -> str:
    return f"line {first}" if first == last else f"lines {first}-{last}"


def _skip_bom(handle: BinaryIO, path: Path) -> None:
    """Start after a UTF-8 byte-order mark; refuse UTF-16, which cannot be read line by line."""
    start = handle.read(3)
    if start[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        raise CatalogueError(f"cannot read catalogue {path}: it is UTF-16; save it as UTF-8")
    handle.seek(len(codecs.BOM_UTF8) if start == codecs.BOM_UTF8 else 0)


def _decoded(handle: BinaryIO, repairs: list[str]) -> Generator[str, None, None]:
    """A file's physical lines as text: UTF-8, any bytes that are not UTF-8 read as Windows-1252, NUL
    bytes removed (the csv module refuses them); each repair is noted in `repairs`."""
    for raw in handle:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", _FALLBACK_ERRORS)
            repairs.append("bytes that are not UTF-8 read as Windows-1252")
        if "\x00" in text:
            text = text.replace("\x00", "")
            repairs.append("NUL bytes removed")
        yield text


def _blank(fields: list[str]) -> bool:
    """Whether the csv module's fields are those of a blank line (or one of spaces)."""
    return not fields or (len(fields) == 1 and not fields[0].strip())


@contextmanager
def _csv_table(path: Path) -> Iterator[Table]:
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    with path.open("rb") as handle:
        _skip_bom(handle, path)
        repairs: list[str] = []
        lines = _decoded(handle, repairs)
        reader = csv.reader(lines)
        header: list[str] = []
        try:
            while _blank(header):  # blank lines before the header are skipped
                header = next(reader)
        except StopIteration:
            raise CatalogueError(f"cannot read catalogue {path}: it is empty (no header line)") from None
        except csv.Error as error:
            raise CatalogueError(f"cannot read catalogue {path}: its header is not CSV ({error})") from error
        if inspect.getgeneratorstate(lines) == inspect.GEN_CLOSED:
            raise CatalogueError(f"cannot read catalogue {path}: its header opens a quoted field that is never closed")
        repairs.clear()
        names = [name.strip() for name in header]
        yield names, _csv_records(handle, lines, reader, repairs, names)


def _csv_records(
    handle: BinaryIO,
    lines: Generator[str, None, None],
    reader: Any,  # the csv module's reader, which has no public type
    repairs: list[str],
    header: list[str],
) -> Iterator[_Record]:
    """Data rows, numbered from 1 (blank lines are not rows); a line whose field count is not the
    header's is a row that could not be read, never a row read with its values shifted. Empty
    fields past the header's end, and missing ones under unnamed last columns, change nothing."""
    width = len(header)
    named = max((i + 1 for i, name in enumerate(header) if name), default=0)
    before = 0  # the lines read before `reader` began
    row = 0
    while True:
        first = before + reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            row += 1
            repairs.clear()
            yield _Record(row, (), f"{_span(first, before + reader.line_num)}: not readable as CSV ({error})")
            continue
        span = _span(first, before + reader.line_num)
        notes = [f"{span}: {repair}" for repair in dict.fromkeys(repairs)]
        repairs.clear()
        if _blank(fields):
            continue
        row += 1
        if inspect.getgeneratorstate(lines) == inspect.GEN_CLOSED:
            # Only a quoted field still open at the end of the file makes the csv module read past
            # the last line: that quote swallowed every line after it, so read them again.
            handle.seek(0)
            for _ in range(first):
                handle.readline()
            before, lines = first, _decoded(handle, repairs)
            reader = csv.reader(lines)
            yield _Record(row, (), f"line {first}: a quoted field opens here and is never closed")
            continue
        if len(fields) < named or any(f.strip() for f in fields[width:]):
            count = f"{len(fields)} field" + ("s" if len(fields) != 1 else "")
            yield _Record(row, (), f"{span}: {count} where the header has {width}")
            continue
        yield _Record(row, fields + [""] * (width - len(fields)), notes=notes)


@contextmanager
def _json_lines_table(path: Path) -> Iterator[Table]:
    with path.open("rb") as handle:
        _skip_bom(handle, path)
        repairs: list[str] = []
        objects: list[tuple[int, dict[str, Any] | None, str | None, list[str]]] = []
        columns: dict[str, None] = {}  # every key, in the order first seen
        for number, text in enumerate(_decoded(handle, repairs), start=1):
            notes = [f"line {number}: {repair}" for repair in repairs]
            repairs.clear()
            if not text.strip():
                continue
            if not objects and text.lstrip().startswith("["):
                raise CatalogueError(f"cannot read catalogue {path}: it holds a JSON array; write one JSON object per line")
            value: dict[str, Any] | None = None
            problem: str | None = None
            try:
                parsed = json.loads(text.rstrip("\r\n"))  # so that error columns stay on this line
            except json.JSONDecodeError as error:
                problem = f"line {number}: not valid JSON ({error.msg} at column {error.colno})"
            except RecursionError:
                problem = f"line {number}: JSON nested too deeply"
            else:
                if isinstance(parsed, dict):
                    value = parsed
                    columns.update(dict.fromkeys(value))
                else:
                    problem = f"line {number}: a JSON {type(parsed).__name__}, not an object"
            objects.append((len(objects) + 1, value, problem, notes))
    names = list(columns)
    yield names, (
        _Record(row, [value.get(name) for name in names] if value is not None else (), problem, notes)
        for row, value, problem, notes in objects
    )


@contextmanager
def _parquet_table(path: Path) -> Iterator[Table]:
    try:
        frame = pd.read_parquet(path)
    except ValueError as error:  # pyarrow's ArrowInvalid; its I/O errors are OSErrors
        raise CatalogueError(f"cannot read catalogue {path}: {error}") from error
    rows = frame.itertuples(index=False, name=None)
    yield [str(c).strip() for c in frame.columns], (_Record(i, values) for i, values in enumerate(rows, start=1))


def _open_table(path: Path) -> AbstractContextManager[Table]:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return _csv_table(path)
    if suffix in PARQUET_SUFFIXES:
        return _parquet_table(path)
    if suffix in JSON_LINES_SUFFIXES:
        return _json_lines_table(path)
    raise CatalogueError(f"catalogue {path} is not CSV, Parquet or JSON lines (by its suffix)")


def map_columns(columns: list[str], rename: dict[str, str] | None = None) -> dict[str, tuple[int, ...]]:
    """The positions of the catalogue columns that fill each song field, left to right; a row's value
    is the first non-empty one. `rename` maps catalogue column -> field. Columns that share a name
    are read as one."""
    lowered = [c.strip().lower() for c in columns]
    mapping: dict[str, tuple[int, ...]] = {}
    for source, target in (rename or {}).items():
        if source not in columns:
            raise CatalogueError(f"--rename names column {source!r}, which the catalogue lacks")
        if target not in COLUMN_ALIASES:
            raise CatalogueError(f"--rename target {target!r} is not one of {sorted(COLUMN_ALIASES)}")
        mapping[target] = tuple(i for i, c in enumerate(columns) if c == source)
    for target, aliases in COLUMN_ALIASES.items():
        if target in mapping:
            continue
        present = [a for a in aliases if a in lowered]
        read = set(present if target in FIRST_NON_EMPTY_FIELDS else present[:1])
        positions = tuple(i for i, name in enumerate(lowered) if name in read)
        if positions:
            mapping[target] = positions
    if "title" not in mapping:
        raise CatalogueError(f"catalogue has no title column (looked for {COLUMN_ALIASES['title']})")
    return mapping


def _value(values: Sequence[Any], positions: tuple[int, ...]) -> Any:
    if len(positions) == 1:  # the usual case: no need to look for an empty value
        return values[positions[0]]
    for position in positions:
        if not _is_empty(values[position]):
            return values[position]
    return None


def read_catalogue(
    path: Path, rename: dict[str, str] | None = None, limit: int | None = None
) -> tuple[list[Song], list[RowProblem]]:
    """Read and validate a catalogue. Rows are numbered from 1 as in a spreadsheet's data rows (a
    row that cannot be read keeps its number); reasons name the file's lines where they help."""
    songs: list[Song] = []
    problems: list[RowProblem] = []
    seen_ids: dict[str, int] = {}
    try:
        with _open_table(path) as (columns, records):
            mapping = map_columns(columns, rename)
            for record in records:
                if limit is not None and record.row > limit:
                    break
                if record.problem is not None:
                    problems.append(RowProblem(record.row, None, None, "rejected", record.problem))
                    continue
                song = _song(record, mapping, seen_ids, problems)
                if song is not None:
                    songs.append(song)
    except OSError as error:
        raise CatalogueError(f"cannot read catalogue {path}: {error}") from error
    return songs, problems


def _song(
    record: _Record, mapping: dict[str, tuple[int, ...]], seen_ids: dict[str, int], problems: list[RowProblem]
) -> Song | None:
    """A record's song, or None when it is rejected; what it loses on the way is reported."""
    values = {field_: _value(record.values, positions) for field_, positions in mapping.items()}
    text = {field_: _text(value) for field_, value in values.items()}
    row = record.row
    title = text.get("title")
    song_id = parse_song_id(text.get("song_id"))
    if title is None:
        problems.append(RowProblem(row, song_id, None, "rejected", "no title"))
        return None
    if song_id is not None and song_id in seen_ids:
        problems.append(RowProblem(row, song_id, title, "rejected", f"duplicate id of row {seen_ids[song_id]}"))
        return None
    if song_id is not None:
        seen_ids[song_id] = row
    notes = list(record.notes)
    lyrics = text.get("lyrics")
    if lyrics is not None and len(lyrics) < MIN_LYRICS_CHARS:
        notes.append(f"lyrics too short ({len(lyrics)} chars)")
        lyrics = None
    year = parse_year(values.get("year"))
    if year is None and text.get("year") is not None:
        notes.append(f"year {_shorten(text['year'])} is not a year from {MIN_YEAR} to next year or a valid date; left out")
    artists, artists_note = parse_artists(values.get("artists"))
    if artists_note:
        notes.append(artists_note)
    problems.extend(RowProblem(row, song_id, title, "kept", note) for note in notes)
    extra: dict[str, Any] = {}
    if text.get("credit"):
        extra["credit"] = text["credit"]
    if (text.get("cover_generated") or "").lower() in ("true", "1", "yes"):
        extra["cover_generated"] = True
    return Song(
        row=row,
        title=title,
        artists=artists,
        song_id=song_id,
        album=text.get("album"),
        year=year,
        genre=text.get("genre"),
        lyrics=lyrics,
        cover=text.get("cover"),
        spotify_id=text.get("spotify_id"),
        spotify_url=text.get("spotify_url"),
        extra=extra,
    )
