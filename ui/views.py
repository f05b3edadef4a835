"""Small view helpers for the page: outside text escaped for Markdown and HTML, cards, score bars, the page's style."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from search.recommend import Recommendation

STYLE = """
<style>
  .block-container { max-width: 1180px; padding-top: 3.2rem; }
  .ss-header { display: flex; align-items: baseline; gap: .8rem; flex-wrap: wrap; margin-bottom: .4rem; }
  .ss-title { font-size: 2.4rem; font-weight: 800; line-height: 1.1; letter-spacing: -.02em;
               background: linear-gradient(90deg, #7b5cff, #ff5c8a); -webkit-background-clip: text;
               background-clip: text; -webkit-text-fill-color: transparent; }
  .ss-header span { color: #8a8aa0; font-size: .95rem; }
  .ss-card h4 { margin: .3rem 0 0; font-size: 1.02rem; line-height: 1.25; word-break: break-word; }
  .ss-card .meta { color: #8a8aa0; font-size: .85rem; margin-bottom: .35rem; word-break: break-word; }
  .ss-bar { display: flex; align-items: center; gap: .4rem; font-size: .75rem; color: #8a8aa0; }
  .ss-bar .track { flex: 1; height: 6px; border-radius: 3px; background: rgba(128,128,160,.2); }
  .ss-bar .fill { height: 6px; border-radius: 3px; }
  .ss-bar .fill.lyrics { background: #7b5cff; } .ss-bar .fill.cover { background: #ff5c8a; }
  .ss-score { font-weight: 600; font-size: .85rem; margin-top: .2rem; }
  .ss-tag { display: inline-block; font-size: .7rem; padding: 0 .4rem; border-radius: .6rem;
            background: rgba(123,92,255,.15); color: #7b5cff; margin-right: .25rem; }
  .ss-excerpt { font-size: .8rem; color: #8a8aa0; max-height: 6.5em; overflow: hidden; }
</style>
"""


# What HTML and Markdown give a meaning to, as character references, which both show as the character.
# Markdown's share: escapes, code, emphasis, links and images (and Streamlit's :color[...]), headings,
# list markers and rules, bare www. and http: links, tables, strikethrough, math, :emoji: and icons.
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"} | {
    char: f"&#{ord(char)};" for char in "\\`*_[]!#+-.:|~$"
}
_SPECIAL = re.compile("[" + re.escape("".join(_ESCAPES)) + "]")
_LIST_START = re.compile(r"^(\d+)\)")  # "1) Intro" opening a label is a list item
# Bare links (www., http://, name@host) and :emoji: codes are found in the decoded text, so references
# do not stop them; an invisible word joiner after "www", ":" and "@" does.
_DECODED_MARKUP = re.compile(r"(?i)www(?=\.)|[:@]")
# Whitespace and control characters have no place in a URL (browsers drop some of them, Markdown
# ends blocks at others).
_NOT_IN_LINKS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


def safe_text(value: Any) -> str:
    """Outside text for any Markdown or HTML on the page: escaped for both, on one line.

    One line because the page's text is inline, and a blank line inside an HTML block ends the block.
    """
    flat = _DECODED_MARKUP.sub(lambda found: found[0] + "\u2060", " ".join(str(value).split()))
    return _LIST_START.sub(r"\1&#41;", _SPECIAL.sub(lambda found: _ESCAPES[found[0]], flat))


def song_label(title: str, artists: list[str]) -> str:
    """How a song is named on the page and in the basket: "Title — Artist, Artist" (outside text, unescaped)."""
    return f"{title} — {', '.join(artists) or 'unknown artist'}"


def centring_lines(centring: dict[str, dict[str, Any]], needed: int, final: int) -> list[str]:
    """Whether each modality is centred, for the status: `centring` as SongIndex.centring() gives it,
    `needed` songs to learn a centre, `final` songs after which it no longer changes."""
    lines = []
    for modality, songs_with in (("lyrics", "lyrics"), ("cover", "a cover")):
        centre = centring.get(modality)
        if centre is None:
            lines.append(f"{modality}: not centred yet: needs {needed} songs with {songs_with}")
        elif centre["final"]:
            lines.append(f"{modality}: centred (final, from {centre['songs']} songs)")
        else:
            lines.append(f"{modality}: centred on {centre['songs']} songs (learned again as songs arrive, until {final})")
    return lines


def excerpt_html(lyrics: str, max_lines: int = 6) -> str:
    """Lyrics as escaped text that keeps its line breaks and nothing else."""
    lines = [line for line in lyrics.splitlines() if line.strip()][:max_lines]
    return "<br>".join(safe_text(line) for line in lines)


def safe_link(url: Any) -> str | None:
    """The URL if it is an http(s) URL with a host, else None: no script or data URL reaches a link,
    and nothing a catalogue holds (a malformed URL, a line break that would end a card's HTML block)
    stops the page or leaks into its Markdown."""
    if not isinstance(url, str) or not url or _NOT_IN_LINKS.search(url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # "http://[::1" and the like
        return None
    return url if parts.scheme in ("http", "https") and host else None


def header_html() -> str:
    """The page header."""
    return (
        '<div class="ss-header"><div class="ss-title">Songspace</div>'
        "<span>songs alike in their lyrics and their album art</span></div>"
    )


def bar_html(label: str, kind: str, value: float | None) -> str:
    """A small similarity bar; a missing modality says so instead of showing a bar."""
    if value is None:
        return f'<div class="ss-bar">{label}: <em>none</em></div>'
    width = max(0.0, min(1.0, value)) * 100
    return (
        f'<div class="ss-bar">{label}<div class="track"><div class="fill {kind}" '
        f'style="width:{width:.0f}%"></div></div>{value:.2f}</div>'
    )


def card_html(result: Recommendation) -> str:
    """The text part of a result card: title, artists, album and year, bars, score and tags."""
    payload = result.payload
    meta = " · ".join(
        safe_text(part)
        for part in (", ".join(result.artists) or "unknown artist", payload.get("album"), payload.get("year"))
        if part
    )
    tags = []
    if payload.get("genre"):
        tags.append(safe_text(payload["genre"]))
    added = {"spotify": "added from Spotify", "user": "added by hand", "upload": "loaded on the page"}
    if payload.get("source") in added:
        tags.append(added[payload["source"]])
    link = safe_link(payload.get("spotify_url"))
    spotify = f' · <a href="{html.escape(link, quote=True)}" target="_blank" rel="noopener">Spotify</a>' if link else ""
    return (
        f'<div class="ss-card"><h4>{safe_text(result.title)}</h4><div class="meta">{meta}{spotify}</div>'
        + "".join(f'<span class="ss-tag">{tag}</span>' for tag in tags)
        + bar_html("lyrics", "lyrics", result.lyrics_score)
        + bar_html("cover", "cover", result.cover_score)
        + f'<div class="ss-score">match {result.score:.3f}</div></div>'
    )


def cover_source(payload: dict[str, Any]) -> str | None:
    """What st.image can show for a song's cover: a local file that exists, or an http(s) URL."""
    if "cover_hash" not in payload:  # the cover could not be used
        return None
    path = payload.get("cover_path")
    if path and Path(path).is_file():
        return path
    return safe_link(payload.get("cover_url"))
