"""Finding catalogue songs by title and artist, tolerant of case, accents and small typos.

Embedded stores keep every song's "title artists" key in memory (about 100 bytes a song) and
rank them with rapidfuzz, which forgives typos. On a server, where catalogues run to millions,
the store's full-text index finds the songs that contain the typed words and rapidfuzz ranks
those; typos are then forgiven only within the words that match.
"""

from __future__ import annotations

from dataclasses import dataclass

from rapidfuzz import fuzz, process

from search.engines.base import Filter, Text
from search.index import SongIndex, normalise_text, search_key

MIN_SCORE = 70
PAGE = 10_000


@dataclass(frozen=True)
class TitleMatch:
    """A catalogue song that matches a typed query."""

    point_id: str
    title: str
    artists: list[str]
    score: float


class TitleIndex:
    """Titles and artists of the catalogue for the search box, and its genres and years."""

    def __init__(self, index: SongIndex, in_memory: bool = True) -> None:
        self.index = index
        self.in_memory = in_memory
        self._count = -1
        self._keys: list[str] = []
        self._songs: list[tuple[str, str, list[str]]] = []
        self.genres: list[str] = []
        self.years: tuple[int, int] | None = None

    def refresh(self) -> None:
        """Reload what the page shows if songs were added or removed since the last load."""
        count = self.index.count()
        if count == self._count:
            return
        self.genres = sorted(str(value) for value, _ in self.index.facet("genre"))
        years = [int(value) for value, _ in self.index.facet("year")]
        self.years = (min(years), max(years)) if years else None
        if self.in_memory:
            songs = list(self.index.scroll_payloads(["title", "artists"], page=PAGE))
            self._songs = [(i, p.get("title", ""), list(p.get("artists", []))) for i, p in songs]
            self._keys = [search_key(title, artists) for _, title, artists in self._songs]
        self._count = count

    def find(self, query: str, limit: int = 8) -> list[TitleMatch]:
        """The best-matching songs for a typed title and/or artist, best first."""
        wanted = normalise_text(query)
        if not wanted:
            return []
        self.refresh()
        if self.in_memory:
            songs, keys = self._songs, self._keys
        else:
            songs, keys = self._candidates(wanted)
        hits = process.extract(wanted, keys, scorer=fuzz.WRatio, limit=limit, score_cutoff=MIN_SCORE)
        return [TitleMatch(*songs[i], score=score) for _, score, i in hits]

    def _candidates(self, wanted: str) -> tuple[list[tuple[str, str, list[str]]], list[str]]:
        """Songs whose title or artists contain every typed word, from the full-text index."""
        where = Filter(must=(Text("search_text", wanted),))
        songs: list[tuple[str, str, list[str]]] = []
        for point_id, payload in self.index.scroll_payloads(["title", "artists"], where=where, page=1_000):
            songs.append((point_id, payload.get("title", ""), list(payload.get("artists", []))))
            if len(songs) >= 1_000:
                break
        return songs, [search_key(title, artists) for _, title, artists in songs]

