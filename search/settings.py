"""Every setting Songspace reads, from the environment or a `.env` file, in one place."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENGINES = ("edge", "local")
SEARCH_MODES = ("exact", "approximate")
DEVICES = ("auto", "cpu", "cuda")
QUANTIZATIONS = ("int8", "none")
LONG_TEXT_POLICIES = ("windows", "truncate")
# The lyrics share of the fused score (the rest is cover) that the page, the command line,
# recommend() and the eval all start from; the best weight on the dev set (README, Quality).
DEFAULT_LYRICS_WEIGHT = 0.6
# The words (BM25) share of the lyrics score; chosen on the dev set (README, Quality).
DEFAULT_WORDS_WEIGHT = 0.2
# Each embedded engine keeps its own folder, so an old local-mode store is never opened by Edge.
DEFAULT_PATHS = {"edge": PROJECT_ROOT / "var" / "edge", "local": PROJECT_ROOT / "var" / "qdrant"}

_FLAG_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting has a value Songspace cannot use; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    """Settings resolved once from the environment; see the README's configuration table."""

    qdrant_url: str | None = None
    qdrant_api_key: str | None = field(default=None, repr=False)
    engine: str = "edge"
    qdrant_path: Path = DEFAULT_PATHS["edge"]
    collection: str = "songs"
    search_mode: str = "exact"
    hnsw_m: int = 16
    hnsw_ef_construct: int = 128
    hnsw_ef: int = 256
    quantization: str = "int8"
    on_disk: bool = True
    shards: int = 1
    replication_factor: int = 1
    write_consistency_factor: int = 1
    text_encoder: str | None = None
    image_encoder: str | None = None
    lyrics_long_text: str = "windows"
    words_weight: float = DEFAULT_WORDS_WEIGHT
    resnet50_weights: Path | None = None
    device: str = "auto"
    prepare_processes: int | None = None  # None: chosen by the device (see ingest/preparation.py)
    # Whether the embedded engine runs in a process of its own (None: the ingestion command runs it
    # so when it prepares songs in worker processes, beside a GPU; see search/engines/process.py).
    store_process: bool | None = None
    cache_dir: Path = PROJECT_ROOT / "var" / "cache"
    spotify_client_id: str | None = None
    spotify_client_secret: str | None = field(default=None, repr=False)
    spotify_api_url: str = "https://api.spotify.com/v1/"
    spotify_auth_url: str = "https://accounts.spotify.com/api/token"
    # Where Spotify sends the user back after logging in for "Save to Spotify": the page's address,
    # registered as a redirect URI in the Spotify app (Spotify accepts http only for 127.0.0.1).
    spotify_redirect_uri: str = "http://127.0.0.1:8501/"
    lrclib_url: str = "https://lrclib.net"
    cover_allowed_hosts: tuple[str, ...] = ()
    cover_roots: tuple[Path, ...] = ()
    cover_max_bytes: int = 10 * 1024 * 1024
    http_timeout_s: float = 10.0
    page_adds_songs: bool = True
    page_loads_catalogues: bool = True
    # The folders a catalogue named by its path on the page may come from (symlinks resolved first).
    catalogue_roots: tuple[Path, ...] = (PROJECT_ROOT / "data",)
    playlist_max_tracks: int = 100  # tracks taken from a pasted Spotify playlist or album

    @property
    def spotify_configured(self) -> bool:
        """Whether Spotify client credentials are present."""
        return bool(self.spotify_client_id and self.spotify_client_secret)

    @property
    def store_label(self) -> str:
        """Where the index lives, for people: the server URL or the embedded path and engine."""
        if self.qdrant_url:
            return self.qdrant_url
        return f"embedded store ({self.engine}) at {self.qdrant_path}"


