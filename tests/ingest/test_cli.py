"""`python -m ingest`, `python -m ingest.first_run` and `python -m ingest.sample` as a user meets them:
mistakes are one-line errors that leave the store, the caches and the model cache as they were."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest import first_run, sample
from ingest.__main__ import main
from search.index import open_index
from search.settings import Settings

PROJECT = Path(__file__).resolve().parents[2]


def one_line_error(err: str) -> str:
    """The single `error: ...` line a failed command prints, with no traceback."""
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ")
    return line


@pytest.fixture
def machine(tmp_path: Path) -> dict[str, str]:
    """The environment of a fresh machine: store, caches and torch's model cache under `tmp_path/machine`,
    none of which exists yet; a model download would go to a closed local port."""
    root = tmp_path / "machine"
    env = {
        **os.environ,
        "QDRANT_PATH": str(root / "store"), "QDRANT_COLLECTION": "songs", "SONGSPACE_CACHE_DIR": str(root / "var" / "cache"),
        "TORCH_HOME": str(root / "torch"), "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
    }
    for name in ("QDRANT_URL", "IMAGE_ENCODER", "RESNET50_WEIGHTS"):
        env.pop(name, None)
    return env


def leftovers(env: dict[str, str]) -> list[Path]:
    """Everything the command left on the fresh machine."""
    root = Path(env["QDRANT_PATH"]).parent
    return sorted(root.rglob("*")) if root.exists() else []


def ingest(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest", *args], check=False, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_missing_catalogue_leaves_nothing_behind(machine, tmp_path):
    process = ingest(machine, str(tmp_path / "missing.csv"))
    assert process.returncode == 2 and process.stdout == ""
    assert one_line_error(process.stderr).startswith(f"error: argument catalogue: no catalogue file at {tmp_path / 'missing.csv'}")
    assert leftovers(machine) == []  # no store folder, no collection, no cache, no model download attempt


def test_an_unusable_catalogue_leaves_the_store_alone(machine, tmp_path, write_catalogue):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    process = ingest(machine, str(empty))
    assert process.returncode == 2 and "cannot read catalogue" in one_line_error(process.stderr)
    assert leftovers(machine) == []
    rejected = write_catalogue([{"title": "", "lyrics": "words " * 10}, {"title": " ", "lyrics": "more words " * 5}], "bad.csv")
    process = ingest(machine, str(rejected))
    problems = Path(machine["SONGSPACE_CACHE_DIR"]).parent / "ingest" / "bad-problems.csv"
    assert process.returncode == 2
    assert one_line_error(process.stderr) == (
        f"error: no usable song in {rejected} (2 rows rejected, reasons in {problems}); nothing was stored"
    )
    assert leftovers(machine) == [problems.parent.parent, problems.parent, problems]  # the reasons, nothing else
    assert "no title" in problems.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "argument --batch-size: expected a whole number of at least 1, got '0'"),
        (["--limit", "-3"], "argument --limit: expected a whole number of at least 1, got '-3'"),
        (["--rename", "lyrics"], "argument --rename: expected COLUMN=FIELD, got 'lyrics'"),
        (["--collection", " "], "argument --collection: expected some text, got nothing"),
        (["--wait-for-centres", "-1"], "argument --wait-for-centres: expected a number of seconds, 0 or more, got '-1'"),
        (["--wait-for-centres", "nan"], "argument --wait-for-centres: expected a number of seconds, 0 or more"),
    ],
)
def test_argument_mistakes_are_one_line_usage_errors(machine, themed_rows, write_catalogue, capsys, monkeypatch, args, message):
    for name in ("QDRANT_PATH", "SONGSPACE_CACHE_DIR"):
        monkeypatch.setenv(name, machine[name])
    assert main([str(write_catalogue(themed_rows)), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and one_line_error(captured.err).startswith(f"error: {message}")
    assert leftovers(machine) == []


def test_a_problems_file_that_cannot_be_written_is_refused_before_the_run(machine, themed_rows, write_catalogue, capsys, monkeypatch, tmp_path):
    for name in ("QDRANT_PATH", "SONGSPACE_CACHE_DIR"):
        monkeypatch.setenv(name, machine[name])
    catalogue = str(write_catalogue([*themed_rows, {"id": "x", "title": "Short", "lyrics": "la la"}]))  # a problem to write
    (tmp_path / "a-file").write_text("x")
    for problems, message in [(tmp_path, "is a folder"), (tmp_path / "a-file" / "problems.csv", "is a file, not a folder")]:
        assert main([catalogue, "--problems", str(problems)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and message in one_line_error(captured.err)
    assert leftovers(machine) == []


@pytest.mark.parametrize(("name", "value"), [("COVER_MAX_BYTES", "10MB"), ("LYRICS_LONG_TEXT", "bogus"), ("HTTP_TIMEOUT_S", "0")])
def test_bad_settings_stop_before_anything_happens(machine, themed_rows, write_catalogue, name, value):
    process = ingest({**machine, name: value}, str(write_catalogue(themed_rows)))
    assert process.returncode == 2 and process.stdout == ""
    assert one_line_error(process.stderr).startswith(f"error: {name}={value!r} is not valid")
    assert leftovers(machine) == []


def test_dry_run_creates_nothing(machine, themed_rows, write_catalogue, tmp_path, capsys, monkeypatch):
    for name in ("QDRANT_PATH", "SONGSPACE_CACHE_DIR"):
        monkeypatch.setenv(name, machine[name])
    monkeypatch.setenv("IMAGE_ENCODER", "efficientnet-lite0")
    catalogue = write_catalogue([*themed_rows, {"id": "x", "title": "Short", "lyrics": "la la"}])
    problems = tmp_path / "problems.csv"
    assert main([str(catalogue), "--dry-run", "--no-progress", "--problems", str(problems)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == "read 9  inserted 0  updated 0  unchanged 0  rejected 1"
    assert "dry run: nothing is stored" in captured.err
    assert leftovers(machine) == [] and "lyrics too short" in problems.read_text()


@pytest.mark.parametrize("processes", ["0", "2"])
def test_the_summary_is_alone_on_stdout(machine, themed_rows, write_catalogue, processes):
    """On a fresh machine the encoder choice tries ResNet-50's download: its notice goes to stderr.
    Songs prepared in worker processes (their server started before the store opens) load alike."""
    process = ingest({**machine, "PREPARE_PROCESSES": processes}, str(write_catalogue(themed_rows)), "--no-progress")
    assert process.returncode == 0, process.stderr
    assert 'Downloading: "https://download.pytorch.org' in process.stderr
    assert process.stdout.splitlines()[0] == "read 8  inserted 8  updated 0  unchanged 0  rejected 0"
    assert all(line.startswith(("read ", "lyrics missing ", "rejected and incomplete")) or " songs/s" in line for line in process.stdout.splitlines())
    index = open_index(Settings(qdrant_path=Path(machine["QDRANT_PATH"]), collection="songs"))
    try:
        assert index.count() == 8
    finally:
        index.close()


def test_first_run_mistakes(machine, tmp_path, capsys, monkeypatch):
    for name in ("QDRANT_PATH", "SONGSPACE_CACHE_DIR"):
        monkeypatch.setenv(name, machine[name])
    assert first_run.main([str(tmp_path / "missing.csv")]) == 2
    assert one_line_error(capsys.readouterr().err).startswith("error: argument catalogue: no catalogue file at")
    assert first_run.main([]) == 2
    assert one_line_error(capsys.readouterr().err).startswith("error: the following arguments are required: catalogue")
    assert leftovers(machine) == []


def test_sample_without_its_source_says_where_to_get_it(tmp_path, capsys):
    out = tmp_path / "sample"
    assert sample.main(["--source", str(tmp_path / "openhymnal.json"), "--out", str(out)]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith(f"error: no Open Hymnal source at {tmp_path / 'openhymnal.json'}")
    assert "--source PATH" in line and "https://github.com/mzealey/openhymnal" in line
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert sample.main(["--source", str(broken), "--out", str(out)]) == 2
    assert one_line_error(capsys.readouterr().err).startswith(f"error: {broken} is not the Open Hymnal JSON this builder reads")
    assert not out.exists()


def test_a_later_part_without_part_1s_centres_fails_clearly(machine, tmp_path):
    catalogue = tmp_path / "songs.csv"
    catalogue.write_text("id,title,artist,lyrics\n" + "".join(f"s{i},Song {i},A,words of song number {i} here\n" for i in range(8)))
    process = ingest(machine, str(catalogue), "--part", "2/2", "--wait-for-centres", "0", "--no-progress")
    assert process.returncode == 3 and "Traceback" not in process.stderr
    last = process.stderr.strip().splitlines()[-1]  # after the store and encoder notices
    assert last.startswith("error: part 2/2 needs the centres") and "run part 1/2" in last
    bad = ingest(machine, str(catalogue), "--part", "3/2")
    assert bad.returncode == 2 and "I/N" in one_line_error(bad.stderr)
