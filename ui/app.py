"""Songspace's page: find or add a song, then see songs alike in lyrics and cover, explained."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import streamlit as st

from ingest.context import EmptyCatalogue, Songspace, open_songspace
from ingest.encoders import EncoderUnavailable
from ingest.lrclib import LrclibClient
from ingest.spotify import SpotifyClient, SpotifyError
from ingest.unseen import UnseenSongError, add_spotify_track, add_user_song, stored_spotify_track
from search.index import CENTRE_SONGS, MIN_CENTRE_SONGS, SongIndexError
from search.recommend import Filters, Query, Recommendation, recommend, seed_query
from search.settings import DEFAULT_LYRICS_WEIGHT, Settings, load_settings
from search.titles import TitleIndex
from ui.basket import VIEW_KEY, Basket, basket_panel, because, show_basket
from ui.heap import freeze_what_is_loaded
from ui.loading import Loads, load_tab
from ui.playlists import NO_SPOTIFY, collection_tab, finish_spotify_login, playlists_out
from ui.views import (
    STYLE,
    card_html,
    centring_lines,
    cover_source,
    excerpt_html,
    header_html,
    safe_link,
    safe_text,
    song_label,
)

log = logging.getLogger(__name__)
PICKED_KEY = "picked"


@st.cache_resource(show_spinner="Opening the catalogue…")
def songspace_for(settings: Settings) -> Songspace:
    """The store and collection, opened once per process and shared by every visitor (the encoders
    load when first needed: recommending for catalogue songs needs none of them)."""
    songspace = open_songspace(settings, create=False)
    first = next(iter(songspace.index.scroll_payloads([])), None)
    if first is not None:  # one query now, so the first visitor's click does not pay for warm-up
        recommend(songspace.index, seed_query(songspace.index.get([first[0]])), k=3)
    return songspace


@st.cache_resource(show_spinner="Loading the catalogue's titles…")
def titles_for(settings: Settings) -> TitleIndex:
    """The catalogue's titles for the search box, loaded before the first page is drawn (2.7 s at
    100,000 songs), so that the first search is as quick as the next."""
    # A server may hold millions of songs: search its full-text index instead of loading them all.
    titles = TitleIndex(songspace_for(settings).index, in_memory=not settings.qdrant_url)
    titles.refresh()
    return titles


@st.cache_resource
def spotify_for(settings: Settings) -> SpotifyClient | None:
    """A Spotify client, or None without credentials."""
    return SpotifyClient(settings) if settings.spotify_configured else None


@st.cache_resource
def lyrics_for(settings: Settings) -> LrclibClient:
    """The LRCLIB client."""
    return LrclibClient(settings)


@st.cache_resource
def loads_for(settings: Settings) -> Loads:
    """The catalogue loads of this process (one at a time)."""
    return Loads()


def choose_song(point_id: str, label: str, liked: bool = True) -> None:
    """Put a song in the basket, liked or disliked, and show the basket's recommendations."""
    Basket(st.session_state).add(point_id, label, liked)
    show_basket()


def choose_spotify(track_id: str, label: str) -> None:
    """Remember a picked Spotify song; it is looked up (and added if new) as the page is drawn."""
    st.session_state.pending_spotify = (track_id, label)


def pick(choose: Callable[..., None], *args: Any) -> None:
    """A pick in the search tab: choose it, and have the whole page drawn again (the tab is a fragment)."""
    choose(*args)
    st.session_state[PICKED_KEY] = True


def choose_theme(theme: str) -> None:
    """Show the songs whose lyrics match a description."""
    st.session_state[VIEW_KEY] = "theme"
    st.session_state.theme_text = theme
    st.session_state.notes = ""


def open_or_stop(settings: Settings) -> Songspace:
    """The Songspace for these settings, or a short message with the next step, and stop."""
    try:
        songspace = songspace_for(settings)
    except EmptyCatalogue as error:
        st.warning(f"The catalogue is empty. {error}.")
        st.stop()
    except SongIndexError as error:
        st.error(str(error))
        st.stop()
    except EncoderUnavailable as error:
        st.error(f"An encoder could not be loaded: {error}")
        st.stop()
    if songspace.index.count() == 0:
        st.warning("The catalogue is empty. Load one with `python -m ingest CATALOGUE`, e.g. data/sample/hymns.csv.")
        st.stop()
    return songspace


