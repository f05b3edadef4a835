"""A broken catalogue through the real command: 20 good songs and every kind of bad row we know of.
The run must complete, store exactly what is usable, and name every bad row with its reason."""

from __future__ import annotations

import csv
import io
import itertools
import socketserver
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.__main__ import main
from ingest.context import open_songspace
from search.index import COVER, LYRICS
from search.settings import load_settings
from tests.conftest import CITY_LYRICS, SEA_LYRICS, make_cover

HEADER = ["id", "title", "artist", "year", "lyrics", "cover_url", "cover_path"]
GOOD_SONGS = 20
BOTH, LYRICS_ONLY, COVER_ONLY = {LYRICS, COVER}, {LYRICS}, {COVER}
NUL = "<NUL>"  # replaced by a NUL byte once the line is encoded


@dataclass
class Case:
    """One bad row: what is written, what must be stored (None: nothing), and what its reason says."""

    kind: str
    row: dict[str, str] | bytes  # field values, or the raw line where it must be malformed
    stored: set[str] | None
    reason: str = ""  # a fragment of the reported reason ("" where the wording is the fetcher's own)
    encoding: str = "utf-8"


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A small PNG whose header claims `width` x `height` pixels (no decoder should believe it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b"")


@pytest.fixture
def dropping_server() -> Iterator[str]:
    """A loopback server that promises a 100 kB PNG and hangs up after 200 bytes of it."""
    body = make_cover((1, 2, 3), 4)[:200]

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while self.rfile.readline().strip():  # the request's head
                pass
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n" + body
            )

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def csv_line(values: list[str], encoding: str = "utf-8") -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)  # CRLF line endings, as the csv module writes them
    return buffer.getvalue().encode(encoding).replace(NUL.encode(), b"\0")


