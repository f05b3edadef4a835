"""Catalogues loaded from the page: uploads with a zip of covers, files on the server, in a background
thread while the page keeps answering, under the command's rules; and what is refused."""

from __future__ import annotations

import io
import stat
import time
import zipfile
from dataclasses import replace

import pandas as pd
import pytest

from search.index import COVER, LYRICS
from tests.conftest import make_cover, store_settings
from tests.ui.apptest import card_titles, messages, pick_by_title, shown, use, wait_for_load
from ui import loading
from ui.loading import LoadJob, LoadRefused, server_catalogue, unpack_covers

WORDS = ["pine", "moss", "fern", "oak", "deer", "owl", "birch", "mist", "brook", "acorn", "thicket", "lichen"]


def forest_rows(count: int) -> list[dict[str, object]]:
    """Songs about the forest, each with its own green cover in covers/."""
    return [
        {
            "id": f"forest-{i}",
            "title": f"Forest Song {i}",
            "artist": f"Woodland Choir {i % 3}",
            "genre": "forest",
            "year": 2000 + i % 20,
            "lyrics": f"Deep in the forest the {WORDS[i % 12]} and the {WORDS[(i * 5 + 1) % 12]} wake, "
                      f"the {WORDS[(i * 7 + 2) % 12]} by the trail, green shade at dawn, verse {i}",
            "cover_path": f"covers/forest{i}.png",
        }
        for i in range(count)
    ]


def as_csv(rows: list[dict[str, object]]) -> bytes:
    return pd.DataFrame(rows).to_csv(index=False).encode()


def as_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def covers_zip(count: int) -> bytes:
    return as_zip({f"covers/forest{i}.png": make_cover((30, 120 + i % 60, 40), i) for i in range(count)})


def upload(at, name: str, data: bytes, covers: bytes | None = None):
    at.file_uploader(key="load_file").upload(name, data, "text/csv")
    if covers is not None:
        at.file_uploader(key="load_covers").upload("covers.zip", covers, "application/zip")
    return at.button(key="load-go").click().run()


SONGS = 240  # enough that the page is used while they load (80 load in about 3.5 s here)


def test_an_upload_loads_in_the_background_while_the_page_answers(monkeypatch, catalogue_settings, app):
    rows = forest_rows(SONGS) + [
        {"id": "bad-1", "title": "", "artist": "Nobody", "lyrics": "no title here"},
        {"id": "bad-2", "title": "Empty Song", "artist": "Nobody", "cover_path": "covers/missing.png"},
    ]
    use(monkeypatch, catalogue_settings)
    app.run()
    assert "lyrics: not centred yet: needs 32 songs with lyrics" in app.sidebar.markdown[0].value
    upload(app, "forest songs.csv", as_csv(rows), covers_zip(SONGS))
    job = app.session_state["load_job"]
    (progress,) = [shown(p.proto.text) for p in app.get("progress")]
    assert not app.exception and progress.startswith(("Reading forest songs.csv", "Loading forest songs.csv: "))

    pick_by_title(app, "Sea Song 0", "Sea Song 0")  # searching while the catalogue loads
    assert card_titles(app) and not job.finished, "the load ended before the page was used: make the catalogue larger"

    wait_for_load(app)
    print(f"\nloaded {SONGS + 2} rows ({SONGS} songs with lyrics and covers) in {job.seconds:.1f} s")
    said = "\n".join(messages(app))
    assert "Loaded forest songs.csv:" in said
    assert f"read {SONGS + 2} inserted {SONGS} updated 0 unchanged 0 rejected 2" in said
    assert "rejected and incomplete rows" not in said  # the server's path is not shown
    problems = pd.read_csv(io.BytesIO(job.problems_csv))
    assert sorted(problems["song_id"]) == ["bad-1", "bad-2"]
    assert app.download_button(key="load-problems").label == "Download the problems file"
    status = app.sidebar.markdown[0].value
    assert status.startswith(f"**{SONGS + 9}** songs") and "Qdrant Edge at" in status
    assert f"lyrics: centred on {SONGS + 9} songs" in status and f"cover: centred on {SONGS + 9} songs" in status
    assert "forest" in app.multiselect(key="genres").options  # the filters know the new songs
    pick_by_title(app, "forest song 17", "Forest Song 17 — ")  # and so does the search box
    heading = "#### Because you like Sea Song 0 — Sea Band 0 and Forest Song 17 — Woodland Choir 2"  # the basket grew
    assert card_titles(app) and heading in [m.value for m in app.markdown]
    (folder,) = (catalogue_settings.cache_dir / "catalogues").iterdir()  # the covers stay, for the cards to show
    assert (folder / "covers" / "forest17.png").is_file() and len(app.get("image")) == len(card_titles(app))