def sidebar(songspace: Songspace, titles: TitleIndex) -> dict[str, Any]:
    """The controls in the sidebar; returns their values."""
    with st.sidebar:
        st.subheader("Controls")
        weight = st.slider("Lyrics weight (the rest is cover)", 0.0, 1.0, DEFAULT_LYRICS_WEIGHT, 0.05, key="lyrics_weight",
                           help="1 recommends by lyrics only, 0 by cover only")
        k = st.slider("Results", 3, 30, 9, key="k")
        exclude_artist = st.checkbox("Exclude the liked songs' artists", key="exclude_artist")
        diversity = st.slider("Diversity", 0.0, 1.0, 0.0, 0.1, key="diversity",
                              help="Trade a little similarity for variety (MMR)")
        titles.refresh_filters()
        genres = st.multiselect("Genre", titles.genres, key="genres") if titles.genres else []
        years = None
        if titles.years and titles.years[0] < titles.years[1]:
            chosen = st.slider("Years", *titles.years, value=titles.years, key="years")
            years = None if tuple(chosen) == titles.years else tuple(chosen)
    return {
        "lyrics_weight": weight, "k": k, "exclude_artist": exclude_artist, "diversity": diversity,
        "filters": Filters(genres=tuple(genres), years=years),
    }


def status(songspace: Songspace) -> None:
    """Which store and engine, how many songs, the encoders, whether the vectors are centred, what the page may do."""
    st.divider()
    st.caption("Store")
    settings, index = songspace.settings, songspace.index
    encoders = index.encoders
    st.markdown(
        f"**{index.count()}** songs in {safe_text(settings.collection)}  \n"
        f"{safe_text(index.label)}  \n"
        f"encoders: {safe_text(encoders.text)} + {safe_text(encoders.image)}  \n"
        + "  \n".join(centring_lines(index.centring(), MIN_CENTRE_SONGS, CENTRE_SONGS))
    )
    if index.encoder_notice:
        st.caption(safe_text(index.encoder_notice))
    if not settings.page_adds_songs:
        st.caption("This page does not add songs (PAGE_ADDS_SONGS=false): only catalogue songs can be seeds.")
    if settings.qdrant_url:
        st.markdown(f"[Open the Qdrant dashboard]({settings.qdrant_url.rstrip('/')}/dashboard)")


@st.fragment
def find_tab(songspace: Songspace, titles: TitleIndex, spotify: SpotifyClient | None) -> None:
    """Search the catalogue (and Spotify) by title or artist; each hit is a button that adds it to the seeds.

    A fragment: typing reruns only this tab, not the whole page; a pick reruns the page.
    """
    if st.session_state.pop(PICKED_KEY, False):
        st.rerun()  # the pick's callback has run; the basket and results are outside this tab
    query = st.text_input("Song title or artist", key="query", placeholder="e.g. amazing grace")
    if not query.strip():
        st.caption("Each song you pick joins your seeds as a liked song; the results are for all of them.")
        return
    matches = titles.find(query)
    if matches:
        st.caption("In the catalogue: pick one to add it to your seeds")
        for match in matches:
            label = song_label(match.title, match.artists)
            st.button(safe_text(label), key=f"pick-{match.point_id}", on_click=pick, args=(choose_song, match.point_id, label))
    else:
        st.caption("No catalogue song matches.")
    if spotify is None:
        st.caption(NO_SPOTIFY)
        return
    try:
        tracks = spotify.search_tracks(query, limit=5)
    except SpotifyError as error:
        st.warning(f"Spotify: {safe_text(error)}")
        return
    if tracks:
        st.caption("From Spotify")
    adds = songspace.settings.page_adds_songs
    for track in tracks:
        stored = stored_spotify_track(songspace.index, track.id) is not None
        label = song_label(track.title, track.artists)
        marker = (" · in the catalogue" if stored else " · Spotify, not in the catalogue yet" if adds
                  else " · not in the catalogue (this page does not add songs)")
        st.button(safe_text(label) + marker, key=f"spotify-{track.id}", on_click=pick, args=(choose_spotify, track.id, label),
                  disabled=not (stored or adds))


