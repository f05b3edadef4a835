"""Every setting Songspace reads, from the environment or a `.env` file, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """Settings resolved once from the environment; see the README's configuration table."""

    qdrant_url: str | None = None
    qdrant_api_key: str | None = field(default=None, repr=False)
    qdrant_path: Path = PROJECT_ROOT / "var" / "qdrant"
    collection: str = "songs"
    text_encoder: str | None = None
    image_encoder: str | None = None
    lyrics_long_text: str = "windows"
    resnet50_weights: Path | None = None
    cache_dir: Path = PROJECT_ROOT / "var" / "cache"
    spotify_client_id: str | None = None
    spotify_client_secret: str | None = field(default=None, repr=False)
    spotify_api_url: str = "https://api.spotify.com/v1/"
    spotify_auth_url: str = "https://accounts.spotify.com/api/token"
    lrclib_url: str = "https://lrclib.net"
    cover_allowed_hosts: tuple[str, ...] = ()
    cover_max_bytes: int = 10 * 1024 * 1024
    http_timeout_s: float = 10.0

    @property
    def spotify_configured(self) -> bool:
        """Whether Spotify client credentials are present."""
        return bool(self.spotify_client_id and self.spotify_client_secret)

    @property
    def store_label(self) -> str:
        """Where the index lives, for people: the server URL or the embedded path."""
        return self.qdrant_url or f"embedded store at {self.qdrant_path}"


def load_settings(env_file: Path | None = None) -> Settings:
    """Read settings from the environment, after loading `.env` (which never overrides it)."""
    load_dotenv(env_file or PROJECT_ROOT / ".env", override=False)
    env = os.environ

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    def path(name: str, default: Path) -> Path:
        value = get(name)
        if not value:
            return default
        # Relative paths are taken from the project folder, wherever the program is started.
        return PROJECT_ROOT / Path(value).expanduser()

    defaults = Settings()
    weights = get("RESNET50_WEIGHTS")
    return Settings(
        qdrant_url=get("QDRANT_URL"),
        qdrant_api_key=get("QDRANT_API_KEY"),
        qdrant_path=path("QDRANT_PATH", defaults.qdrant_path),
        collection=get("QDRANT_COLLECTION") or defaults.collection,
        text_encoder=get("TEXT_ENCODER"),
        image_encoder=get("IMAGE_ENCODER"),
        lyrics_long_text=get("LYRICS_LONG_TEXT") or defaults.lyrics_long_text,
        resnet50_weights=path("RESNET50_WEIGHTS", Path()) if weights else None,
        cache_dir=path("SONGSPACE_CACHE_DIR", defaults.cache_dir),
        spotify_client_id=get("SPOTIPY_CLIENT_ID"),
        spotify_client_secret=get("SPOTIPY_CLIENT_SECRET"),
        spotify_api_url=get("SPOTIFY_API_URL") or defaults.spotify_api_url,
        spotify_auth_url=get("SPOTIFY_AUTH_URL") or defaults.spotify_auth_url,
        lrclib_url=(get("LRCLIB_URL") or defaults.lrclib_url).rstrip("/"),
        cover_allowed_hosts=_split(get("COVER_ALLOWED_HOSTS") or ""),
        cover_max_bytes=int(get("COVER_MAX_BYTES") or defaults.cover_max_bytes),
        http_timeout_s=float(get("HTTP_TIMEOUT_S") or defaults.http_timeout_s),
    )
