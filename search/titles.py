"""Finding catalogue songs by title and artist, tolerant of case, accents and small typos."""

from __future__ import annotations

from dataclasses import dataclass

from rapidfuzz import fuzz, process

from search.index import SongIndex, normalise_text

MIN_SCORE = 70


@dataclass(frozen=True)
class TitleMatch:
    """A catalogue song that matches a typed query."""

    point_id: str
    title: str
    artists: list[str]
    score: float


class TitleIndex:
    """Titles, artists, genres and years of the catalogue, reloaded when its size changes."""

    def __init__(self, index: SongIndex) -> None:
        self.index = index
        self._count = -1
        self._keys: list[str] = []
        self._songs: list[tuple[str, str, list[str]]] = []
        self.genres: list[str] = []
        self.years: tuple[int, int] | None = None

    def refresh(self) -> None:
        """Reload the titles if songs were added or removed since the last load."""
        count = self.index.count()
        if count == self._count:
            return
        self._songs, self._keys = [], []
        genres, years = set(), []
        for point_id, payload in self.index.scroll_payloads(["title", "artists", "genre", "year"]):
            title, artists = payload.get("title", ""), list(payload.get("artists", []))
            self._songs.append((point_id, title, artists))
            self._keys.append(normalise_text(f"{title} {' '.join(artists)}"))
            if payload.get("genre"):
                genres.add(str(payload["genre"]))
            if isinstance(payload.get("year"), int):
                years.append(payload["year"])
        self.genres = sorted(genres)
        self.years = (min(years), max(years)) if years else None
        self._count = count

    def find(self, query: str, limit: int = 8) -> list[TitleMatch]:
        """The best-matching songs for a typed title and/or artist, best first."""
        wanted = normalise_text(query)
        if not wanted:
            return []
        self.refresh()
        hits = process.extract(
            wanted, self._keys, scorer=fuzz.WRatio, limit=limit, score_cutoff=MIN_SCORE
        )
        return [TitleMatch(*self._songs[i][:3], score=score) for _, score, i in hits]
