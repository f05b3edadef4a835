"""Catalogues loaded from the page: an uploaded file (with an optional zip of covers) or a file on
the server, ingested by the same reader, pipeline and rules as `python -m ingest`.

The page process holds the embedded store (one process at a time), so it ingests in-process, in a
background thread: visitors keep searching meanwhile (Qdrant Edge answers queries while another
thread upserts; local mode does not, so it is refused there).
"""

from __future__ import annotations

import logging
import re
import shutil
import stat
import tempfile
import threading
import time
import zipfile
from dataclasses import replace
from io import BytesIO
from pathlib import Path, PurePosixPath

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from ingest.catalogue import CSV_SUFFIXES, JSON_LINES_SUFFIXES, PARQUET_SUFFIXES, CatalogueError, read_catalogue
from ingest.context import Songspace
from ingest.pipeline import Ingestor, IngestSummary, write_problems
from search.settings import PROJECT_ROOT, Settings
from ui.views import safe_text

log = logging.getLogger(__name__)

CATALOGUE_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES + JSON_LINES_SUFFIXES
BATCH_SIZE = 32  # smaller than the command's: the bar moves often and each upsert holds the store briefly
# Caps on a covers zip, counted on what is actually unpacked (a zip's own sizes can lie).
MAX_ZIP_FILES = 5_000
MAX_ZIP_BYTES = 512 * 2**20
# All uploaded catalogues and covers together (cards show covers from there, so loads are kept).
MAX_UPLOADS_BYTES = 4 * 2**30
_READ_CHUNK = 2**16


class LoadRefused(Exception):
    """The page will not load this: the message says why, for people."""


def _safe_member(name: str) -> PurePosixPath:
    """A zip entry's path inside the target folder, or LoadRefused for names that would leave it."""
    path = PurePosixPath(name.replace("\\", "/"))
    if not path.parts or "\x00" in name or path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name):
        raise LoadRefused(f"the covers zip has an entry outside its folder ({name[:80]!r}); nothing was loaded")
    return path


def unpack_covers(
    data: bytes, folder: Path, max_file_bytes: int, max_files: int = MAX_ZIP_FILES, max_bytes: int = MAX_ZIP_BYTES
) -> int:
    """Unpack a zip of covers into `folder` (new, and removed again if refused) and return how many files it held.

    Refused: entries that would land outside the folder, links, a name given twice, files over
    `max_file_bytes`, more than `max_files` files or `max_bytes` in all, a broken zip.
    """
    root = folder.resolve()
    written = total = 0
    try:
        with zipfile.ZipFile(BytesIO(data)) as archive:
            for info in archive.infolist():
                path = _safe_member(info.filename)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise LoadRefused(f"the covers zip holds a link ({info.filename[:80]!r}); nothing was loaded")
                if info.is_dir():
                    continue
                written += 1
                if written > max_files:
                    raise LoadRefused(f"the covers zip holds more than {max_files} files")
                target = root / path
                if not target.resolve().is_relative_to(root):
                    raise LoadRefused(f"the covers zip has an entry outside its folder ({info.filename[:80]!r})")
                target.parent.mkdir(parents=True, exist_ok=True)
                size = 0
                # "xb": a name given twice is refused rather than overwritten.
                with archive.open(info) as source, target.open("xb") as out:
                    while chunk := source.read(_READ_CHUNK):
                        size += len(chunk)
                        total += len(chunk)
                        if size > max_file_bytes:
                            raise LoadRefused(f"{info.filename[:80]!r} in the covers zip is over {max_file_bytes} bytes")
                        if total > max_bytes:
                            raise LoadRefused(f"the covers zip unpacks to more than {max_bytes} bytes")
                        out.write(chunk)
    # RuntimeError: an encrypted entry; OSError: a name the file system will not take.
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError, OSError) as error:
        shutil.rmtree(root, ignore_errors=True)
        raise LoadRefused(f"the covers zip cannot be unpacked ({error})") from error
    except LoadRefused:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return written


def _shown(root: Path) -> str:
    """A folder as visitors see it: from the project folder when it is inside it."""
    return str(root.relative_to(PROJECT_ROOT)) if root.is_relative_to(PROJECT_ROOT) else str(root)


def server_catalogue(text: str, roots: tuple[Path, ...]) -> Path:
    """The catalogue file a visitor named on the server, if it lies inside an allowed folder."""
    if not text.strip():
        raise LoadRefused("give the catalogue's path on the server")
    path = Path(text.strip()).expanduser()
    if not path.is_absolute():  # as every relative path in the settings: from the project folder
        path = PROJECT_ROOT / path
    try:
        resolved = path.resolve()  # symlinks followed before the folder check
    except (OSError, RuntimeError):  # a loop of links
        resolved = None
    # The folder check comes first, so that what lies outside the folders, there or not, is never told.
    if resolved is None or not any(resolved.is_relative_to(root.resolve()) for root in roots):
        allowed = ", ".join(_shown(root) for root in roots)
        raise LoadRefused(f"{text.strip()!r} is outside the folders this page may load from ({allowed}; PAGE_CATALOGUE_ROOTS)")
    if not resolved.exists():
        raise LoadRefused(f"there is no file {text.strip()!r} on the server")
    if not resolved.is_file():
        raise LoadRefused(f"{text.strip()!r} is not a file")
    if resolved.suffix.lower() not in CATALOGUE_SUFFIXES:
        raise LoadRefused(f"{resolved.name!r} is not a CSV, Parquet or JSON-lines catalogue (by its name)")
    return resolved


