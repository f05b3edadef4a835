"""The page, driven by Streamlit's AppTest on a small real catalogue, with the loopback fakes."""

from __future__ import annotations

import html
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from search.index import open_index
from tests.conftest import CITY_LYRICS, make_cover, store_settings
from tests.fakes import HOSTILE_TITLE, TRACKS
from tests.ui.apptest import APP, card_scores, card_titles, cards, pick_by_title, use
from tests.ui.oracle import point_ids


def test_search_pick_and_recommend(monkeypatch, catalogue_settings, app):
    use(monkeypatch, catalogue_settings)
    app.run()
    assert not app.exception
    assert app.sidebar.markdown[0].value.startswith("**9** songs in ")  # songs in the store
    assert any("cover encoder" in c.value for c in app.sidebar.caption)  # which encoder, and why
    pick_by_title(app, "sea sng 1", "Sea Song 1")  # a typo, different case
    titles = card_titles(app)
    assert len(titles) == 8 and "Sea Song 1" not in titles  # never the seed itself
    assert titles[0].startswith("Sea Song")
    assert any(m.value == "#### Because you like Sea Song 1 — Sea Band 1" for m in app.markdown)


def test_slider_changes_the_order(monkeypatch, catalogue_settings, app):
    use(monkeypatch, catalogue_settings)
    app.run()
    pick_by_title(app, "Sea Song 0", "Sea Song 0")
    by_lyrics = card_titles(app)
    app.slider(key="lyrics_weight").set_value(0.0).run()
    by_cover = card_titles(app)
    assert by_lyrics != by_cover
    cover_scores = card_scores(app, "cover")
    assert cover_scores == sorted(cover_scores, reverse=True)  # ranked by cover alone


def test_exclude_artist_and_genre_filter(monkeypatch, catalogue_settings, app):
    use(monkeypatch, catalogue_settings)
    app.run()
    pick_by_title(app, "Sea Song 0", "Sea Song 0")
    app.checkbox(key="exclude_artist").check().run()
    assert "Sea Song 2" not in card_titles(app)  # same artist as Sea Song 0
    app.multiselect(key="genres").select("city").run()
    assert card_titles(app) and all(t.startswith("City") or t == HOSTILE_TITLE.replace("<", "&lt;").replace(">", "&gt;") for t in card_titles(app))


def test_theme_search(monkeypatch, catalogue_settings, app):
    use(monkeypatch, catalogue_settings)
    app.run()
    app.text_input(key="theme").input("sailors on the ocean waves").run()
    app.button(key="theme-go").click().run()
    assert card_titles(app)[0].startswith("Sea Song")


def test_add_by_hand(monkeypatch, catalogue_settings, app):
    use(monkeypatch, catalogue_settings)
    app.run()
    app.text_input(key="add_title").input("Skyline Nights")
    app.text_input(key="add_artist").input("Tower Tones")
    app.text_area(key="add_lyrics").input(CITY_LYRICS[1] + " and " + CITY_LYRICS[2])
    app.file_uploader(key="add_cover").upload("cover.png", make_cover((90, 90, 90), 11), "image/png")
    app.form_submit_button[0].click().run()
    assert not app.exception
    assert any("added: lyrics given; cover uploaded" in i.value for i in app.info)
    assert card_titles(app)[0].startswith("City Song")
    pick_by_title(app, "skyline nights", "Skyline Nights")  # now in the catalogue


def test_hostile_title_is_escaped(monkeypatch, catalogue_settings, app):
    use(monkeypatch, catalogue_settings)
    app.run()
    pick_by_title(app, "City Song 0", "City Song 0")
    html = "".join(m.value for m in app.markdown)
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img src=x" not in html
    assert "second line" in html and "<br>" in html  # excerpts keep their line breaks


def test_unseen_spotify_song_is_added_and_recommends(monkeypatch, catalogue_settings, services, app):
    use(monkeypatch, catalogue_settings, services)
    app.run()
    app.text_input(key="query").input("harbour").run()
    assert any("not in the catalogue yet" in b.label for b in app.button)
    app.button(key=f"spotify-{TRACKS[0].id}").click().run()
    assert not app.exception
    assert any("added to the catalogue: lyrics from LRCLIB; cover from Spotify" in i.value for i in app.info)
    assert card_titles(app)[0].startswith("Sea Song")
    app.text_input(key="query").input("harbour lights").run()
    assert any(b.label.startswith("Harbour Lights") and "in the catalogue" in b.label for b in app.button)


