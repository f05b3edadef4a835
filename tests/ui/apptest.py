"""Driving the page with Streamlit's AppTest: settings through the environment, and reading cards back."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "ui" / "app.py")
ENV_NAMES = [
    "QDRANT_URL", "QDRANT_API_KEY", "QDRANT_ENGINE", "QDRANT_PATH", "QDRANT_COLLECTION", "SONGSPACE_CACHE_DIR",
    "SPOTIPY_CLIENT_ID", "SPOTIPY_CLIENT_SECRET", "SPOTIFY_API_URL", "SPOTIFY_AUTH_URL", "SPOTIFY_REDIRECT_URI",
    "LRCLIB_URL", "COVER_ALLOWED_HOSTS", "HTTP_TIMEOUT_S", "PAGE_ADDS_SONGS", "PAGE_LOADS_CATALOGUES",
    "PAGE_CATALOGUE_ROOTS", "PLAYLIST_MAX_TRACKS",
]


def use(monkeypatch, settings, services=None, **env: str) -> None:
    """Point the page at a store (and the fakes), with `env` settings on top (e.g. PAGE_ADDS_SONGS="false")."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QDRANT_ENGINE", settings.engine)
    monkeypatch.setenv("QDRANT_PATH", str(settings.qdrant_path))
    monkeypatch.setenv("QDRANT_COLLECTION", settings.collection)
    monkeypatch.setenv("SONGSPACE_CACHE_DIR", str(settings.cache_dir))
    monkeypatch.setenv("HTTP_TIMEOUT_S", "2")
    if settings.qdrant_url:
        monkeypatch.setenv("QDRANT_URL", settings.qdrant_url)
    for name, value in {**(services.env() if services else {}), **env}.items():
        monkeypatch.setenv(name, value)


def cards(at: AppTest) -> list[str]:
    """Card HTML in rank order (the page lays the cards out row by row)."""
    return [m.value for m in at.markdown if m.value.startswith('<div class="ss-card">')]


def card_titles(at: AppTest) -> list[str]:
    return [re.search(r"<h4>(.*?)</h4>", card)[1] for card in cards(at)]


def shown(text: str) -> str:
    """Escaped page text as a reader sees it (references decoded, word joiners are invisible)."""
    return html.unescape(text).replace("\u2060", "")


def card_scores(at: AppTest, modality: str) -> list[float]:
    return [float(re.search(rf'{modality}<div class="track">.*?</div></div>([-0-9.]+)</div>', c)[1]) for c in cards(at)]


def pick_by_title(at: AppTest, query: str, title: str) -> AppTest:
    at.text_input(key="query").input(query).run()
    button = next(b for b in at.button if b.label.replace("\\", "").startswith(title))
    return button.click().run()


def messages(at: AppTest) -> list[str]:
    """What the page says in its info, success, warning and error boxes, as a reader sees it."""
    return [shown(box.value) for kind in (at.info, at.success, at.warning, at.error) for box in kind]


def wait_for_load(at: AppTest, timeout: float = 240) -> AppTest:
    """Rerun the page until the catalogue it is loading in the background has finished."""
    deadline = time.monotonic() + timeout
    while not at.session_state["load_job"].finished:
        assert time.monotonic() < deadline, "the catalogue load did not finish"
        time.sleep(0.5)
    return at.run()
