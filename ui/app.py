"""Songspace's page: find or add a song, then see songs alike in lyrics and cover, explained."""

from __future__ import annotations

import math
import time
from typing import Any

import streamlit as st

from ingest.context import EmptyCatalogue, Songspace, open_songspace
from ingest.encoders import EncoderUnavailable
from ingest.lrclib import LrclibClient
from ingest.spotify import SpotifyClient, SpotifyError
from ingest.unseen import UnseenSongError, add_spotify_track, add_user_song
from search.index import SongIndexError, song_point_id
from search.recommend import Filters, Query, recommend, seed_query
from search.settings import DEFAULT_LYRICS_WEIGHT, Settings, load_settings
from search.titles import TitleIndex
from ui.views import STYLE, card_html, cover_source, excerpt_html, header_html, safe_link, safe_text


@st.cache_resource(show_spinner="Opening the catalogue and loading the encoders…")
def songspace_for(settings: Settings) -> Songspace:
    """The store, collection and both encoders: opened once per process, shared by every visitor."""
    songspace = open_songspace(settings, create=False)
    songspace.embedder.load()
    first = next(iter(songspace.index.scroll_payloads([])), None)
    if first is not None:  # one query now, so the first visitor's click does not pay for warm-up
        recommend(songspace.index, seed_query(songspace.index.get([first[0]])), k=3)
    return songspace


@st.cache_resource
def titles_for(settings: Settings) -> TitleIndex:
    """The catalogue's titles for the search box."""
    # A server may hold millions of songs: search its full-text index instead of loading them all.
    return TitleIndex(songspace_for(settings).index, in_memory=not settings.qdrant_url)


@st.cache_resource
def spotify_for(settings: Settings) -> SpotifyClient | None:
    """A Spotify client, or None without credentials."""
    return SpotifyClient(settings) if settings.spotify_configured else None


@st.cache_resource
def lyrics_for(settings: Settings) -> LrclibClient:
    """The LRCLIB client."""
    return LrclibClient(settings)


def pick(kind: str, value: str, label: str = "") -> None:
    """Remember what the user chose as the seed of the recommendations."""
    st.session_state.seed = {"kind": kind, "value": value, "label": label}
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
    """The controls, and the status of the store; returns the control values."""
    with st.sidebar:
        st.subheader("Controls")
        weight = st.slider("Lyrics weight (the rest is cover)", 0.0, 1.0, DEFAULT_LYRICS_WEIGHT, 0.05, key="lyrics_weight",
                           help="1 recommends by lyrics only, 0 by cover only")
        k = st.slider("Results", 3, 30, 9, key="k")
        exclude_artist = st.checkbox("Exclude the same artist", key="exclude_artist")
        diversity = st.slider("Diversity", 0.0, 1.0, 0.0, 0.1, key="diversity",
                              help="Trade a little similarity for variety (MMR)")
        titles.refresh()
        genres = st.multiselect("Genre", titles.genres, key="genres") if titles.genres else []
        years = None
        if titles.years and titles.years[0] < titles.years[1]:
            chosen = st.slider("Years", *titles.years, value=titles.years, key="years")
            years = None if tuple(chosen) == titles.years else tuple(chosen)
        st.divider()
        st.caption("Store")
        settings = songspace.settings
        encoders = songspace.index.encoders
        st.markdown(
            f"**{songspace.index.count()}** songs in {safe_text(settings.collection)}  \n"
            f"{'server ' + safe_text(settings.qdrant_url) if settings.qdrant_url else 'embedded: ' + safe_text(settings.qdrant_path)}  \n"
            f"encoders: {safe_text(encoders.text)} + {safe_text(encoders.image)}"
        )
        if songspace.index.encoder_notice:
            st.caption(safe_text(songspace.index.encoder_notice))
        if settings.qdrant_url:
            st.markdown(f"[Open the Qdrant dashboard]({settings.qdrant_url.rstrip('/')}/dashboard)")
    return {
        "lyrics_weight": weight, "k": k, "exclude_artist": exclude_artist, "diversity": diversity,
        "filters": Filters(genres=tuple(genres), years=years),
    }


def find_tab(songspace: Songspace, titles: TitleIndex, spotify: SpotifyClient | None) -> None:
    """Search the catalogue (and Spotify) by title or artist; each hit is a button that picks it."""
    query = st.text_input("Song title or artist", key="query", placeholder="e.g. amazing grace")
    if not query.strip():
        return
    matches = titles.find(query)
    if matches:
        st.caption("In the catalogue")
        for match in matches:
            label = f"{match.title} — {', '.join(match.artists) or 'unknown'}"
            st.button(safe_text(label), key=f"pick-{match.point_id}", on_click=pick, args=("catalogue", match.point_id, label))
    else:
        st.caption("No catalogue song matches.")
    if spotify is None:
        st.caption("Spotify search is off: set SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET to add songs from Spotify.")
        return
    try:
        tracks = spotify.search_tracks(query, limit=5)
    except SpotifyError as error:
        st.warning(f"Spotify: {safe_text(error)}")
        return
    if tracks:
        st.caption("From Spotify")
    for track in tracks:
        stored = songspace.index.get([song_point_id(spotify_id=track.id, song_id=None, artists=[], title="")], with_vectors=False)
        label = f"{track.title} — {', '.join(track.artists)}"
        marker = " · in the catalogue" if stored else " · Spotify, not in the catalogue yet"
        st.button(safe_text(label) + marker, key=f"spotify-{track.id}", on_click=pick, args=("spotify", track.id, label))


