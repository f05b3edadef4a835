"""Finding catalogue songs by title and artist, tolerant of case, accents and small typos.

Embedded stores keep every song's "title artists" key in memory with an index of its words. A
typed query's words are matched to the catalogue's words allowing one typo in words of four
letters or more (two from eight), the songs holding most of them become candidates, and rapidfuzz
ranks those by similarity of the whole key. On a server, where catalogues run to millions, the
store's full-text index finds the songs that contain the typed words, and rapidfuzz ranks those.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein

from search.engines.base import Filter, Text
from search.index import SongIndex, normalise_text, search_key

MIN_SCORE = 70
PAGE = 10_000
CANDIDATES = 500


@dataclass(frozen=True)
class TitleMatch:
    """A catalogue song that matches a typed query."""

    point_id: str
    title: str
    artists: list[str]
    score: float


def typos_allowed(word: str) -> int:
    """How many typos a typed word may have: none in short words, where one changes the word."""
    return 0 if len(word) < 4 else 1 if len(word) < 8 else 2


@dataclass(frozen=True)
class _Titles:
    """One loaded state of the catalogue's titles: searches read it whole, loads replace it whole."""

    songs: list[tuple[str, str, list[str]]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    postings: dict[str, list[int]] = field(default_factory=dict)


class TitleIndex:
    """Titles and artists of the catalogue for the search box, and its genres and years.

    Safe to share between threads (the page's visitors, a catalogue loading in the background).
    """

    def __init__(self, index: SongIndex, in_memory: bool = True) -> None:
        self.index = index
        self.in_memory = in_memory
        self._count = -1
        self._titles = _Titles()
        self._lock = threading.Lock()
        self.genres: list[str] = []
        self.years: tuple[int, int] | None = None

    def refresh(self) -> None:
        """Reload what the page shows if songs were added or removed since the last load."""
        with self._lock:
            count = self.index.count()
            if count == self._count:
                return
            self.genres = sorted(str(value) for value, _ in self.index.facet("genre"))
            years = [int(value) for value, _ in self.index.facet("year")]
            self.years = (min(years), max(years)) if years else None
            if self.in_memory:
                self._titles = self._load()
            self._count = count

    def _load(self) -> _Titles:
        titles = _Titles()
        for position, (point_id, payload) in enumerate(self.index.scroll_payloads(["title", "artists", "search_text"], page=PAGE)):
            title, artists = payload.get("title", ""), list(payload.get("artists", []))
            key = payload.get("search_text") or search_key(title, artists)
            titles.songs.append((point_id, title, artists))
            titles.keys.append(key)
            for word in set(key.split()):
                titles.postings.setdefault(word, []).append(position)
        return titles

    def find(self, query: str, limit: int = 8) -> list[TitleMatch]:
        """The best-matching songs for a typed title and/or artist, best first."""
        wanted = normalise_text(query)
        if not wanted:
            return []
        self.refresh()
        songs, keys, held = self._candidates(self._titles, wanted) if self.in_memory else self._text_candidates(wanted)
        hits = process.extract(wanted, keys, scorer=fuzz.WRatio, limit=None, score_cutoff=MIN_SCORE)
        # Songs that hold more of the typed words as typed come first; then the closer key.
        ranked = sorted(hits, key=lambda hit: (-held[hit[2]], -hit[1]))[:limit]
        return [TitleMatch(*songs[i], score=score) for _, score, i in ranked]

    @staticmethod
    def _candidates(titles: _Titles, wanted: str) -> tuple[list[tuple[str, str, list[str]]], list[str], list[float]]:
        """Songs holding most of the typed words, at most CANDIDATES, and how much of them each holds:
        1 for a word as typed, 1/2 for one within its typos."""
        held: Counter[int] = Counter()
        for word in set(wanted.split()):
            exact = set(titles.postings.get(word, ()))
            close: set[int] = set()
            if typos_allowed(word):
                for other, _, _ in process.extract(
                    word, titles.postings.keys(), scorer=Levenshtein.distance, score_cutoff=typos_allowed(word), limit=50
                ):
                    close.update(titles.postings[other])
            for position in exact:
                held[position] += 1.0
            for position in close - exact:
                held[position] += 0.5
        chosen = held.most_common(CANDIDATES)
        return [titles.songs[p] for p, _ in chosen], [titles.keys[p] for p, _ in chosen], [h for _, h in chosen]

    def _text_candidates(self, wanted: str) -> tuple[list[tuple[str, str, list[str]]], list[str], list[float]]:
        """Songs whose title or artists contain every typed word, from the full-text index."""
        where = Filter(must=(Text("search_text", wanted),))
        songs: list[tuple[str, str, list[str]]] = []
        for point_id, payload in self.index.scroll_payloads(["title", "artists"], where=where, page=1_000):
            songs.append((point_id, payload.get("title", ""), list(payload.get("artists", []))))
            if len(songs) >= CANDIDATES:
                break
        return songs, [search_key(title, artists) for _, title, artists in songs], [1.0] * len(songs)
