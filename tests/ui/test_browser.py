"""One end-to-end run in headless Chromium: search, pick, recommend, add an unseen song, escaping."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.fakes import HOSTILE_TITLE

PROJECT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"),
]
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the app exited: {process.communicate()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("the app did not become healthy")


@pytest.fixture
def running_app(catalogue_settings, services):
    port = free_port()
    env = {
        **os.environ,
        **services.env(),
        "QDRANT_PATH": str(catalogue_settings.qdrant_path),
        "QDRANT_COLLECTION": catalogue_settings.collection,
        "SONGSPACE_CACHE_DIR": str(catalogue_settings.cache_dir),
    }
    env.pop("QDRANT_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "ui/app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_search_pick_add_unseen_and_escaping(running_app, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        dialogs = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(running_app)
        expect(page.get_by_text("Songspace").first).to_be_visible(timeout=90_000)

        search = page.get_by_label("Song title or artist")
        search.fill("city sng 0")
        search.press("Enter")
        page.get_by_role("button", name="City Song 0").first.click()
        expect(page.get_by_text("Because you chose")).to_be_visible(timeout=60_000)
        expect(page.locator(".ss-card")).to_have_count(8)
        # The hostile title is shown as text, and no element was made from it.
        expect(page.locator(".ss-card h4", has_text=HOSTILE_TITLE)).to_have_count(1)
        assert page.locator('img[src="x"]').count() == 0

        search.fill("harbour")
        search.press("Enter")
        page.get_by_role("button", name="Spotify, not in the catalogue yet").first.click()
        expect(page.get_by_text("added to the catalogue")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Because you chose: Harbour Lights")).to_be_visible()
        expect(page.locator(".ss-card")).to_have_count(9)  # k = 9 of the 9 others
        page.screenshot(path=str(tmp_path / "songspace.png"))

        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.goto(running_app)
        expect(phone.get_by_label("Song title or artist")).to_be_visible(timeout=60_000)
        phone.get_by_label("Song title or artist").fill("Sea Song 2")
        phone.get_by_label("Song title or artist").press("Enter")
        phone.get_by_role("button", name="Sea Song 2").first.click()
        expect(phone.locator(".ss-card").first).to_be_visible(timeout=60_000)
        box = phone.locator(".ss-card").first.bounding_box()
        assert box is not None and box["width"] <= 390  # cards fit a phone's width
        phone.screenshot(path=str(tmp_path / "songspace-phone.png"))
        browser.close()
    assert dialogs == []  # no script ran
    assert (tmp_path / "songspace.png").stat().st_size > 10_000
