"""One end-to-end run in headless Chromium: search, pick, recommend, add an unseen song, escaping."""

from __future__ import annotations

import pytest

from tests.fakes import HOSTILE_TITLE
from tests.ui.browser import BROWSER_TEST, chromium, served_page

pytestmark = BROWSER_TEST


@pytest.fixture
def running_app(catalogue_settings, services):
    with served_page(catalogue_settings, services) as url:
        yield url


def test_search_pick_add_unseen_and_escaping(running_app, tmp_path):
    from playwright.sync_api import expect

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        dialogs = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(running_app)
        expect(page.get_by_text("Songspace").first).to_be_visible(timeout=90_000)

        search = page.get_by_label("Song title or artist")
        search.fill("city sng 0")
        search.press("Enter")
        found = page.get_by_role("button", name="City Song 0").first
        expect(found).to_be_visible(timeout=60_000)
        # Clearing the box and picking at once: the search tab's rerun no longer draws the button,
        # and the pick must still reach the whole page.
        search.fill("")
        found.click()
        expect(page.get_by_text("Because you like City Song 0")).to_be_visible(timeout=60_000)
        expect(page.locator(".ss-card")).to_have_count(8)
        # The hostile title is shown as text, and no element was made from it.
        expect(page.locator(".ss-card h4", has_text=HOSTILE_TITLE)).to_have_count(1)
        assert page.locator('img[src="x"]').count() == 0

        search.fill("harbour")
        search.press("Enter")
        page.get_by_role("button", name="Spotify, not in the catalogue yet").first.click()
        expect(page.get_by_text("added to the catalogue")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Because you like City Song 0 — City Band 0 and Harbour Lights")).to_be_visible()
        expect(page.locator(".ss-card")).to_have_count(8)  # k = 9, but 8 of the 10 others are left
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
    assert dialogs == []  # no script ran
    assert (tmp_path / "songspace.png").stat().st_size > 10_000
