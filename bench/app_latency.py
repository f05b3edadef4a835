"""The page in headless Chromium: click-to-cards time for catalogue songs and for an unseen Spotify
song (loopback fakes), and the app's memory with both encoders loaded.

Run: .venv/bin/python -m bench.app_latency [CATALOGUE] [--screenshot PATH]
(default catalogue: ../shared/data/eval-dev/paired.csv)
"""

from __future__ import annotations

import argparse
import json
import re
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ingest.catalogue import read_catalogue
from ingest.context import open_songspace
from ingest.pipeline import Ingestor
from search.settings import PROJECT_ROOT, load_settings
from tests.fakes import TRACKS, fake_services
from tests.ui.browser import BROWSER_ARGS, free_port, wait_healthy

DEFAULT = PROJECT_ROOT.parent / "shared" / "data" / "eval-dev" / "paired.csv"


def memory_mb(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    values = {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith(("VmRSS", "VmHWM"))}
    return {"rss_mb": values["VmRSS"] // 1024, "peak_rss_mb": values["VmHWM"] // 1024}


def main() -> None:
    from playwright.sync_api import expect, sync_playwright

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("catalogue", type=Path, nargs="?", default=DEFAULT)
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args()
    songs, _ = read_catalogue(args.catalogue)
    with fake_services() as services, tempfile.TemporaryDirectory(prefix="songspace-bench-") as folder:
        settings = replace(load_settings(), qdrant_url=None, qdrant_path=Path(folder) / "q", collection="bench")
        songspace = open_songspace(settings)
        Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False).run(args.catalogue)
        songspace.close()
        port = free_port()
        env = {**os.environ, **services.env(), "QDRANT_PATH": str(settings.qdrant_path), "QDRANT_COLLECTION": "bench"}
        env.pop("QDRANT_URL", None)
        app = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "ui/app.py", "--server.headless", "true", "--server.port",
             str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, app)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=BROWSER_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 1400})
                page.goto(url)
                box = page.get_by_label("Song title or artist")
                expect(box).to_be_visible(timeout=120_000)
                clicks, searches = [], []

                def clear_seeds() -> None:
                    """Each pick joins the page's seed basket: empty it, so each click recommends for one song."""
                    clear = page.get_by_role("button", name="Clear all seeds")
                    if clear.count():
                        clear.click()
                        expect(page.locator(".ss-card")).to_have_count(0, timeout=30_000)

                for song in songs[:: max(1, len(songs) // 6)][:6]:
                    clear_seeds()
                    box.fill(song.title)
                    box.press("Enter")
                    button = page.get_by_role("button", name=song.title, exact=False).first
                    expect(button).to_be_visible(timeout=30_000)
                    started = time.perf_counter()
                    button.click()
                    expect(page.get_by_text(f"Because you like {song.title}", exact=False)).to_be_visible(timeout=30_000)
                    expect(page.locator(".ss-card")).to_have_count(9, timeout=30_000)
                    clicks.append(time.perf_counter() - started)
                    searches.append(page.get_by_text(re.compile(r"^9 songs in \d+ ms$")).first.inner_text())
                clear_seeds()
                box.fill("harbour")
                box.press("Enter")
                spotify_button = page.get_by_role("button", name="Spotify, not in the catalogue yet").first
                expect(spotify_button).to_be_visible(timeout=30_000)
                started = time.perf_counter()
                spotify_button.click()
                expect(page.get_by_text("Because you like Harbour Lights")).to_be_visible(timeout=60_000)
                expect(page.locator(".ss-card")).to_have_count(9, timeout=30_000)
                unseen = time.perf_counter() - started
                if args.screenshot:
                    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
                    page.mouse.move(640, 400)
                    page.mouse.wheel(0, -10_000)
                    time.sleep(1)
                    page.screenshot(path=str(args.screenshot))
                browser.close()
            memory = memory_mb(app.pid)
        finally:
            os.killpg(app.pid, signal.SIGTERM)
            app.wait(timeout=30)
    print(json.dumps({
        "catalogue_songs": len(songs),
        "click_to_cards_s": [round(c, 3) for c in clicks],
        "median_click_to_cards_s": round(statistics.median(clicks), 3),
        "search_part_as_shown_on_the_page": searches,
        "unseen_spotify_song_to_cards_s": round(unseen, 3),
        "spotify_track": TRACKS[0].title,
        **memory,
    }, indent=2))


if __name__ == "__main__":
    main()
