"""What every command shares: one parser style, checked argument types, exit codes, and one way
to turn failures into a single `error: ...` line.

Every command checks its arguments and settings before it touches anything, so a mistake costs
nothing but the message. Usage mistakes exit 2; failures the user can act on exit with their own
code; anything unexpected exits 1 with a hint, and shows its traceback with SONGSPACE_DEBUG=1.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from search.index import SongIndex, SongPoint
from search.recommend import Filters
from search.settings import Settings, SettingsError

OK = 0
UNEXPECTED = 1
USAGE = 2
STORE = 3
NOT_FOUND = 4
INTERRUPTED = 130
BROKEN_PIPE = 141  # as a shell reports a command that SIGPIPE ended: its reader stopped reading (`| head`)
DEBUG_VARIABLE = "SONGSPACE_DEBUG"
EXIT_CODES = {
    OK: "done",
    UNEXPECTED: f"unexpected failure (a bug, or the machine); {DEBUG_VARIABLE}=1 shows the traceback",
    USAGE: "usage error: a bad argument or setting, or an unreadable input file",
    STORE: "the store cannot be opened, the collection holds no songs, or an encoder cannot be loaded",
    NOT_FOUND: "a song asked for is not in the collection, or a Spotify track cannot be had",
    INTERRUPTED: "interrupted (Ctrl-C)",
}
_YEARS = re.compile(r"^(\d{4})(?:-(\d{4}))?$")
# Line breaks and control characters, ESC among them: in outside text they would break a table's rows
# or reach the terminal as escape sequences (a catalogue's title could clear the screen or retitle it).
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


class CommandError(Exception):
    """A failure the user can act on: printed as one `error: ...` line, exiting with `status`."""

    def __init__(self, message: str, status: int = USAGE) -> None:
        super().__init__(message)
        self.status = status


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's lines and shows each option's default (where there is one to show)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # Flags are off and optional values absent unless given; their help says what that means.
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose mistakes are CommandErrors (one line, exit 2) and whose help shows
    the defaults and the exit codes."""

    def __init__(self, *args: Any, exit_codes: Iterable[int] = (), **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        if exit_codes:
            kwargs["epilog"] = "exit codes:\n" + "\n".join(f"  {code:>3}  {EXIT_CODES[code]}" for code in exit_codes)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Report a usage mistake as one line (argparse would print the usage text too)."""
        raise CommandError(f"{message} (`{self.prog} --help` lists the options)")


def unit_interval(value: str) -> float:
    """An argument type: a number from 0 to 1."""
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0.0 <= number <= 1.0:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {value!r}")
    return number


def positive_int(value: str) -> int:
    """An argument type: a whole number of at least 1."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return number


def non_empty(value: str) -> str:
    """An argument type: text that is not blank (stripped)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("expected some text, got nothing")
    return value.strip()


def year_range(value: str) -> tuple[int, int]:
    """An argument type: `1990` or `1990-1999`, as an inclusive range."""
    match = _YEARS.match(value.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a year YYYY or a range YYYY-YYYY, got {value!r}")
    low, high = int(match[1]), int(match[2] or match[1])
    if low > high:
        raise argparse.ArgumentTypeError(f"{value!r} ends before it starts: write the earlier year first")
    return low, high


def catalogue_file(value: str) -> Path:
    """An argument type: a catalogue file that exists (its content is checked when it is read)."""
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no catalogue file at {value} (give a CSV, Parquet or JSON-lines file)")
    return path


def printable(text: object) -> str:
    """Outside text (a title, an artist) for one line of a terminal: line breaks and control characters
    become a space."""
    return _UNPRINTABLE.sub(" ", str(text))


def fail(message: str, status: int) -> int:
    """Print one `error: ...` line on stderr and return `status`."""
    print("error: " + " ".join(printable(message).split()), file=sys.stderr)
    return status


def run_command(command: Callable[[], int]) -> int:
    """Run a command's body and return its exit status, turning every failure into one line."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # notices go to stderr
    try:
        return command()
    except CommandError as error:
        return fail(str(error), error.status)
    except SettingsError as error:
        return fail(f"{error}; fix it in the environment or in .env", USAGE)
    except KeyboardInterrupt:
        return fail("interrupted", INTERRUPTED)
    except BrokenPipeError:
        # Not a failure: whoever read the output has what they wanted. Python's last flush of stdout
        # would complain again, so stdout now goes nowhere.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # a stdout without a file descriptor (a test's capture)
            pass
        return BROKEN_PIPE
    except Exception as error:
        status = known_failure(error)
        if status is not None:
            return fail(str(error), status)
        # Read here, not from the settings: it must work when the settings themselves fail.
        if os.environ.get(DEBUG_VARIABLE, "").strip() not in ("", "0"):
            raise
        return fail(
            f"unexpected {type(error).__name__}: {error}. Run the command again with {DEBUG_VARIABLE}=1 "
            "to see where it happened, and report that output",
            UNEXPECTED,
        )


def known_failure(error: Exception) -> int | None:
    """The exit status of a failure whose message tells the user what to do; None if unexpected."""
    # Imported only now: these modules load torch, which a mistyped argument should not wait for.
    from ingest.catalogue import CatalogueError
    from ingest.context import EmptyCatalogue
    from ingest.encoders import EncoderUnavailable
    from search.index import SongIndexError

    statuses = {CatalogueError: USAGE, SongIndexError: STORE, EncoderUnavailable: STORE, EmptyCatalogue: STORE}
    return next((status for kind, status in statuses.items() if isinstance(error, kind)), None)


def resolve_genres(index: SongIndex, wanted: Iterable[str]) -> tuple[str, ...]:
    """The stored genres the user means, matched case-insensitively; an unknown one is a usage
    error that lists the known genres."""
    known = {str(value).casefold(): str(value) for value, _ in index.facet("genre")}
    resolved = []
    for genre in wanted:
        if genre.casefold() not in known:
            listed = ", ".join(sorted(known.values(), key=str.casefold)) or "none: no song has a genre"
            raise CommandError(f"no genre {genre!r} in collection {index.collection!r}; known genres: {listed}")
        resolved.append(known[genre.casefold()])
    return tuple(resolved)


def songs_by_id(index: SongIndex, song_id: str) -> list[SongPoint]:
    """The songs a table's id names: a catalogue id (song_id), else a point id."""
    found = index.find("song_id", song_id)
    if found:
        return found
    try:
        point_id = str(uuid.UUID(song_id))
    except ValueError:  # not a point id either
        return []
    return index.get([point_id])


def display_id(point_id: str, payload: dict[str, Any]) -> str:
    """The id tables show for a song: its catalogue id, else its point id (both are accepted back)."""
    return str(payload.get("song_id") or point_id)


def describe_filters(filters: Filters) -> list[str]:
    """The genre, year and source filters, for people ("genre Easter", "years 1990-1999")."""
    parts = []
    if filters.genres:
        parts.append("genre " + " or ".join(filters.genres))
    if filters.years:
        low, high = filters.years
        parts.append(f"year {low}" if low == high else f"years {low}-{high}")
    if filters.sources:
        parts.append("source " + " or ".join(filters.sources))
    return parts


def empty_collection(settings: Settings) -> str:
    """What to say about a collection that is missing or holds no songs."""
    return (
        f"collection {settings.collection!r} in the {settings.store_label} is empty: load a catalogue "
        "with `python -m ingest CATALOGUE` (for example data/sample/hymns.csv)"
    )


def with_collection(settings: Settings, collection: str | None) -> Settings:
    """The settings, on another collection when one is given."""
    return replace(settings, collection=collection) if collection else settings


def format_table(header: list[str], rows: list[list[str]], right: int = 0) -> str:
    """Rows as aligned columns, each cell on its line; the first `right` columns align right, the
    last one is not padded."""
    header, rows = [printable(cell) for cell in header], [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        padded = [
            cell.rjust(width) if i < right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells[:-1], widths))
        ]
        return "  ".join([*padded, cells[-1]])

    return "\n".join(line(cells) for cells in [header, *rows])
