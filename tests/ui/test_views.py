"""Outside text on the page: whatever it holds, a CommonMark renderer shows it as the text itself, and
nothing in it is left for the bare-link and emoji passes that run on decoded text."""

from __future__ import annotations

import html
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from ui.views import excerpt_html, safe_text

MARKDOWN = MarkdownIt("commonmark").enable(["table", "strikethrough"])
# Text that is mostly what Markdown and HTML react to, with line breaks, indents and any other characters.
OUTSIDE_TEXT = st.text(
    st.sampled_from(list("\\`*_[]()!#+-.:|~$<>&\"'=@^{}/;0123456789 \t\n\r")) | st.characters(exclude_categories=("Cs", "Cc")),
    max_size=40,
)


# What GFM's autolink extension and emoji codes look for in the decoded text (Streamlit runs both).
DECODED_TRIGGERS = re.compile(r"(?i)https?://|www\.|[\w.+-]@[\w-]|:[\w+-]+:")


def visible(rendered: str) -> str:
    """The text a reader sees (word joiners are invisible)."""
    return html.unescape(re.sub(r"<[^>]+>", "", rendered)).replace("\u2060", "").strip()


def plain(text: str) -> str:
    return " ".join(text.split()).replace("\u2060", "")


@given(OUTSIDE_TEXT)
@settings(max_examples=400, deadline=None)
def test_in_markdown_it_is_one_paragraph_of_its_own_text(text):
    tokens = [token.type for token in MARKDOWN.parse(safe_text(text))]
    assert tokens == ([] if not " ".join(text.split()) else ["paragraph_open", "inline", "paragraph_close"])
    assert visible(MARKDOWN.render(safe_text(text))) == plain(text)


@given(OUTSIDE_TEXT)
@settings(max_examples=400, deadline=None)
def test_inside_an_html_block_it_never_ends_the_block(text):
    card = f'<div class="ss-card"><h4>{safe_text(text)}</h4><div class="ss-excerpt">{excerpt_html(text)}</div></div>'
    assert [token.type for token in MARKDOWN.parse(card)] == ["html_block"]
    assert visible(MARKDOWN.render(f"<h4>{safe_text(text)}</h4>")) == plain(text)


@given(OUTSIDE_TEXT | st.sampled_from(["www.evil.com", "see https://evil.example/x", "a@evil.com", ":smile:", "WWW.E.COM"]))
@settings(max_examples=400, deadline=None)
def test_no_bare_link_or_emoji_code_survives_decoding(text):
    assert not DECODED_TRIGGERS.search(html.unescape(safe_text(text)))


def test_the_status_says_whether_each_modality_is_centred():
    from ui.views import centring_lines

    assert centring_lines({}, 32, 512) == [
        "lyrics: not centred yet: needs 32 songs with lyrics",
        "cover: not centred yet: needs 32 songs with a cover",
    ]
    assert centring_lines({"lyrics": {"songs": 512, "final": True}, "cover": {"songs": 40, "final": False}}, 32, 512) == [
        "lyrics: centred (final, from 512 songs)",
        "cover: centred on 40 songs (learned again as songs arrive, until 512)",
    ]


MALFORMED_LINKS = [
    "http://[::1",  # urlsplit raises on it
    "https://open.spotify.com/track/x\n\n[tap here](https://evil.example)",  # a blank line would end the card's HTML block
    "https://open.spotify.com/track/x\r\n<b>bold</b>",
    "https://open.spotify.com/\u2028track",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "https:///no-host",
    42,
]


def test_a_catalogue_link_that_is_not_a_plain_http_url_is_left_out_of_the_card():
    from search.recommend import Recommendation
    from ui.views import card_html, cover_source, safe_link

    assert safe_link("https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC") == "https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC"
    for url in MALFORMED_LINKS:
        assert safe_link(url) is None, url
        payload = {"spotify_url": url, "spotify_id": "4uLU6hMCjMI75M1A2tKUQC", "cover_hash": "h", "cover_url": url}
        card = card_html(Recommendation("p", None, "Title", ["Artist"], 0.5, 0.5, None, None, payload))
        assert [token.type for token in MARKDOWN.parse(card)] == ["html_block"] and "href" not in card
        assert cover_source(payload) is None
