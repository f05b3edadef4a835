"""The seed basket: the songs the recommendations are for, each liked or disliked, kept in the
visitor's session so that it survives every rerun of the page."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, replace
from typing import Any

import streamlit as st

from ui.views import safe_text


BASKET_KEY = "basket"
VIEW_KEY = "view"  # what the results are for: "basket", or "theme" after a description was searched
NAMED_IN_HEADING = 3  # a heading names this many songs of each kind, then says how many more


@dataclass(frozen=True)
class Seed:
    """A song in the basket: its point, how people know it ("Title — Artist"), liked or not."""

    point_id: str
    label: str
    liked: bool = True


class Basket:
    """The seeds in the order they were added, stored in a session-state mapping."""

    def __init__(self, state: MutableMapping[str, Any]) -> None:
        self._state = state
        state.setdefault(BASKET_KEY, [])

    @property
    def seeds(self) -> list[Seed]:
        """Every seed, oldest first."""
        return list(self._state[BASKET_KEY])

    @property
    def liked(self) -> list[Seed]:
        """The seeds the results should be like."""
        return [seed for seed in self.seeds if seed.liked]

    @property
    def disliked(self) -> list[Seed]:
        """The seeds the results should move away from."""
        return [seed for seed in self.seeds if not seed.liked]

    def add(self, point_id: str, label: str, liked: bool = True) -> None:
        """Add a seed; a song already in the basket keeps its place and takes the new like or dislike."""
        seeds = self.seeds
        for position, seed in enumerate(seeds):
            if seed.point_id == point_id:
                seeds[position] = replace(seed, liked=liked)
                break
        else:
            seeds.append(Seed(point_id, label, liked))
        self._state[BASKET_KEY] = seeds

    def flip(self, point_id: str) -> None:
        """Turn a liked seed into a disliked one, or back."""
        self._state[BASKET_KEY] = [replace(s, liked=not s.liked) if s.point_id == point_id else s for s in self.seeds]

    def remove(self, point_id: str) -> None:
        """Take a seed out of the basket."""
        self._state[BASKET_KEY] = [seed for seed in self.seeds if seed.point_id != point_id]

    def clear(self) -> None:
        """Empty the basket."""
        self._state[BASKET_KEY] = []


def _listed(labels: list[str]) -> str:
    """"A", "A and B", "A, B and C", or the first few and how many more."""
    if len(labels) > NAMED_IN_HEADING:
        labels = labels[:NAMED_IN_HEADING] + [f"{len(labels) - NAMED_IN_HEADING} more"]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def because(basket: Basket, shown: Callable[[str], str] = str) -> str:
    """What the results are for, "Because you like A and B, and not C"; `shown` prepares each label
    (safe_text for the page, nothing for files)."""
    text = "Because you like " + _listed([shown(seed.label) for seed in basket.liked])
    if basket.disliked:
        text += ", and not " + _listed([shown(seed.label) for seed in basket.disliked])
    return text


def show_basket() -> None:
    """Show the basket's recommendations (rather than a described theme's) from now on."""
    st.session_state[VIEW_KEY] = "basket"
    st.session_state.notes = ""


def _edit(action: Callable[[str], None], point_id: str) -> None:
    action(point_id)
    show_basket()


def basket_panel(basket: Basket) -> None:
    """The basket, editable: each seed can be flipped between liked and disliked or removed, or all cleared."""
    seeds = basket.seeds
    if not seeds:
        return
    title = f"Your seeds: {len(basket.liked)} liked, {len(basket.disliked)} disliked"
    with st.expander(title, expanded=len(seeds) <= 12):
        for seed in seeds:
            with st.container(horizontal=True, vertical_alignment="center", key=f"seed-{seed.point_id}"):
                icon = ":material/thumb_up:" if seed.liked else ":material/thumb_down:"  # emoji fonts are not everywhere
                st.markdown(f"{icon} {safe_text(seed.label)}", width="stretch")
                st.button("Dislike instead" if seed.liked else "Like instead", key=f"flip-{seed.point_id}",
                          on_click=_edit, args=(basket.flip, seed.point_id))
                st.button("Remove", key=f"remove-{seed.point_id}", on_click=_edit, args=(basket.remove, seed.point_id))
        st.button("Clear all seeds", key="basket-clear", on_click=lambda: (basket.clear(), show_basket()))