def theme_tab() -> None:
    """Describe a theme in words; songs whose lyrics match it are recommended."""
    theme = st.text_input("Describe a theme", key="theme", placeholder="e.g. leaving home at night")
    st.button("Find songs", key="theme-go", on_click=choose_theme, args=(theme,), disabled=not theme.strip())


def add_tab(songspace: Songspace) -> None:
    """Add a song by hand: title, artist, pasted lyrics and/or an uploaded cover; it joins the seeds."""
    with st.form("add-song", clear_on_submit=False):
        title = st.text_input("Title", key="add_title")
        artist = st.text_input("Artist", key="add_artist")
        lyrics = st.text_area("Lyrics (optional)", key="add_lyrics", height=140)
        # The server's own cap is server.maxUploadSize in .streamlit/config.toml.
        cover = st.file_uploader("Cover image (optional)", type=["png", "jpg", "jpeg", "webp"], key="add_cover",
                                 max_upload_size=math.ceil(songspace.settings.cover_max_bytes / 2**20))
        submitted = st.form_submit_button("Add and recommend")
    if submitted:
        try:
            added = add_user_song(songspace, title, artist, lyrics, cover.getvalue() if cover else None)
        except UnseenSongError as error:
            st.warning(safe_text(error))
            return
        choose_song(added.point.point_id, song_label(title, [artist]))
        st.session_state.notes = ("added: " if added.inserted else "") + safe_text(added.message)


def add_picked_spotify(songspace: Songspace, spotify: SpotifyClient | None) -> None:
    """Put a picked Spotify song in the basket; an unseen one is fetched, embedded and inserted first."""
    pending = st.session_state.pop("pending_spotify", None)
    if pending is None:
        return
    track_id, label = pending
    if spotify is None:
        st.warning(NO_SPOTIFY)
        return
    if not songspace.settings.page_adds_songs:
        stored = stored_spotify_track(songspace.index, track_id)
        if stored is None:
            st.warning(f"{safe_text(label)} is not in the catalogue, and this page does not add songs.")
        else:
            choose_song(stored.point_id, label)
        return
    try:
        with st.spinner("Fetching the song from Spotify, its lyrics, and embedding it…"):
            added = add_spotify_track(songspace, track_id, spotify, lyrics_for(songspace.settings))
    except (SpotifyError, UnseenSongError) as error:
        st.warning(safe_text(error))
        return
    choose_song(added.point.point_id, label)
    st.session_state.notes = ("added to the catalogue: " if added.inserted else "") + safe_text(added.message)


def basket_query(songspace: Songspace, basket: Basket, controls: dict[str, Any]) -> Query | None:
    """The query for the basket: per modality, the mean of the liked seeds minus that of the disliked."""
    if not basket.seeds:
        return None
    points = {p.point_id: p for p in songspace.index.get([seed.point_id for seed in basket.seeds])}
    for seed in basket.seeds:
        if seed.point_id not in points:
            basket.remove(seed.point_id)
            st.warning(f"{safe_text(seed.label)} is no longer in the catalogue, so it left your seeds.")
    if not basket.liked:
        st.info("Like at least one song: the results are songs like your liked seeds, moved away from the disliked ones.")
        return None
    try:
        return seed_query(
            [points[seed.point_id] for seed in basket.liked],
            [points[seed.point_id] for seed in basket.disliked],
            exclude_seed_artists=controls["exclude_artist"],
            filters=controls["filters"],
        )
    except ValueError as error:  # liked and disliked songs that cancel out leave nothing to look for
        st.warning(f"{safe_text(error)}: change a like or a dislike.")
        return None


def show_results(songspace: Songspace, query: Query, controls: dict[str, Any], heading: str) -> list[Recommendation] | None:
    """Recommendation cards, three to a row (one on a phone), each with "More like this" and "Less like this"."""
    started = time.perf_counter()
    try:
        results = recommend(
            songspace.index, query, controls["lyrics_weight"], controls["k"], controls["diversity"],
            words_weight=songspace.settings.words_weight,
        )
    except ValueError as error:
        st.warning(str(error))
        return None
    except Exception as error:  # the store's client raises transport-specific errors
        log.exception("the search failed")  # the operator's log keeps what visitors are not shown
        st.error(f"Qdrant did not answer ({error.__class__.__name__}). Check that it is running and QDRANT_URL.")
        return None
    st.markdown(f"#### {heading}", unsafe_allow_html=True)
    st.caption(f"{len(results)} songs in {1000 * (time.perf_counter() - started):.0f} ms")
    if not results:
        st.write("No song matches these filters.")
    # Row by row, so that reading order (and a phone's single column) follows the ranking.
    for row in range(0, len(results), 3):
        for column, result in zip(st.columns(3), results[row : row + 3]):
            with column.container(border=True, key=f"card-{result.point_id}"):
                card(result)
    return results


