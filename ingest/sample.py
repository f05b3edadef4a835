"""`python -m ingest.sample`: build the shipped sample catalogue from the Open Hymnal's public-domain texts.

The same words under another tune are kept once. Each hymn keeps its title, author (as the artist), year (from the words credit), category (as the
genre), cleaned lyrics and original credit lines. Hymns have no album art, so each gets an original
cover drawn here: the palette and motif come from the category, the details from the title, so
songs of a kind look related but not identical. The output is deterministic.
"""

from __future__ import annotations

import argparse
import colorsys
import hashlib
import json
import math
import random
import re
import sys
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from search.cli import INTERRUPTED, OK, UNEXPECTED, USAGE, CommandError, CommandParser, run_command
from search.index import normalise_text
from search.settings import PROJECT_ROOT

SAMPLE_DIR = PROJECT_ROOT / "data" / "sample"
DEFAULT_SOURCE = PROJECT_ROOT.parent / "shared" / "data" / "public-domain" / "openhymnal.json"
SOURCE_HELP = (
    "it is a JSON list of hymns (title, author, category, credits, source_file, lyrics) taken from the "
    "public-domain texts of https://github.com/mzealey/openhymnal"
)
COVER_SIZE = 320
MOTIFS = ("circles", "rays", "waves", "stripes", "diamonds", "stars", "arches", "grid")


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def slug(text: str) -> str:
    """A file-name-safe id."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def artist_names(author: str) -> list[str]:
    """'Luther, Martin (1483-1546);Other' -> ['Martin Luther', 'Other']: life dates dropped."""
    names = []
    for part in (author or "").split(";"):
        part = re.sub(r"\([^)]*\)", "", part).strip()
        if "," in part:
            last, first = (p.strip() for p in part.split(",", 1))
            part = f"{first} {last}"
        if part:
            names.append(part[0].upper() + part[1:])
    return names or ["Unknown"]


def words_year(credits: list[str]) -> int | None:
    """The year the words were written, from the 'Words:' credit line, where one is given."""
    words = next((line for line in credits if line.startswith("Words:")), "")
    words = re.sub(r"\([^)]*\)", "", words)  # life dates are not the year of the text
    match = re.search(r"\b(1[0-9]{3}|20[0-9]{2})\b", words)
    return int(match[1]) if match else None


def clean_hymn_lyrics(text: str) -> str:
    """Remove ABC notation leftovers (backslashes, underscores, backticks) and verse numbers."""
    text = re.sub(r"\\-?\s*", "-", text.replace("\\-", "-")) if "\\" in text else text
    text = text.replace("_", "").replace("`", "'")
    text = re.sub(r"(?m)^[ \t]*\d+\.[ \t]*", "", text)
    text = re.sub(r"-\s+(?=[a-z])", "-", text)
    return "\n\n".join(" ".join(line.split()) for line in text.split("\n\n")).strip()


def _colour(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_cover(title: str, genre: str, size: int = COVER_SIZE) -> Image.Image:
    """An original cover: palette and motif from the genre, placement and tint from the title."""
    genre_key, title_key = _digest(genre), _digest(f"{genre}|{title}")
    rng = random.Random(title_key)
    hue = (genre_key % 360) / 360
    hue += rng.uniform(-0.04, 0.04)
    motif = MOTIFS[(genre_key >> 12) % len(MOTIFS)]
    dark, light = _colour(hue, 0.75, 0.25), _colour(hue + 0.05, 0.45, 0.85)
    accent = _colour(hue + 0.5 + rng.uniform(-0.06, 0.06), 0.7, 0.95)
    image = Image.new("RGB", (size, size), dark)
    draw = ImageDraw.Draw(image)
    for y in range(size):  # vertical gradient
        t = y / size
        draw.line([(0, y), (size, y)], fill=tuple(int(d + (l - d) * t * 0.6) for d, l in zip(dark, light)))
    cx, cy = rng.uniform(0.3, 0.7) * size, rng.uniform(0.25, 0.6) * size
    count = rng.randint(4, 9)
    if motif == "circles":
        for i in range(count, 0, -1):
            r = i * size / (2.2 * count)
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=accent if i % 2 else light, width=4)
    elif motif == "rays":
        for i in range(count * 3):
            angle = 2 * math.pi * i / (count * 3) + rng.uniform(0, 0.1)
            draw.line([(cx, cy), (cx + size * math.cos(angle), cy + size * math.sin(angle))], fill=accent, width=3)
        draw.ellipse((cx - 28, cy - 28, cx + 28, cy + 28), fill=light)
    elif motif == "waves":
        for i in range(count):
            y0 = size * (0.2 + 0.7 * i / count)
            points = [(x, y0 + 12 * math.sin(x / 25 + i + rng.random())) for x in range(0, size + 8, 8)]
            draw.line(points, fill=accent if i % 2 else light, width=5)
    elif motif == "stripes":
        for i in range(count):
            x0 = rng.uniform(0, size)
            draw.polygon([(x0, 0), (x0 + 30, 0), (x0 - size * 0.4 + 30, size), (x0 - size * 0.4, size)], fill=accent if i % 2 else light)
    elif motif == "diamonds":
        for _ in range(count):
            x, y, r = rng.uniform(0, size), rng.uniform(0, size * 0.8), rng.uniform(15, 45)
            draw.polygon([(x, y - r), (x + r, y), (x, y + r), (x - r, y)], outline=accent, width=4)
    elif motif == "stars":
        for _ in range(count * 4):
            x, y, r = rng.uniform(0, size), rng.uniform(0, size * 0.75), rng.uniform(1.5, 4)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=light)
        draw.polygon([(cx, cy - 40), (cx + 12, cy - 12), (cx + 40, cy), (cx + 12, cy + 12), (cx, cy + 40), (cx - 12, cy + 12), (cx - 40, cy), (cx - 12, cy - 12)], fill=accent)
    elif motif == "arches":
        for i in range(count):
            w = size * (0.9 - i * 0.7 / count)
            draw.arc((cx - w / 2, cy - w / 2, cx + w / 2, cy + w * 1.5), 180, 360, fill=accent if i % 2 else light, width=5)
    else:  # grid
        step = size // (count + 2)
        for x in range(step // 2, size, step):
            for y in range(step // 2, int(size * 0.8), step):
                if rng.random() < 0.6:
                    draw.rectangle((x, y, x + step * 0.6, y + step * 0.6), fill=accent if rng.random() < 0.5 else light)
    band = int(size * 0.2)
    draw.rectangle((0, size - band, size, size), fill=dark)
    font = ImageFont.load_default(size=20)
    label = title if len(title) <= 28 else title[:27] + "…"
    draw.text((14, size - band + 12), label, fill=light, font=font)
    draw.text((14, size - band + 38), genre.lower(), fill=accent, font=ImageFont.load_default(size=14))
    return image


def build(source: Path, out_dir: Path) -> pd.DataFrame:
    """Write `hymns.csv` and one generated cover per hymn into `out_dir`; return the catalogue."""
    hymns = json.loads(source.read_text(encoding="utf-8"))
    covers = out_dir / "covers"
    covers.mkdir(parents=True, exist_ok=True)
    rows = []
    seen: set[tuple[str, str]] = set()
    for hymn in hymns:
        # The same words set to another tune are one song here: recommending both is no help.
        identity = (normalise_text(hymn["title"]), normalise_text(hymn.get("author", "")))
        if identity in seen:
            continue
        seen.add(identity)
        song_id = slug(Path(hymn["source_file"]).stem)
        genre = hymn["category"].title()
        cover = f"covers/{song_id}.png"
        draw_cover(hymn["title"], genre).save(out_dir / cover, optimize=True)
        rows.append(
            {
                "id": song_id,
                "title": hymn["title"],
                "artist": ";".join(artist_names(hymn.get("author", ""))),
                "year": words_year(hymn["credits"]),
                "genre": genre,
                "lyrics": clean_hymn_lyrics(hymn["lyrics"]),
                "cover_path": cover,
                "cover_generated": True,
                "credit": " ".join(" ".join(line.split()) for line in hymn["credits"]),
            }
        )
    catalogue = pd.DataFrame(rows).astype({"year": "Int64"})
    catalogue.to_csv(out_dir / "hymns.csv", index=False)
    return catalogue


def build_parser() -> CommandParser:
    """The builder's arguments."""
    parser = CommandParser(
        prog="python -m ingest.sample", description=__doc__, exit_codes=(OK, UNEXPECTED, USAGE, INTERRUPTED)
    )
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help=f"the Open Hymnal source: {SOURCE_HELP}")
    parser.add_argument("--out", type=Path, default=SAMPLE_DIR, help="folder for hymns.csv and covers/")
    return parser


def build_sample(args: argparse.Namespace) -> int:
    """Build the catalogue the arguments ask for; returns the exit status."""
    if not args.source.is_file():
        raise CommandError(
            f"no Open Hymnal source at {args.source}. The shipped data/sample/hymns.csv needs no rebuilding; "
            f"to rebuild it, pass the source with --source PATH: {SOURCE_HELP}"
        )
    try:
        catalogue = build(args.source, args.out)
    except (ValueError, KeyError, TypeError) as error:  # json.JSONDecodeError is a ValueError
        raise CommandError(
            f"{args.source} is not the Open Hymnal JSON this builder reads ({type(error).__name__}: {error})"
        ) from error
    print(f"{len(catalogue)} hymns in {args.out / 'hymns.csv'}, covers in {args.out / 'covers'}")
    return OK


def main(argv: list[str] | None = None) -> int:
    """Run the builder; returns the exit status."""
    return run_command(lambda: build_sample(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