def test_a_catalogue_on_the_server_inside_the_allowed_folders(monkeypatch, catalogue_settings, tmp_path, app):
    allowed = tmp_path / "allowed"
    (allowed / "covers").mkdir(parents=True)
    for i in range(3):
        (allowed / "covers" / f"forest{i}.png").write_bytes(make_cover((30, 120, 40), i))
    (allowed / "forest.jsonl").write_text(pd.DataFrame(forest_rows(3)).to_json(orient="records", lines=True))
    (tmp_path / "elsewhere.csv").write_bytes(as_csv(forest_rows(3)))
    use(monkeypatch, catalogue_settings, PAGE_CATALOGUE_ROOTS=str(allowed))
    app.run()
    app.text_input(key="load_path").input(str(tmp_path / "elsewhere.csv"))
    app.button(key="load-go").click().run()
    assert any("is outside the folders this page may load from" in w for w in app.warning.values)
    app.text_input(key="load_path").input(str(allowed / "forest.jsonl"))
    app.button(key="load-go").click().run()
    wait_for_load(app)
    assert any("read 3 inserted 3" in m for m in messages(app)), messages(app)
    assert not [b for b in app.download_button if b.key == "load-problems"]  # nothing to report
    assert app.sidebar.markdown[0].value.startswith("**12** songs")


@pytest.mark.parametrize(
    "name, data, message, problems",
    [
        ("bad.csv", as_csv([{"title": "", "artist": "x", "lyrics": "words"}, {"title": " ", "artist": "y", "lyrics": "more"}]),
         "no usable song in 'bad.csv' (2 rows rejected, reasons in the problems file); nothing was stored", True),
        ("broken.parquet", b"PAR1 not really parquet", "cannot read catalogue 'broken.parquet'", False),
    ],
)
def test_a_catalogue_without_a_usable_song_stores_nothing(monkeypatch, catalogue_settings, app, name, data, message, problems):
    use(monkeypatch, catalogue_settings)
    app.run()
    upload(app, name, data, as_zip({"covers/forest0.png": make_cover((30, 120, 40), 0)}))
    wait_for_load(app)
    assert any(w.startswith(message) for w in messages(app)), messages(app)
    assert str(catalogue_settings.cache_dir) not in "\n".join(messages(app))
    assert app.sidebar.markdown[0].value.startswith("**9** songs")
    assert bool([b for b in app.download_button if b.key == "load-problems"]) == problems
    # Nothing of the upload stays on the server: only the problems file, for its download.
    kept = sorted(p.name for p in (catalogue_settings.cache_dir / "catalogues").rglob("*") if p.is_file())
    assert kept == (["problems.csv"] if problems else [])


def test_a_covers_zip_that_escapes_its_folder_is_refused(monkeypatch, catalogue_settings, app):
    use(monkeypatch, catalogue_settings)
    app.run()
    upload(app, "forest.csv", as_csv(forest_rows(2)), as_zip({"../../escaped.png": make_cover((1, 2, 3), 1)}))
    assert any("outside its folder" in w for w in app.warning.values)
    assert "load_job" not in app.session_state
    assert not list((catalogue_settings.cache_dir / "catalogues").iterdir())  # nothing kept
    assert not (catalogue_settings.cache_dir.parent / "escaped.png").exists()