def _bytes_under(folder: Path) -> int:
    """The size of the files under a folder (0 if there is none)."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def _job_folder(settings: Settings) -> Path:
    """A new folder for one load: the upload, its covers (cards show them from there) and the problems file."""
    parent = settings.cache_dir / "catalogues"
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="load-", dir=parent))


def _stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name).stem).strip(".-") or "catalogue"


class LoadJob:
    """One catalogue being loaded in a background thread; the page reads its progress and outcome."""

    def __init__(self, name: str, catalogue: Path, folder: Path, uploaded: bool = False) -> None:
        self.folder = folder
        self.uploaded = uploaded  # a visitor's files: covers are read from its own folder only
        self.name = name  # as the visitor knows it: the uploaded file's name or the path they gave
        self.catalogue = catalogue
        self.problems_name = f"{_stem(name)}-problems.csv"
        self.problems_path = folder / "problems.csv"
        self.total = 0  # songs read (0 while reading)
        self.done = 0
        self.summary: IngestSummary | None = None
        self.error: str | None = None
        self.started = time.monotonic()
        self.seconds = 0.0
        self.finished = False

    @classmethod
    def from_upload(cls, settings: Settings, name: str, data: bytes, covers_zip: bytes | None) -> LoadJob:
        """A load of an uploaded catalogue, its covers unpacked beside it (paths in it are taken from the zip's root)."""
        suffix = Path(name).suffix.lower()
        if suffix not in CATALOGUE_SUFFIXES:
            raise LoadRefused(f"{name!r} is not a CSV, Parquet or JSON-lines catalogue (by its name)")
        room = MAX_UPLOADS_BYTES - _bytes_under(settings.cache_dir / "catalogues") - len(data)
        if room <= 0:
            raise LoadRefused(
                f"the page's room for uploaded catalogues ({MAX_UPLOADS_BYTES // 2**30} GiB) is full; "
                "the operator can remove old loads from the cache's catalogues folder"
            )
        folder = _job_folder(settings)
        catalogue = folder / f"catalogue{suffix}"
        catalogue.write_bytes(data)  # first: a zip entry of the same name is then refused, not written over it
        if covers_zip:
            unpack_covers(covers_zip, folder, settings.cover_max_bytes, max_bytes=min(MAX_ZIP_BYTES, room))
        return cls(name, catalogue, folder, uploaded=True)

    @classmethod
    def from_server(cls, settings: Settings, text: str) -> LoadJob:
        """A load of a catalogue file on the server, from an allowed folder."""
        catalogue = server_catalogue(text, settings.catalogue_roots)
        return cls(text.strip(), catalogue, _job_folder(settings))

    def discard(self) -> None:
        """Remove what was written for a load that will not run."""
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def fraction(self) -> float:
        """How far the load has come, from 0 to 1."""
        if self.finished:
            return 1.0
        return min(self.done / self.total, 1.0) if self.total else 0.0

    @property
    def problems_csv(self) -> bytes | None:
        """The rejected and incomplete rows with their reasons, once written."""
        return self.problems_path.read_bytes() if self.finished and self.problems_path.is_file() else None

    def start(self, songspace: Songspace) -> None:
        """Load in a background thread."""
        threading.Thread(target=self._run, args=(songspace,), name=f"load {self.name}", daemon=True).start()

    def _run(self, songspace: Songspace) -> None:
        try:
            self._load(songspace)
        except CatalogueError as error:
            # Messages name the file by the visitor's name, not the server's folder for it.
            self.error = str(error).replace(str(self.catalogue), repr(self.name))
            self._discard_inputs()
        except Exception as error:  # noqa: BLE001 (a thread's failure must reach the page, not vanish)
            log.exception("loading %s failed", self.name)
            self.error = f"loading stopped ({error.__class__.__name__}); what was stored stays, and loading it again finishes it"
        finally:
            self.seconds = time.monotonic() - self.started
            self.finished = True

    def _load(self, songspace: Songspace) -> None:
        # The command's rules: read and check the whole catalogue first; without a usable song,
        # nothing is stored and the problems file says why.
        songs, problems = read_catalogue(self.catalogue)
        if not songs:
            if problems:
                write_problems(problems, self.problems_path)
            reason = f"{len(problems)} rows rejected, reasons in the problems file" if problems else "it has no rows"
            self.error = f"no usable song in {self.name!r} ({reason}); nothing was stored"
            self._discard_inputs()
            return
        self.total = len(songs)
        # A visitor's catalogue reads covers from its own folder, never from the operator's COVER_ROOTS.
        fetcher = songspace.fetcher.only_roots() if self.uploaded else songspace.fetcher
        # Threads, never worker processes: those would start by running the page's script (Streamlit
        # makes it the process's __main__), which holds no main guard.
        ingestor = Ingestor(songspace.index, songspace.embedder, fetcher, batch_size=BATCH_SIZE, progress=False, processes=0)
        self.summary = ingestor.run(
            self.catalogue, problems_path=self.problems_path, read=(songs, problems), on_batch=self._advance,
            source="upload",  # a visitor's catalogue never replaces the operator's songs
        )

    def _discard_inputs(self) -> None:
        """After a load that stored nothing: remove what was uploaded for it, keeping only the problems file."""
        if not self.problems_path.is_file():
            self.discard()
            return
        for entry in self.folder.iterdir():
            if entry == self.problems_path:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def _advance(self, songs: int) -> None:
        self.done = min(self.done + songs, self.total)


class Loads:
    """The catalogue loads of this page process: one at a time, as they share the store and the CPU."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current: LoadJob | None = None

    @property
    def busy(self) -> bool:
        """Whether a load is running."""
        return self.current is not None and not self.current.finished

    def start(self, job: LoadJob, songspace: Songspace) -> bool:
        """Start `job` unless another load is running; whether it started."""
        with self._lock:
            if self.busy:
                return False
            self.current = job
        job.start(songspace)
        return True


def load_tab(songspace: Songspace, loads: Loads) -> None:
    """Load a catalogue from the page: an upload (and a zip of its covers) or a file on the server."""
    settings = songspace.settings
    if settings.engine == "local" and not settings.qdrant_url:
        st.info(
            "Loading from the page needs Qdrant Edge (the default engine) or a Qdrant server: local mode cannot "
            "answer searches while it is being written. Load with `python -m ingest CATALOGUE` instead."
        )
        return
    job: LoadJob | None = st.session_state.get("load_job")
    if job is not None and not job.finished:
        _watch(job)
        return
    if job is not None:
        _outcome(job)
    roots = ", ".join(_shown(root) for root in settings.catalogue_roots)
    with st.form("load-catalogue"):
        upload = st.file_uploader("Catalogue: CSV, Parquet or JSON lines", key="load_file",
                                  type=[suffix.lstrip(".") for suffix in CATALOGUE_SUFFIXES])
        covers = st.file_uploader("Its covers (optional): a zip; the catalogue's cover paths are read from the zip's root",
                                  type=["zip"], key="load_covers")
        path = st.text_input(f"Or the path of a catalogue on the server (in {roots})", key="load_path")
        go = st.form_submit_button("Load the catalogue", key="load-go")
    st.caption("Same rules as `python -m ingest`: bad rows are reported in a problems file and never stop the load; "
               "songs already stored are not embedded again.")
    if go:
        start_load(songspace, loads, upload, covers, path)


def start_load(songspace: Songspace, loads: Loads, upload: UploadedFile | None, covers: UploadedFile | None, path: str) -> None:
    """Check what was given and start loading it in the background."""
    if bool(upload) == bool(path.strip()):
        st.warning("Upload a catalogue file or give a path on the server (one of them).")
        return
    if loads.busy:
        st.warning("Another catalogue is loading on this server; try again when it has finished.")
        return
    try:
        if upload is not None:
            job = LoadJob.from_upload(songspace.settings, upload.name, upload.getvalue(), covers.getvalue() if covers else None)
        else:
            job = LoadJob.from_server(songspace.settings, path)
    except LoadRefused as error:
        st.warning(safe_text(error))
        return
    if not loads.start(job, songspace):
        job.discard()
        st.warning("Another catalogue is loading on this server; try again when it has finished.")
        return
    st.session_state.load_job = job
    _watch(job)


@st.fragment(run_every=1.0)
def _watch(job: LoadJob) -> None:
    """The load's progress, redrawn every second on its own while the rest of the page stays usable."""
    if job.finished:
        st.rerun()  # the whole page: the outcome, and the new songs in the search box and filters
    text = f"Loading {safe_text(job.name)}: {job.done} of {job.total} songs" if job.total else f"Reading {safe_text(job.name)}…"
    st.progress(job.fraction, text=text)
    st.caption("You can keep searching meanwhile.")


def _outcome(job: LoadJob) -> None:
    """How the last load ended: its summary, or why it stopped, and its problems file."""
    if job.error:
        st.warning(safe_text(job.error))
    if job.summary is not None:
        # Without the problems file's server path: visitors download it below.
        lines = replace(job.summary, problems_path=None).lines()
        st.success(f"Loaded {safe_text(job.name)}:  \n" + "  \n".join(safe_text(line) for line in lines))
    problems = job.problems_csv
    if problems:
        st.download_button("Download the problems file", problems, file_name=job.problems_name, mime="text/csv",
                           on_click="ignore", key="load-problems")