def test_unseen_instrumental_says_cover_only(monkeypatch, catalogue_settings, services, app):
    use(monkeypatch, catalogue_settings, services)
    app.run()
    app.text_input(key="query").input("ambient drift").run()
    app.button(key=f"spotify-{TRACKS[3].id}").click().run()
    assert any("recommended by cover only" in i.value for i in app.info)
    assert card_titles(app)


def test_no_spotify_credentials_is_explained(monkeypatch, catalogue_settings, app):
    use(monkeypatch, catalogue_settings)
    app.run()
    app.text_input(key="query").input("anything").run()
    assert any("SPOTIPY_CLIENT_ID" in c.value for c in app.caption)


@pytest.mark.parametrize(
    "fault, message",
    [((503, {}, None), "try again later"), ((429, {"Retry-After": "3600"}, None), "rate limit")],
)
def test_spotify_down_or_rate_limited_is_a_short_message(monkeypatch, catalogue_settings, services, app, fault, message):
    use(monkeypatch, catalogue_settings, services)
    services.faults["/v1/search"] = [fault] * 6
    app.run()
    app.text_input(key="query").input("harbour").run()
    assert not app.exception
    assert any(message in w.value for w in app.warning)


def test_unreachable_server(monkeypatch, tmp_path, app):
    use(monkeypatch, store_settings("edge", tmp_path))
    monkeypatch.setenv("QDRANT_URL", "http://127.0.0.1:9")
    app.run()
    assert not app.exception
    assert "unreachable" in app.error[0].value and "docker compose" in app.error[0].value


def test_locked_store(monkeypatch, catalogue_settings, app):
    use(monkeypatch, catalogue_settings)
    holder = open_index(catalogue_settings)
    try:
        app.run()
    finally:
        holder.close()
    assert not app.exception
    assert "open in another process" in app.error[0].value


def test_empty_catalogue_points_to_ingestion(monkeypatch, tmp_path, app):
    use(monkeypatch, store_settings("edge", tmp_path))
    app.run()
    assert not app.exception
    assert "python -m ingest" in app.warning[0].value


LINK_TITLE = "[x](https://evil)"
BLANK_LINE_TITLE = "Top line\n\n**Bottom** line"