class _Reader:
    """Reads raw values and turns them into typed settings, naming the setting in every error."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def parsed(self, name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except (ValueError, TypeError):
            raise SettingsError(f"{name}={raw!r} is not valid: expected {expected}") from None

    def integer(self, name: str, default: int, minimum: int = 1) -> int:
        def parse(raw: str) -> int:
            value = int(raw)
            if value < minimum:
                raise ValueError
            return value

        return self.parsed(name, default, parse, f"a whole number of at least {minimum}")

    def number(self, name: str, default: float, low: float, high: float | None = None) -> float:
        def parse(raw: str) -> float:
            value = float(raw)
            if not (value >= low and (high is None or value <= high)):
                raise ValueError
            return value

        bounds = f"between {low:g} and {high:g}" if high is not None else f"of at least {low:g}"
        return self.parsed(name, default, parse, f"a number {bounds}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        def parse(raw: str) -> str:
            if raw.lower() not in choices:
                raise ValueError
            return raw.lower()

        return self.parsed(name, default, parse, "one of " + ", ".join(choices))

    def flag(self, name: str, default: bool) -> bool:
        return self.parsed(name, default, _flag, "true or false")

    def path(self, name: str, default: Path) -> Path:
        raw = self.text(name)
        # Relative paths are taken from the project folder, wherever the program is started.
        return PROJECT_ROOT / Path(raw).expanduser() if raw else default

    def items(self, name: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in (self.text(name) or "").split(",") if part.strip())


def _flag(raw: str) -> bool:
    if raw.lower() not in _FLAG_WORDS:
        raise ValueError
    return _FLAG_WORDS[raw.lower()]


def _auto_flag(raw: str) -> bool | None:
    return None if raw.lower() == "auto" else _flag(raw)


def _processes(raw: str) -> int | None:
    if raw.lower() == "auto":
        return None
    value = int(raw)
    if value < 0:
        raise ValueError
    return value


def load_settings(env_file: Path | None = None) -> Settings:
    """Read settings from the environment, after loading `.env` (which never overrides it).

    Raises SettingsError, naming the setting, for a value that cannot be used.
    """
    load_dotenv(env_file or PROJECT_ROOT / ".env", override=False)
    read = _Reader(os.environ)
    defaults = Settings()
    engine = read.choice("QDRANT_ENGINE", defaults.engine, ENGINES)
    weights = read.text("RESNET50_WEIGHTS")
    return Settings(
        qdrant_url=read.text("QDRANT_URL"),
        qdrant_api_key=read.text("QDRANT_API_KEY"),
        engine=engine,
        qdrant_path=read.path("QDRANT_PATH", DEFAULT_PATHS[engine]),
        collection=read.text("QDRANT_COLLECTION") or defaults.collection,
        search_mode=read.choice("SEARCH_MODE", defaults.search_mode, SEARCH_MODES),
        hnsw_m=read.integer("QDRANT_HNSW_M", defaults.hnsw_m, minimum=4),
        hnsw_ef_construct=read.integer("QDRANT_HNSW_EF_CONSTRUCT", defaults.hnsw_ef_construct, minimum=4),
        hnsw_ef=read.integer("QDRANT_HNSW_EF", defaults.hnsw_ef, minimum=1),
        quantization=read.choice("QDRANT_QUANTIZATION", defaults.quantization, QUANTIZATIONS),
        on_disk=read.flag("QDRANT_ON_DISK", defaults.on_disk),
        shards=read.integer("QDRANT_SHARDS", defaults.shards),
        replication_factor=read.integer("QDRANT_REPLICATION_FACTOR", defaults.replication_factor),
        write_consistency_factor=read.integer("QDRANT_WRITE_CONSISTENCY_FACTOR", defaults.write_consistency_factor),
        text_encoder=read.text("TEXT_ENCODER"),
        image_encoder=read.text("IMAGE_ENCODER"),
        lyrics_long_text=read.choice("LYRICS_LONG_TEXT", defaults.lyrics_long_text, LONG_TEXT_POLICIES),
        words_weight=read.number("LYRICS_WORDS_WEIGHT", defaults.words_weight, 0.0, 1.0),
        resnet50_weights=read.path("RESNET50_WEIGHTS", Path()) if weights else None,
        device=read.choice("EMBED_DEVICE", defaults.device, DEVICES),
        prepare_processes=read.parsed(
            "PREPARE_PROCESSES", defaults.prepare_processes, _processes, "auto or a whole number of at least 0"
        ),
        store_process=read.parsed("STORE_PROCESS", defaults.store_process, _auto_flag, "auto, true or false"),
        cache_dir=read.path("SONGSPACE_CACHE_DIR", defaults.cache_dir),
        spotify_client_id=read.text("SPOTIPY_CLIENT_ID"),
        spotify_client_secret=read.text("SPOTIPY_CLIENT_SECRET"),
        spotify_api_url=read.text("SPOTIFY_API_URL") or defaults.spotify_api_url,
        spotify_auth_url=read.text("SPOTIFY_AUTH_URL") or defaults.spotify_auth_url,
        spotify_redirect_uri=read.text("SPOTIFY_REDIRECT_URI") or defaults.spotify_redirect_uri,
        lrclib_url=(read.text("LRCLIB_URL") or defaults.lrclib_url).rstrip("/"),
        cover_allowed_hosts=tuple(host.lower() for host in read.items("COVER_ALLOWED_HOSTS")),
        cover_roots=tuple(PROJECT_ROOT / Path(item).expanduser() for item in read.items("COVER_ROOTS")),
        cover_max_bytes=read.integer("COVER_MAX_BYTES", defaults.cover_max_bytes),
        http_timeout_s=read.number("HTTP_TIMEOUT_S", defaults.http_timeout_s, 0.1),
        page_adds_songs=read.flag("PAGE_ADDS_SONGS", defaults.page_adds_songs),
        page_loads_catalogues=read.flag("PAGE_LOADS_CATALOGUES", defaults.page_loads_catalogues),
        catalogue_roots=tuple(PROJECT_ROOT / Path(item).expanduser() for item in read.items("PAGE_CATALOGUE_ROOTS"))
        or defaults.catalogue_roots,
        playlist_max_tracks=read.integer("PLAYLIST_MAX_TRACKS", defaults.playlist_max_tracks),
    )