@pytest.fixture
def broken_catalogue(tmp_path, cover_server, dropping_server) -> tuple[Path, list[Case]]:
    lines = list(itertools.permutations(SEA_LYRICS + CITY_LYRICS, 2))[:GOOD_SONGS]
    good = []
    for i, (first, second) in enumerate(lines):
        (tmp_path / f"good{i}.png").write_bytes(make_cover((12 * i, 200 - 8 * i, 60 + 5 * i), i))
        # The good rows fill only cover_path; the empty cover_url before it must not hide it.
        good.append({"id": f"good-{i}", "title": f"Good Song {i}", "artist": f"Band {i % 3}", "year": str(1980 + i),
                     "lyrics": f"{first}. {second}", "cover_url": "", "cover_path": f"good{i}.png"})

    lyrics = SEA_LYRICS[0] + ", and the night goes on"
    cover_server.files["/page.png"] = (200, "text/html", b"<html><body>not a cover</body></html>")
    cover_server.files["/moved.png"] = (302, "", b"http://169.254.169.254/latest/cover.png")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "notes.png").write_text("these are liner notes, not a picture")
    (tmp_path / "bomb.png").write_bytes(png_bomb())
    whole = make_cover((200, 30, 30), 99)
    (tmp_path / "truncated.png").write_bytes(whole[: len(whole) // 2])
    to_root = "../" * len(tmp_path.parts)

    def row(kind: str, **values: str) -> dict[str, str]:
        return {"id": f"bad-{kind}", "title": f"Bad {kind}", "artist": "Bad Band", "lyrics": lyrics, **values}

    cases = [
        Case("ipv6", row("ipv6", cover_url="http://[::1"), LYRICS_ONLY),
        Case("scheme", row("scheme", cover_url="ftp://127.0.0.1/cover.png"), LYRICS_ONLY, "scheme"),
        Case("404", row("404", cover_url=f"{cover_server.url}/gone.png"), LYRICS_ONLY, "404"),
        Case("html", row("html", cover_url=f"{cover_server.url}/page.png"), LYRICS_ONLY, "not an image"),
        Case("redirect", row("redirect", cover_url=f"{cover_server.url}/moved.png"), LYRICS_ONLY, "non-public"),
        Case("dropped", row("dropped", cover_url=f"{dropping_server}/cover.png"), LYRICS_ONLY),
        Case("missing-file", row("missing-file", cover_path="missing.png"), LYRICS_ONLY, "does not exist"),
        Case("outside-path", row("outside-path", cover_path=f"{to_root}etc/passwd"), LYRICS_ONLY, "outside"),
        Case("directory", row("directory", cover_path="a-folder"), LYRICS_ONLY),
        Case("not-an-image", row("not-an-image", cover_path="notes.png"), LYRICS_ONLY, "not a readable image"),
        Case("bomb", row("bomb", cover_path="bomb.png"), LYRICS_ONLY, "pixel"),
        Case("truncated", row("truncated", cover_path="truncated.png"), LYRICS_ONLY),
        Case("bomb-no-lyrics", row("bomb-no-lyrics", lyrics="", cover_path="bomb.png"), None, "pixel"),
        Case("no-title", row("no-title", title="", cover_path="good0.png"), None, "no title"),
        Case("blank-title", row("blank-title", title="   ", cover_path="good0.png"), None, "no title"),
        Case("short-lyrics", row("short-lyrics", lyrics="la la", cover_path="good1.png"), COVER_ONLY, "lyrics too short"),
        Case("nothing", row("nothing", lyrics=""), None, "neither lyrics nor cover"),
        Case("windows-1252", row("windows-1252", title="Café Olé", cover_path="good3.png"), BOTH, "not UTF-8", "cp1252"),
        Case("nul", row("nul", title=f"Nul{NUL}led", cover_path="good4.png"), BOTH, "NUL"),
        Case("duplicate-id", row("duplicate-id", id="good-0", cover_path="good0.png"), None, "duplicate id of row 1"),
        Case("bad-date", row("bad-date", year="1999-13-45", cover_path="good5.png"), BOTH, "year '1999-13-45'"),
        Case("far-future", row("far-future", year="2999", cover_path="good6.png"), BOTH, "year '2999'"),
        Case("year-text", row("year-text", year="abc", cover_path="good7.png"), BOTH, "year 'abc'"),
        Case("artists-list", row("artists-list", artist="['Ann', 'Bob'", cover_path="good8.png"), BOTH, "not a valid list"),
        Case("extra-field", b"bad-extra,Bad extra,Bad Band,1999,lyrics that shift,,x.png,stray\r\n", None,
             "8 fields where the header has 7"),
        # Last: a quote that never closes swallows every line after it.
        Case("open-quote", b'bad-quote,"Bad quote,Bad Band,1999,' + lyrics.encode() + b",,\r\n", None, "never closed"),
    ]
    spreadsheet_id = {"id": "1001.0", "title": "Spreadsheet Id", "artist": "Band 9", "lyrics": lyrics, "cover_path": "good2.png"}
    data = b"\xef\xbb\xbf" + csv_line(HEADER)
    for values in [*good, spreadsheet_id]:
        data += csv_line([values.get(name, "") for name in HEADER])
    for case in cases:
        data += case.row if isinstance(case.row, bytes) else csv_line([case.row.get(n, "") for n in HEADER], case.encoding)
    catalogue = tmp_path / "broken.csv"
    catalogue.write_bytes(data)
    return catalogue, cases


@pytest.fixture
def command_env(settings, monkeypatch):
    """The command's settings come from the environment, pointed at this test's store."""
    for name, value in {
        "QDRANT_ENGINE": settings.engine, "QDRANT_URL": settings.qdrant_url or "",
        "QDRANT_PATH": str(settings.qdrant_path), "QDRANT_COLLECTION": settings.collection,
        "SONGSPACE_CACHE_DIR": str(settings.cache_dir), "COVER_ALLOWED_HOSTS": "127.0.0.1", "HTTP_TIMEOUT_S": "2",
    }.items():
        monkeypatch.setenv(name, value)


def test_a_broken_catalogue_ingests_every_usable_row_and_names_every_bad_one(command_env, broken_catalogue, tmp_path):
    catalogue, cases = broken_catalogue
    problems_path = tmp_path / "problems.csv"
    status = main([str(catalogue), "--no-progress", "--batch-size", "8", "--problems", str(problems_path)])
    assert status == 0

    songspace = open_songspace(load_settings(), create=False)
    try:
        stored_count = songspace.index.count()
        point_ids = {payload["song_id"]: point_id for point_id, payload in songspace.index.scroll_payloads()}
        points = {p.payload["song_id"]: p for p in songspace.index.get(list(point_ids.values()))}
    finally:
        songspace.close()
    # 20 good songs, the spreadsheet id, 12 bad covers kept with their lyrics, 1 short lyric kept with
    # its cover, and 6 rows kept without a bad value or with repaired text; 7 rows rejected
    assert stored_count == 40
    kept = {f"bad-{case.kind}" for case in cases if case.stored is not None}
    assert set(points) == {f"good-{i}" for i in range(GOOD_SONGS)} | {"1001"} | kept
    for i in range(GOOD_SONGS):
        assert set(points[f"good-{i}"].vectors) == BOTH, f"good-{i}"
        assert points[f"good-{i}"].payload["year"] == 1980 + i
    assert set(points["1001"].vectors) == BOTH
    for case in cases:
        if case.stored is not None:
            assert set(points[f"bad-{case.kind}"].vectors) == case.stored, case.kind
    assert points["bad-windows-1252"].payload["title"] == "Café Olé"
    assert points["bad-nul"].payload["title"] == "Nulled"
    assert points["bad-artists-list"].payload["artists"] == ["Ann", "Bob"]
    assert all("year" not in points[f"bad-{kind}"].payload for kind in ("bad-date", "far-future", "year-text"))

    with problems_path.open(encoding="utf-8") as handle:
        reported: dict[int, list[dict[str, str]]] = {}
        for problem in csv.DictReader(handle):
            reported.setdefault(int(problem["row"]), []).append(problem)
    first_bad = GOOD_SONGS + 2  # after the good songs and the spreadsheet id
    assert set(reported) == set(range(first_bad, first_bad + len(cases))), "only the bad rows, every one of them"
    for number, case in enumerate(cases, start=first_bad):
        outcomes = {p["outcome"] for p in reported[number]}
        if case.stored is None:
            assert "rejected" in outcomes, case.kind
        else:
            assert outcomes == {"kept"}, case.kind
        assert all(p["reason"] for p in reported[number]), case.kind
        assert any(case.reason in p["reason"] for p in reported[number]), (case.kind, reported[number])