def test_one_source_at_a_time(monkeypatch, catalogue_settings, app):
    use(monkeypatch, catalogue_settings)
    app.run()
    app.button(key="load-go").click().run()
    assert any("Upload a catalogue file or give a path on the server" in w for w in app.warning.values)


def test_the_operator_can_turn_loading_off(monkeypatch, catalogue_settings, app):
    use(monkeypatch, catalogue_settings, PAGE_LOADS_CATALOGUES="false")
    app.run()
    assert "Load a catalogue" not in [t.label for t in app.tabs]
    assert "Add a song by hand" in [t.label for t in app.tabs]


def test_local_mode_cannot_load_from_the_page(monkeypatch, tmp_path, themed_rows, write_catalogue, app):
    from ingest.context import open_songspace
    from ingest.pipeline import Ingestor

    settings = store_settings("local", tmp_path)
    songspace = open_songspace(settings)
    Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False).run(write_catalogue(themed_rows[:2]))
    songspace.close()
    use(monkeypatch, settings)
    app.run()
    assert any("local mode cannot answer searches while it is being written" in i.value for i in app.info)
    assert not [b for b in app.button if b.key == "load-go"]


# Unpacking a covers zip and naming a file on the server, without the page.


def link_entry(name: str, target: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo(name)
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, target)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data, reason",
    [
        (as_zip({"../up.png": b"x"}), "outside its folder"),
        (as_zip({"a/../../up.png": b"x"}), "outside its folder"),
        (as_zip({"/etc/cron.d/x": b"x"}), "outside its folder"),
        (as_zip({"C:\\\\windows\\\\x.png": b"x"}), "outside its folder"),
        (link_entry("covers/link.png", "/etc/passwd"), "holds a link"),
        (as_zip({"big.png": b"\0" * 5000}), "is over 4096 bytes"),  # a small zip that unpacks large
        (as_zip({f"c{i}.png": b"x" for i in range(11)}), "more than 10 files"),
        (as_zip({f"c{i}.png": b"x" * 3000 for i in range(4)}), "unpacks to more than 10000 bytes"),
        (as_zip({"a.png": b"1"}), None),
        (b"PK\x03\x04 not a zip at all", "cannot be unpacked"),
    ],
)
def test_a_covers_zip_is_unpacked_only_inside_its_folder_and_within_caps(tmp_path, data, reason):
    folder = tmp_path / "load"
    folder.mkdir()
    if reason is None:
        assert unpack_covers(data, folder, 4096, max_files=10, max_bytes=10_000) == 1
        assert (folder / "a.png").read_bytes() == b"1"
        return
    with pytest.raises(LoadRefused, match=reason):
        unpack_covers(data, folder, 4096, max_files=10, max_bytes=10_000)
    assert not folder.exists()  # nothing of it is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_name_given_twice_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.png", b"first")
        archive.writestr("a.png", b"second")
    (tmp_path / "load").mkdir()
    with pytest.raises(LoadRefused, match="cannot be unpacked"):
        unpack_covers(buffer.getvalue(), tmp_path / "load", 4096)


def test_a_server_path_must_stay_inside_the_allowed_folders(tmp_path):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "sub").mkdir(parents=True)
    outside.mkdir()
    (allowed / "sub" / "songs.csv").write_text("title\nA\n")
    (outside / "secret.csv").write_text("title\nB\n")
    (allowed / "link.csv").symlink_to(outside / "secret.csv")
    (allowed / "gone.csv").symlink_to(outside / "missing.csv")
    (allowed / "notes.txt").write_text("x")
    roots = (allowed,)
    assert server_catalogue(str(allowed / "sub" / "songs.csv"), roots) == (allowed / "sub" / "songs.csv").resolve()
    for given, reason in [
        (str(outside / "secret.csv"), "outside the folders"),
        (str(allowed / "sub" / ".." / ".." / "outside" / "secret.csv"), "outside the folders"),
        (str(allowed / "link.csv"), "outside the folders"),  # a link is judged by where it leads
        (str(allowed / "sub"), "is not a file"),
        (str(allowed / "notes.txt"), "is not a CSV, Parquet or JSON-lines catalogue"),
        (str(allowed / "missing.csv"), "there is no file"),
        (str(outside / "missing.csv"), "outside the folders"),  # as for a file there: nothing is told of it
        (str(allowed / "gone.csv"), "outside the folders"),  # a link to a missing file outside
        ("  ", "give the catalogue's path"),
    ]:
        with pytest.raises(LoadRefused, match=reason):
            server_catalogue(given, roots)