def rendered(markdown: str) -> str:
    """Markdown as a CommonMark renderer turns it into HTML, raw HTML let through as st.markdown(unsafe_allow_html=True) does."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)


def visible(markdown: str) -> str:
    """The text a reader sees once the Markdown is rendered (word joiners are invisible)."""
    return html.unescape(re.sub(r"<[^>]+>", "", rendered(markdown))).replace("\u2060", "").strip()


def block_types(markdown: str) -> list[str]:
    from markdown_it import MarkdownIt

    return [token.type for token in MarkdownIt("commonmark").parse(markdown) if token.level == 0]


@pytest.fixture
def markdown_settings(tmp_path, themed_rows, write_catalogue):
    """The themed songs, one titled like a Markdown link and one whose title has a blank line in it."""
    from ingest.context import open_songspace
    from ingest.pipeline import Ingestor
    from tests.conftest import SEA_LYRICS

    settings = store_settings("embedded", tmp_path)
    rows = themed_rows + [
        {"id": "md-link", "title": LINK_TITLE, "artist": "Mallory", "genre": "sea",
         "lyrics": SEA_LYRICS[0] + "\n[tap here](https://evil)", "cover_path": "sea0.png"},
        {"id": "md-blank", "title": BLANK_LINE_TITLE, "artist": "Eve", "genre": "sea", "lyrics": SEA_LYRICS[1], "cover_path": "sea1.png"},
    ]
    songspace = open_songspace(settings)
    Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False).run(write_catalogue(rows, "catalogue.jsonl"))
    titles = {payload["title"] for _, payload in songspace.index.scroll_payloads(["title"])}
    songspace.close()
    assert {LINK_TITLE, BLANK_LINE_TITLE} <= titles  # stored as given, so the page must cope
    return settings


def test_markdown_in_titles_makes_no_links_or_elements(monkeypatch, markdown_settings, app):
    ids = point_ids(markdown_settings)
    use(monkeypatch, markdown_settings)
    app.run()
    app.text_input(key="query").input("evil").run()
    labels = [button.label for button in app.button]
    assert labels and all("<a " not in rendered(label) for label in labels)
    next(b for b in app.button if visible(b.label).startswith(LINK_TITLE)).click().run()
    assert not app.exception
    heading = next(m.value for m in app.markdown if "Because you like" in m.value)
    assert "<a " not in rendered(heading)
    assert visible(heading) == f"Because you like {LINK_TITLE} — Mallory"  # shown as typed
    assert len(cards(app)) == 9
    for card in cards(app):
        assert block_types(card) == ["html_block"]  # one HTML block each: nothing ended it early
        assert "<a " not in rendered(card) and "<strong>" not in rendered(card)
    assert "Top line **Bottom** line" in [html.unescape(title) for title in card_titles(app)]
    (seed,) = [m.value for m in app.markdown if m.value.startswith(":material/thumb_up:")]  # the basket's entry
    assert "<a " not in rendered(seed) and visible(seed).endswith(f"{LINK_TITLE} — Mallory")
    app.button(key=f"less-{ids[BLANK_LINE_TITLE]}").click().run()
    heading = next(m.value for m in app.markdown if "Because you like" in m.value)
    assert block_types(heading) == ["heading_open", "heading_close"]  # one heading: the blank line ended nothing
    assert visible(heading) == f"Because you like {LINK_TITLE} — Mallory, and not Top line **Bottom** line — Eve"


def test_markdown_in_an_error_message_is_text(monkeypatch, catalogue_settings, app):
    use(monkeypatch, catalogue_settings)
    app.run()
    app.text_input(key="add_title").input(LINK_TITLE)
    app.text_input(key="add_artist").input("Mallory")
    app.form_submit_button[0].click().run()  # no lyrics, no cover: refused, naming the title
    (warning,) = app.warning
    assert "<a " not in rendered(warning.value)
    assert LINK_TITLE in visible(warning.value)


def test_a_refused_upload_is_a_message_and_stores_nothing(monkeypatch, catalogue_settings, app):
    use(monkeypatch, catalogue_settings)
    app.run()
    assert app.file_uploader(key="add_cover").proto.max_upload_size_mb == 10  # COVER_MAX_BYTES, in MiB
    app.text_input(key="add_title").input("Skyline Nights")
    app.text_input(key="add_artist").input("Tower Tones")
    app.text_area(key="add_lyrics").input(CITY_LYRICS[1])
    app.file_uploader(key="add_cover").upload("cover.png", b"<svg onload=alert(1)> named cover.png", "image/png")
    app.form_submit_button[0].click().run()
    assert not app.exception
    assert any("uploaded cover cannot be used" in w.value for w in app.warning)
    assert not cards(app)
    assert not (catalogue_settings.cache_dir / "uploads").exists()


def test_the_page_server_caps_uploads_at_a_cover():
    from search.settings import Settings

    project = Path(APP).parents[1]
    shown = subprocess.run(
        [sys.executable, "-m", "streamlit", "config", "show"], cwd=project, capture_output=True, text=True, check=True
    ).stdout
    cap_mib = int(re.search(r"^maxUploadSize = (\d+)$", shown, re.MULTILINE)[1])
    assert cap_mib == math.ceil(Settings().cover_max_bytes / 2**20)


def test_the_page_imports_model_libraries_only_when_it_embeds_and_then_freezes_them(monkeypatch, catalogue_settings):
    # torch and torchvision take 5 s to import: the page starts without them and loads them only
    # when a song must be embedded (here a description). What the process loaded for good is kept
    # from the cycle collector, at start and again after the models load.
    script = (
        "import gc, sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        "from tests.ui.apptest import APP, card_titles, pick_by_title\n"
        "libraries = lambda: sorted(m for m in ('torch', 'torchvision', 'transformers', 'timm') if m in sys.modules)\n"
        "app = AppTest.from_file(APP, default_timeout=120).run()\n"
        "pick_by_title(app, 'Sea Song 1', 'Sea Song 1')\n"
        "assert card_titles(app) and not app.exception\n"
        "print(libraries(), gc.get_freeze_count() > 0)\n"
        "frozen = gc.get_freeze_count()\n"
        "app.text_input(key='theme').input('sailors on the ocean waves').run()\n"
        "app.button(key='theme-go').click().run()\n"
        "assert card_titles(app)[0].startswith('Sea Song') and not app.exception\n"
        "print('torch' in sys.modules, gc.get_freeze_count() > frozen)\n"
    )
    use(monkeypatch, catalogue_settings)
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(APP).parents[1], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-2:] == ["[] True", "True True"]
