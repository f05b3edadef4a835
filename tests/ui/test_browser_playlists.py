"""End to end in headless Chromium: a basket built by search, "More like this" and "Less like this"
re-ranking exactly as the library ranks the same seeds, each export downloaded and read, a Spotify
playlist pasted, a catalogue uploaded and loaded; and the README's screenshot of the basket."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path

from tests.fakes import ROAD_TRIP_ID
from tests.ui.browser import BROWSER_TEST, PROJECT, chromium, served_page
from tests.ui.oracle import expected_titles, point_ids
from tests.ui.test_loading import as_csv, covers_zip, forest_rows

pytestmark = BROWSER_TEST
# The README's screenshot is made by this test: SONGSPACE_SCREENSHOTS=docs writes it there (else to a temporary folder).
SCREENSHOTS = os.environ.get("SONGSPACE_SCREENSHOTS")


def shown(text: str) -> str:
    """Page text as a reader sees it (the word joiners that stop bare links are invisible)."""
    return text.replace("\u2060", "").strip()


def card_titles(page) -> list[str]:
    """The cards' titles in reading order."""
    return [shown(text) for text in page.locator(".ss-card h4").all_inner_texts()]


def wait_for_titles(page, expected: list[str], timeout: float = 60) -> float:
    """Wait until the cards show `expected`, in order; returns the seconds it took."""
    started = time.perf_counter()
    while card_titles(page) != expected:
        assert time.perf_counter() - started < timeout, f"cards {card_titles(page)} never became {expected}"
        page.wait_for_timeout(20)
    return time.perf_counter() - started


def download(page, label: str) -> str:
    with page.expect_download() as event:
        page.get_by_role("button", name=label).click()
    return Path(event.value.path()).read_text(encoding="utf-8")


def test_basket_rerank_exports_playlist_and_catalogue_load(catalogue_settings, services, tmp_path):
    from playwright.sync_api import expect

    settings = catalogue_settings
    ids = point_ids(settings)
    alone = expected_titles(settings, ["Sea Song 0"])
    with_city = expected_titles(settings, ["Sea Song 0", "City Song 1"])
    without_sea2 = expected_titles(settings, ["Sea Song 0", "City Song 1"], ["Sea Song 2"])
    catalogue, covers = tmp_path / "forest.csv", tmp_path / "forest-covers.zip"
    catalogue.write_bytes(as_csv(forest_rows(6)))
    covers.write_bytes(covers_zip(6))
    timings = {}
    screenshot = (PROJECT / SCREENSHOTS if SCREENSHOTS else tmp_path) / "screenshot-basket.png"

    with served_page(settings, services) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1500}, accept_downloads=True)
        page.goto(url)
        search = page.get_by_label("Song title or artist")
        search.fill("sea song 0")
        search.press("Enter")
        page.get_by_role("button", name="Sea Song 0 — Sea Band 0").click()
        wait_for_titles(page, alone, timeout=120)

        page.locator(f".st-key-card-{ids['City Song 1']}").get_by_role("button", name="More like this").click()
        timings["more"] = wait_for_titles(page, with_city)
        page.locator(f".st-key-card-{ids['Sea Song 2']}").get_by_role("button", name="Less like this").click()
        timings["less"] = wait_for_titles(page, without_sea2)
        expect(page.get_by_role("heading", name="Because you like Sea Song 0 — Sea Band 0 and City Song 1 — City Band 1, "
                                "and not Sea Song 2 — Sea Band 0")).to_be_visible()
        expect(page.get_by_text("Your seeds: 2 liked, 1 disliked")).to_be_visible()
        search.fill("")  # the search's buttons out of the picture
        search.press("Enter")
        expect(page.get_by_text("Each song you pick joins your seeds")).to_be_visible()
        assert card_titles(page) == without_sea2  # the basket survives reruns
        page.locator('[data-testid="stMain"]').evaluate("main => main.scrollTo(0, 0)")
        page.wait_for_timeout(500)  # let the covers finish drawing
        page.screenshot(path=str(screenshot), clip={"x": 0, "y": 0, "width": 1280, "height": 1150})

        table = list(csv.DictReader(io.StringIO(download(page, "Download CSV"))))
        assert [row["title"] for row in table] == without_sea2 and [row["rank"] for row in table] == [str(r) for r in range(1, 7)]
        m3u8 = download(page, "Download M3U8").splitlines()
        assert m3u8[:2] == ["#EXTM3U", "#PLAYLIST:Songspace: Because you like Sea Song 0 — Sea Band 0 and City Song 1 — "
                            "City Band 1, and not Sea Song 2 — Sea Band 0"]
        assert [line.split(" - ", 1)[1] for line in m3u8 if line.startswith("#EXTINF:")] == without_sea2
        jspf = json.loads(download(page, "Download JSPF"))
        assert [track["title"] for track in jspf["playlist"]["track"]] == without_sea2

        page.get_by_role("tab", name="Spotify playlist or album").click()
        page.get_by_label("Spotify playlist or album link").fill(f"https://open.spotify.com/playlist/{ROAD_TRIP_ID}")
        page.get_by_label("Spotify playlist or album link").press("Enter")
        started = time.perf_counter()
        page.get_by_role("button", name="Add its songs as seeds").click()
        expect(page.locator('[data-testid="stProgress"]')).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Your seeds: 102 liked, 1 disliked")).to_be_visible(timeout=300_000)
        timings["playlist"] = time.perf_counter() - started
        said = shown(page.locator('[data-testid="stAlertContentInfo"]').inner_text())
        assert "playlist 'Road Trip': 100 of its songs are seeds" in said
        assert "only its first 100 songs were taken; it has 123 entries" in said
        expect(page.locator(".ss-card")).to_have_count(6)  # 109 songs, 103 of them seeds

        page.get_by_role("tab", name="Load a catalogue").click()
        page.locator(".st-key-load_file input[type=file]").set_input_files(str(catalogue))
        page.locator(".st-key-load_covers input[type=file]").set_input_files(str(covers))
        expect(page.get_by_text("forest-covers.zip")).to_be_visible()
        started = time.perf_counter()
        page.get_by_role("button", name="Load the catalogue").click()
        loaded = page.locator('[data-testid="stAlertContentSuccess"]')
        expect(loaded).to_be_visible(timeout=120_000)
        timings["load"] = time.perf_counter() - started
        assert shown(loaded.inner_text()).startswith("Loaded forest.csv:")
        assert "read 6 inserted 6 updated 0 unchanged 0 rejected 0" in loaded.inner_text()
        page.get_by_role("tab", name="Find a song").click()
        search.fill("forest song 4")
        search.press("Enter")
        expect(page.get_by_role("button", name="Forest Song 4 — Woodland Choir 1")).to_be_visible(timeout=30_000)

    print(
        f"\nre-rank, click to cards: more like this {1000 * timings['more']:.0f} ms, less like this "
        f"{1000 * timings['less']:.0f} ms; playlist of 100 added in {timings['playlist']:.1f} s; "
        f"catalogue of 6 loaded in {timings['load']:.1f} s"
    )
    assert screenshot.stat().st_size > 20_000
