"""Lyrics as every lyrics encoder sees them (the sentence encoder, BM25, the content hash)."""

from __future__ import annotations

import re

_SECTION_MARKER = re.compile(r"\[[^\]\n]{0,60}\]")
_WHITESPACE = re.compile(r"\s+")


def clean_lyrics(text: str) -> str:
    """Strip section markers such as `[Chorus]` and collapse whitespace; words are kept as written."""
    return _WHITESPACE.sub(" ", _SECTION_MARKER.sub(" ", text)).strip()