def card(result: Recommendation) -> None:
    """One result: cover, text, excerpt, Spotify link, and the buttons that make it a seed."""
    cover = cover_source(result.payload)
    if cover:
        st.image(cover, width="stretch")
        if result.payload.get("cover_generated"):
            st.caption("generated cover")
    st.markdown(card_html(result), unsafe_allow_html=True)
    excerpt = result.payload.get("lyrics_excerpt")
    if excerpt:
        st.markdown(f'<div class="ss-excerpt">{excerpt_html(excerpt)}</div>', unsafe_allow_html=True)
    label = song_label(result.title, result.artists)
    with st.container(horizontal=True):
        st.button("More like this", key=f"more-{result.point_id}", on_click=choose_song, args=(result.point_id, label, True))
        st.button("Less like this", key=f"less-{result.point_id}", on_click=choose_song, args=(result.point_id, label, False))
        link = safe_link(result.payload.get("spotify_url"))
        if link and result.payload.get("spotify_id"):
            st.link_button("Open in Spotify", link)


def main() -> None:
    """Draw the page."""
    st.set_page_config(page_title="Songspace", page_icon="🎧", layout="wide")
    st.markdown(STYLE, unsafe_allow_html=True)
    st.markdown(header_html(), unsafe_allow_html=True)
    # The page holds the store itself: a process of its own would run this script again (Streamlit
    # makes it the process's __main__, which a new process imports).
    settings = replace(load_settings(), store_process=False)
    finish_spotify_login(settings)
    songspace = open_or_stop(settings)
    titles = titles_for(settings)
    freeze_what_is_loaded()  # before the first page is drawn, and again below if a model loaded
    spotify = spotify_for(settings)
    basket = Basket(st.session_state)
    controls = sidebar(songspace, titles)
    names = ["Find a song", "Spotify playlist or album", "Describe a theme"]
    if settings.page_adds_songs:
        names.append("Add a song by hand")
        if settings.page_loads_catalogues:
            names.append("Load a catalogue")
    tabs = dict(zip(names, st.tabs(names)))
    with tabs["Find a song"]:
        find_tab(songspace, titles, spotify)
    with tabs["Spotify playlist or album"]:
        collection_tab(songspace, spotify, lyrics_for(settings), basket)
    with tabs["Describe a theme"]:
        theme_tab()
    if "Add a song by hand" in tabs:
        with tabs["Add a song by hand"]:
            add_tab(songspace)
    if "Load a catalogue" in tabs:
        with tabs["Load a catalogue"]:
            load_tab(songspace, loads_for(settings))
    add_picked_spotify(songspace, spotify)
    basket_panel(basket)
    if st.session_state.get("notes"):
        st.info(st.session_state.notes)  # its outside parts were escaped when it was written
    if st.session_state.get(VIEW_KEY) == "theme":
        theme = st.session_state.theme_text
        query = songspace.text_query(theme, controls["filters"]) if theme.strip() else None
        heading, title = f"Songs whose lyrics match: {safe_text(theme)}", f"Songspace: {theme}"
    else:
        query = basket_query(songspace, basket, controls)
        heading = because(basket, safe_text) if basket.liked else ""
        title = "Songspace: " + because(basket) if basket.liked else ""
    results = show_results(songspace, query, controls, heading) if query is not None else None
    if results:
        playlists_out(settings, results, title)
    elif not basket.seeds and st.session_state.get(VIEW_KEY) != "theme":
        st.caption("Search for a song, paste a Spotify playlist, describe a theme, or add a song by hand to get recommendations.")
    with st.sidebar:  # last, so that it counts the songs this run added
        status(songspace)
    freeze_what_is_loaded()


main()
