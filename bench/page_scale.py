"""The page at catalogue scale: how long it takes to be ready, and to answer a title search.

A synthetic catalogue (bench/synthetic.py; 100,000 songs by default) is loaded into a fresh Edge
store, or an existing one is reused (`--store`). The page is started as `./start.sh` starts it;
`ready_s` runs from the process's start to the first full render in headless Chromium (the
sidebar showing the song count: the store opened, both encoders loaded, the title index built).
Title searches are then typed into the search box: `title_search_s` runs from Enter to the
matching button on screen. `find_ms` is the title index's own time for the same queries.

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

from bench import synthetic
from search.index import open_index
from search.settings import PROJECT_ROOT, Settings
from search.titles import TitleIndex
from tests.ui.test_browser import BROWSER_ARGS, free_port, wait_healthy

QUERIES = ["Sea night 1207", "Gold rain 48311", "fire road 90210", "Artist 4242", "hom dust 77777"]


def main() -> None:
    from playwright.sync_api import expect, sync_playwright

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
        for query in QUERIES * 3:
            started = time.perf_counter()
            titles.find(query)
            finds.append(time.perf_counter() - started)
        index.close()

        port = free_port()
        env = {**os.environ, "QDRANT_ENGINE": "edge", "QDRANT_PATH": str(store), "QDRANT_COLLECTION": "songs",
               "SONGSPACE_CACHE_DIR": str(Path(folder) / "cache")}
        env.pop("QDRANT_URL", None)
        started = time.perf_counter()
        app = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "ui/app.py", "--server.headless", "true", "--server.port",
             str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, app)
            healthy_s = time.perf_counter() - started
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=BROWSER_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(url)
                expect(page.get_by_text(f"{songs:,}".replace(",", ""), exact=False).first).to_be_visible(timeout=120_000)
                box = page.get_by_label("Song title or artist")
                expect(box).to_be_visible(timeout=60_000)
                ready_s = time.perf_counter() - started
                searches = []
                for query in QUERIES:
                    box.fill(query)
                    begun = time.perf_counter()
                    box.press("Enter")
                    expect(page.get_by_role("button", name=query.split()[0], exact=False).first).to_be_visible(timeout=30_000)
                    searches.append(time.perf_counter() - begun)
                browser.close()
        finally:
            os.killpg(app.pid, signal.SIGTERM)
            app.wait(timeout=30)
    results = {
        "songs": songs,
        "engine": "edge",
        "machine": f"{os.cpu_count()} cores",
        "healthy_s": round(healthy_s, 2),
        "ready_s": round(ready_s, 2),
        "title_index_build_s": round(titles_s, 2),
        "title_search_s": [round(s, 3) for s in searches],
        "median_title_search_s": round(statistics.median(searches), 3),
        "find_ms_p50": round(1000 * statistics.median(finds), 1),
        "find_ms_max": round(1000 * max(finds), 1),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