def theme_tab() -> None:
    """Describe a theme in words; songs whose lyrics match it are recommended."""
    theme = st.text_input("Describe a theme", key="theme", placeholder="e.g. leaving home at night")
    st.button("Find songs", key="theme-go", on_click=pick, args=("theme", theme, theme), disabled=not theme.strip())


def add_tab(songspace: Songspace) -> None:
    """Add a song by hand: title, artist, pasted lyrics and/or an uploaded cover."""
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
        pick("catalogue", added.point.point_id, f"{title} — {artist}")
        st.session_state.notes = ("added: " if added.inserted else "already added: ") + safe_text(added.message)


def resolve_seed(songspace: Songspace, spotify: SpotifyClient | None, controls: dict[str, Any]) -> Query | None:
    """The query for the current seed; an unseen Spotify song is fetched and inserted first."""
    seed = st.session_state.get("seed")
    if not seed:
        return None
    if seed["kind"] == "theme":
        return songspace.text_query(seed["value"], controls["filters"]) if seed["value"].strip() else None
    if seed["kind"] == "spotify":
        if spotify is None:
            st.warning("Spotify is not configured: set SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET.")
            return None
        try:
            with st.spinner("Fetching the song from Spotify, its lyrics, and embedding it…"):
                added = add_spotify_track(songspace, seed["value"], spotify, lyrics_for(songspace.settings))
        except (SpotifyError, UnseenSongError) as error:
            st.warning(safe_text(error))
            return None
        pick("catalogue", added.point.point_id, seed["label"])
        st.session_state.notes = ("added to the catalogue: " if added.inserted else "") + safe_text(added.message)
    points = songspace.index.get([st.session_state.seed["value"]])
    if not points:
        st.warning("That song is no longer in the catalogue.")
        return None
    return seed_query(points, exclude_seed_artists=controls["exclude_artist"], filters=controls["filters"])


def show_results(songspace: Songspace, query: Query, controls: dict[str, Any]) -> None:
    """Recommendation cards, three to a row (one on a phone)."""
    started = time.perf_counter()
    try:
        results = recommend(
            songspace.index, query, controls["lyrics_weight"], controls["k"], controls["diversity"],
            words_weight=songspace.settings.words_weight,
        )
    except ValueError as error:
        st.warning(str(error))
        return
    except Exception as error:  # the store's client raises transport-specific errors
        st.error(f"Qdrant did not answer ({error.__class__.__name__}). Check that it is running and QDRANT_URL.")
        return
    seed = st.session_state.seed
    st.markdown(f"#### Because you chose: {safe_text(seed['label'])}", unsafe_allow_html=True)
    if st.session_state.get("notes"):
        st.info(st.session_state.notes)  # its outside parts were escaped when it was written
    st.caption(f"{len(results)} songs in {1000 * (time.perf_counter() - started):.0f} ms")
    if not results:
        st.write("No song matches these filters.")
    columns = st.columns(3)
    for position, result in enumerate(results):
        with columns[position % 3].container(border=True):
            cover = cover_source(result.payload)
            if cover:
                st.image(cover, width="stretch")
                if result.payload.get("cover_generated"):
                    st.caption("generated cover")
            st.markdown(card_html(result), unsafe_allow_html=True)
            excerpt = result.payload.get("lyrics_excerpt")
            if excerpt:
                st.markdown(f'<div class="ss-excerpt">{excerpt_html(excerpt)}</div>', unsafe_allow_html=True)
            link = safe_link(result.payload.get("spotify_url"))
            if link and result.payload.get("spotify_id"):
                st.link_button("Open in Spotify", link)


def main() -> None:
    """Draw the page."""
    st.set_page_config(page_title="Songspace", page_icon="🎧", layout="wide")
    st.markdown(STYLE, unsafe_allow_html=True)
    st.markdown(header_html(), unsafe_allow_html=True)
    settings = load_settings()
    songspace = open_or_stop(settings)
    titles = titles_for(settings)
    spotify = spotify_for(settings)
    controls = sidebar(songspace, titles)
    find, theme, add = st.tabs(["Find a song", "Describe a theme", "Add a song by hand"])
    with find:
        find_tab(songspace, titles, spotify)
    with theme:
        theme_tab()
    with add:
        add_tab(songspace)
    query = resolve_seed(songspace, spotify, controls)
    if query is not None:
        show_results(songspace, query, controls)
    elif not st.session_state.get("seed"):
        st.caption("Search for a song, describe a theme, or add a song by hand to get recommendations.")


main()
