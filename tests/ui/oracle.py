"""What the page should show, computed through the library (whose exactness the search tests prove)
on the same store, before the page opens it (an embedded store admits one opener at a time)."""

from __future__ import annotations

from search.index import open_index
from search.recommend import recommend, seed_query
from search.settings import DEFAULT_LYRICS_WEIGHT, Settings


def point_ids(settings: Settings) -> dict[str, str]:
    """Each stored song's point id, by title."""
    index = open_index(settings)
    try:
        return {payload["title"]: point_id for point_id, payload in index.scroll_payloads(["title"])}
    finally:
        index.close()


def expected_titles(
    settings: Settings, liked: list[str], disliked: list[str] = (), lyrics_weight: float = DEFAULT_LYRICS_WEIGHT, k: int = 9,
) -> list[str]:
    """The titles recommend(seed_query(liked, disliked)) ranks first, best first."""
    ids = point_ids(settings)
    index = open_index(settings)
    try:
        query = seed_query(index.get([ids[t] for t in liked]), index.get([ids[t] for t in disliked]))
        return [r.title for r in recommend(index, query, lyrics_weight, k, words_weight=settings.words_weight)]
    finally:
        index.close()
