"""Finding catalogue songs by title and artist, tolerant of case, accents and small typos.

Embedded stores keep every song's "title artists" key in memory with an index of its words. A
typed query's words are matched to the catalogue's words allowing one typo in words of four
letters or more (two from eight), the songs holding most of them become candidates, and rapidfuzz
ranks those by similarity of the whole key. On a server, where catalogues run to millions, the
store's full-text index finds the songs that contain the typed words, and rapidfuzz ranks those.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

import numpy as np

from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein

from search.engines.base import Filter, Text
from search.index import SongIndex, normalise_text, search_key

MIN_SCORE = 70
FIELDS = ["title", "artists", "search_text"]
PAGE = 10_000
CANDIDATES = 500


# A song as the title index holds it: point id, title and artists. Tuples of strings only: the cycle
# collector stops tracking them, so a page holding 100k songs does not pause for a full collection
# over them (about 0.15 s each).
Song = tuple[str, str, tuple[str, ...]]


def _song_and_key(point_id: str, payload: dict) -> tuple[Song, str]:
    title, artists = payload.get("title", ""), tuple(payload.get("artists", []))
    return (point_id, title, artists), payload.get("search_text") or search_key(title, artists)


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
    """One loaded state of the catalogue's titles: searches read it whole, loads replace it whole.

    `postings` holds, for each word, the positions of the songs whose key has it. `by_shape`
    holds the words by length and first letter, and by length and last letter: a word within one
    typo of another has a length within one of it and shares its first or its last letter.
    """

    songs: list[Song] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    postings: dict[str, np.ndarray] = field(default_factory=dict)
    by_shape: dict[tuple[int, str], list[str]] = field(default_factory=dict)
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))  # of each key


class TitleIndex:
    """Titles and artists of the catalogue for the search box, and its genres and years.

    Safe to share between threads (the page's visitors, a catalogue loading in the background).
    """

    def __init__(self, index: SongIndex, in_memory: bool = True) -> None:
        self.index = index
        self.in_memory = in_memory
        self._count = self._filters_count = -1
        self._titles = _Titles()
        self._lock = threading.Lock()
        self.genres: list[str] = []
        self.years: tuple[int, int] | None = None

    def refresh_filters(self, count: int | None = None) -> None:
        """Reload the genres and years (from facets, quickly) if the catalogue changed."""
        count = self.index.count() if count is None else count
        if count != self._filters_count:
            self.genres = sorted(str(value) for value, _ in self.index.facet("genre"))
            years = [int(value) for value, _ in self.index.facet("year")]
            self.years = (min(years), max(years)) if years else None
            self._filters_count = count

    def refresh(self) -> None:
        """Reload the titles, genres and years if the catalogue changed; one thread loads, others wait."""
        count = self.index.count()
        self.refresh_filters(count)
        if count == self._count:
            return
        with self._lock:
            if count != self._count:
                if self.in_memory:
                    self._titles = self._load()
                self._count = count

    def _load(self) -> _Titles:
        titles = _Titles()
        postings: dict[str, list[int]] = {}
        for position, (point_id, payload) in enumerate(self.index.scroll_payloads(FIELDS, page=PAGE)):
            song, key = _song_and_key(point_id, payload)
            titles.songs.append(song)
            titles.keys.append(key)
            for word in set(key.split()):
                postings.setdefault(word, []).append(position)
        for word, positions in postings.items():
            titles.postings[word] = np.asarray(positions, dtype=np.int32)
            titles.by_shape.setdefault((len(word), word[0]), []).append(word)
            titles.by_shape.setdefault((len(word), "$" + word[-1]), []).append(word)
        return replace(titles, lengths=np.fromiter(map(len, titles.keys), dtype=np.int32, count=len(titles.keys)))

    @staticmethod
    def _nearby(titles: _Titles, word: str, typos: int) -> set[str]:
        """The catalogue's words that could be within `typos` of `word` (a superset)."""
        lengths = range(len(word) - typos, len(word) + typos + 1)
        if typos == 1:
            ends = (word[0], "$" + word[-1])
            return {w for n in lengths for end in ends for w in titles.by_shape.get((n, end), ())}
        return {w for (n, _), words in titles.by_shape.items() if n in lengths for w in words}

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
        return [TitleMatch(songs[i][0], songs[i][1], list(songs[i][2]), score=score) for _, score, i in ranked]

    @staticmethod
    def _candidates(titles: _Titles, wanted: str) -> tuple[list[Song], list[str], list[float]]:
        """Songs holding most of the typed words, at most CANDIDATES, and how much of them each holds:
        1 for a word as typed, 1/2 for one within its typos."""
        held = np.zeros(len(titles.keys), dtype=np.float32)
        for word in set(wanted.split()):
            typos = typos_allowed(word)
            close = [
                titles.postings[other]
                for other, _, _ in process.extract(
                    word, TitleIndex._nearby(titles, word, typos), scorer=Levenshtein.distance, score_cutoff=typos, limit=50
                )
                if other != word
            ] if typos else []
            this_word = np.zeros_like(held)
            if close:
                this_word[np.concatenate(close)] = 0.5
            if word in titles.postings:
                this_word[titles.postings[word]] = 1.0
            held += this_word
        holding = np.flatnonzero(held)
        # More of the typed words first; among songs holding as many, the keys closest in length to
        # the query (so a title "Fire" is not lost among thousands of "Fire in the sky N").
        gap = np.abs(titles.lengths[holding] - len(wanted))
        chosen = holding[np.lexsort((gap, -held[holding]))[:CANDIDATES]]
        return [titles.songs[p] for p in chosen], [titles.keys[p] for p in chosen], [float(held[p]) for p in chosen]

    def _text_candidates(self, wanted: str) -> tuple[list[Song], list[str], list[float]]:
        """Songs whose title or artists contain every typed word, from the full-text index."""
        where = Filter(must=(Text("search_text", wanted),))
        songs: list[Song] = []
        keys: list[str] = []
        for point_id, payload in self.index.scroll_payloads(FIELDS, where=where, page=CANDIDATES):
            song, key = _song_and_key(point_id, payload)
            songs.append(song)
            keys.append(key)
            if len(songs) >= CANDIDATES:
                break
        return songs, keys, [1.0] * len(songs)