def test_a_catalogue_loaded_on_the_page_never_replaces_the_operators_songs(monkeypatch, catalogue_settings, app):
    rows = [{"id": "sea-0", "title": "Visitor was here", "artist": "Mallory", "lyrics": "la " * 40}, *forest_rows(2)]
    use(monkeypatch, catalogue_settings)
    app.run()
    upload(app, "mine.csv", as_csv([{k: v for k, v in r.items() if k != "cover_path"} for r in rows]))
    job = wait_for_load(app).session_state["load_job"]
    assert any("read 3 inserted 2" in m and "rejected 1" in m for m in messages(app)), messages(app)
    (refused,) = [p for p in job.summary.problems if p.song_id == "sea-0"]
    assert refused.outcome == "rejected" and "from 'catalogue'" in refused.reason
    pick_by_title(app, "sea song 0", "Sea Song 0")  # the operator's song is still there, as it was
    assert any(t.startswith("Sea Song") for t in card_titles(app))
    app.text_input(key="query").input("visitor was here").run()
    assert not [b for b in app.button if "Visitor was here" in shown(b.label)]


def test_an_upload_reads_covers_from_its_own_folder_never_the_operators_roots(catalogue_settings, tmp_path):
    from ingest.context import open_songspace

    operators = tmp_path / "operator-covers"
    operators.mkdir()
    (operators / "private.png").write_bytes(make_cover((10, 10, 10), 3))
    settings = replace(catalogue_settings, cover_roots=(operators,))
    rows = forest_rows(2)
    rows[0]["cover_path"] = str(operators / "private.png")
    job = LoadJob.from_upload(settings, "mine.csv", as_csv(rows), covers_zip(2))
    songspace = open_songspace(settings)
    try:
        job.start(songspace)
        deadline = time.monotonic() + 120
        while not job.finished and time.monotonic() < deadline:
            time.sleep(0.1)
        assert job.finished and job.error is None and job.summary is not None
        stored = {p.payload["song_id"]: p for p in songspace.index.find("source", "upload")}
    finally:
        songspace.close()
    (problem,) = job.summary.problems
    assert problem.song_id == "forest-0" and problem.outcome == "kept" and "outside" in problem.reason
    assert set(stored["forest-0"].vectors) == {LYRICS} and set(stored["forest-1"].vectors) == {LYRICS, COVER}


def test_the_room_for_uploaded_catalogues_is_capped(catalogue_settings, monkeypatch):
    monkeypatch.setattr(loading, "MAX_UPLOADS_BYTES", 60_000)
    earlier = catalogue_settings.cache_dir / "catalogues" / "load-earlier"
    earlier.mkdir(parents=True)
    (earlier / "covers.bin").write_bytes(b"0" * 40_000)
    catalogue = as_csv(forest_rows(1))
    with pytest.raises(LoadRefused, match="unpacks to more than"):  # within a zip's own caps, not the room left
        LoadJob.from_upload(catalogue_settings, "a.csv", catalogue, as_zip({"covers/forest0.png": b"1" * 30_000}))
    assert sorted(p.name for p in earlier.parent.iterdir()) == ["load-earlier"]
    (earlier / "more.bin").write_bytes(b"0" * 20_000)
    with pytest.raises(LoadRefused, match="is full"):
        LoadJob.from_upload(catalogue_settings, "a.csv", catalogue, None)
