"""The page at catalogue scale: how long it takes to be ready, and to answer a title search.

A synthetic catalogue (bench/synthetic.py; 100,000 songs by default) is loaded into a fresh Edge
store, or an existing one is reused (`--store`). The page is started as `./start.sh` starts it;
`ready_s` runs from the process's start to the page in headless Chromium showing its search box
and the song count (the browser was started before); the title index is loaded by then. Title
searches are then typed into the search box at once: each runs from Enter to the matching song's
button on screen; `first_title_search_s` is the first, `title_search_s` the ones after it.
`find_ms` is the title index's own time for the same queries, each of which must find its song first.

Run: .venv/bin/python -m bench.page_scale [--songs 100000] [--store FOLDER] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
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
from typing import Any

from bench import synthetic
from bench.report import report
from search.index import open_index
from search.settings import PROJECT_ROOT, Settings
from search.titles import TitleIndex
from tests.ui.browser import BROWSER_ARGS, free_port, wait_healthy



def title_of(i: int) -> str:
    """Synthetic song i's title (bench/synthetic.py)."""
    return f"{synthetic.WORDS[i % len(synthetic.WORDS)].title()} {synthetic.WORDS[(i // 12) % len(synthetic.WORDS)]} {i}"


# Typed as a person would: whole titles, a typo, lower case, a title with its artist.
QUERIES = [
    (title_of(1207), title_of(1207)),
    (title_of(48311).lower(), title_of(48311)),
    (title_of(90210).replace("i", "", 1), title_of(90210)),
    (f"{title_of(777)} artist 777", title_of(777)),
    (title_of(65432)[:-1] + "3", title_of(65432)),
]


def measure_page(browser: Any, store: Path, folder: Path, songs: int) -> tuple[float, float, list[float]]:
    """Start the page on the store and time it: healthy, ready in the browser, and title searches."""
    from playwright.sync_api import expect

    port = free_port()
    env = {**os.environ, "QDRANT_ENGINE": "edge", "QDRANT_PATH": str(store), "QDRANT_COLLECTION": "songs",
           "SONGSPACE_CACHE_DIR": str(folder / "cache")}
    env.pop("QDRANT_URL", None)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    started = time.perf_counter()
    app = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "ui/app.py", "--server.headless", "true", "--server.port",
         str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, app)
        healthy_s = time.perf_counter() - started
        page.goto(url)
        box = page.get_by_label("Song title or artist")
        expect(box).to_be_visible(timeout=120_000)
        expect(page.get_by_text(f"{songs} songs", exact=False).first).to_be_visible(timeout=120_000)
        ready_s = time.perf_counter() - started
        searches = []
        for query, title in [QUERIES[-1], *QUERIES]:
            box.fill(query)
            begun = time.perf_counter()
            box.press("Enter")
            # A selector wait watches the page's changes; an expect() polls at up to 1 s intervals.
            page.wait_for_selector(f"button:has-text({json.dumps(title)})", timeout=30_000)
            searches.append(time.perf_counter() - begun)
        return healthy_s, ready_s, searches
    finally:
        os.killpg(app.pid, signal.SIGTERM)
        app.wait(timeout=30)


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--songs", type=int, default=100_000)
    parser.add_argument("--store", type=Path, help="an Edge store folder holding collection 'songs' (built if missing)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="songspace-page-") as folder:
        store = args.store or Path(folder) / "store"
        settings = replace(Settings(), engine="edge", qdrant_path=store, collection="songs")
        index = open_index(settings)
        if not index.exists():
            index.close()
            index, _ = synthetic.build_store(settings, synthetic.generate(args.songs))
        songs = index.count()
        titles = TitleIndex(index)
        started = time.perf_counter()
        titles.refresh()
        titles_s = time.perf_counter() - started
        finds = []
        for query, title in QUERIES * 3:
            started = time.perf_counter()
            found = titles.find(query)
            finds.append(time.perf_counter() - started)
            first = [m.title for m in found[:1]]
            assert first == [title], f"{query!r} found {first}, not {title!r}"
        index.close()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=BROWSER_ARGS)
            healthy_s, ready_s, searches = measure_page(browser, store, Path(folder), songs)
            browser.close()
    results = {
        "songs": songs,
        "engine": "edge",
        "machine": f"{os.cpu_count()} cores",
        "healthy_s": round(healthy_s, 2),
        "ready_s": round(ready_s, 2),
        "title_index_build_s": round(titles_s, 2),
        "first_title_search_s": round(searches[0], 3),
        "title_search_s": [round(s, 3) for s in searches[1:]],
        "median_title_search_s": round(statistics.median(searches[1:]), 3),
        "find_ms_p50": round(1000 * statistics.median(finds), 1),
        "find_ms_max": round(1000 * max(finds), 1),
    }
    report(results, args.json)


if __name__ == "__main__":
    main()
