"""Playlists in and out of the page: a Spotify playlist or album as seeds, the results as CSV, M3U8
and JSPF files, and "Save to Spotify" through the visitor's own Spotify login."""

from __future__ import annotations

import streamlit as st

from ingest.context import Songspace
from ingest.lrclib import LrclibClient
from ingest.spotify import SpotifyClient, SpotifyError, SpotifyTrack
from ingest.spotify_user import PendingLogins, finish_login, start_login
from ingest.unseen import add_spotify_collection
from search.export import export_format, render_export
from search.recommend import Recommendation
from search.settings import Settings
from ui.basket import Basket, show_basket
from ui.views import safe_link, safe_text, song_label

NO_SPOTIFY = (
    "Spotify is not configured: set SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET (in the environment or .env) "
    "to search Spotify and add its songs and playlists; everything else works without them."
)
EXPORTS = (("CSV", "songspace.csv"), ("M3U8", "songspace.m3u8"), ("JSPF", "songspace.jspf"))


@st.cache_resource
def pending_logins() -> PendingLogins:
    """Logins to Spotify under way, shared by every session: Spotify's redirect back opens a new one."""
    return PendingLogins()


def collection_tab(songspace: Songspace, spotify: SpotifyClient | None, lyrics: LrclibClient, basket: Basket) -> None:
    """Paste a Spotify playlist or album link: its songs become liked seeds, unseen ones added first."""
    settings = songspace.settings
    url = st.text_input("Spotify playlist or album link", key="collection_url",
                        placeholder="https://open.spotify.com/playlist/…")
    adds = "songs not in the catalogue yet are fetched, embedded and added" if settings.page_adds_songs else \
        "songs not in the catalogue are left out: this page does not add songs"
    st.caption(f"Its first {settings.playlist_max_tracks} songs become liked seeds; {adds}.")
    if not st.button("Add its songs as seeds", key="collection-go", disabled=not url.strip()):
        return
    if spotify is None:
        st.warning(NO_SPOTIFY)
        return
    bar = st.progress(0.0, text="Asking Spotify for its songs…")

    def follow(done: int, total: int, track: SpotifyTrack) -> None:
        bar.progress(done / total, text=f"{done} of {total}: {safe_text(song_label(track.title, track.artists))}")

    try:
        added = add_spotify_collection(
            songspace, url, spotify, lyrics, limit=settings.playlist_max_tracks,
            insert=settings.page_adds_songs, progress=follow,
        )
    except SpotifyError as error:
        st.warning(safe_text(error))
        return
    finally:
        bar.empty()
    for song in added.songs:
        basket.add(song.point.point_id, song_label(song.point.payload.get("title", ""), song.point.payload.get("artists", [])))
    show_basket()
    st.session_state.notes = "  \n".join(safe_text(line) for line in added.lines())


def playlists_out(settings: Settings, results: list[Recommendation], title: str) -> None:
    """Download the results as CSV, M3U8 or JSPF, or save them to the visitor's Spotify account."""
    st.markdown("##### Keep these songs")
    with st.container(horizontal=True):
        for label, filename in EXPORTS:
            mime, _ = export_format(filename)
            st.download_button(
                f"Download {label}", render_export(results, filename, title), file_name=filename, mime=mime,
                on_click="ignore", key=f"export-{label.lower()}",
            )
    track_ids = [r.payload["spotify_id"] for r in results if r.payload.get("spotify_id")]
    # No key: a new basket gives a new default name.
    name = st.text_input("Playlist name", value=title, max_chars=100)
    if st.button("Save to Spotify", key="save-spotify"):
        st.session_state.pop("login", None)
        try:
            request = start_login(settings)
        except SpotifyError as error:  # no Spotify app set up: the message says what is needed
            st.info(safe_text(error))
        else:
            if track_ids:
                pending_logins().add(request, keep=(name, track_ids))
                st.session_state.login = (request.url, track_ids)
            else:
                st.info("None of these songs is on Spotify (songs added from Spotify are), so there is nothing to save there.")
    login_url, saving = st.session_state.get("login", (None, None))
    if login_url and saving == track_ids:  # offered only while the results are the ones it would save
        st.link_button("Log in to Spotify to save the playlist", login_url, key="spotify-login")
        st.caption(
            f"Spotify asks you to let Songspace create a private playlist of these {len(track_ids)} songs in "
            "your account, then sends you back here."
        )


def finish_spotify_login(settings: Settings) -> None:
    """Back from Spotify's login (a fresh page session): save the playlist it was for and show its link."""
    answer = st.query_params.to_dict()
    if "state" in answer:
        st.query_params.clear()  # a reload must not try the single-use login again
        pending = pending_logins().take(answer["state"])
        if pending is None:
            st.warning("This Spotify login is unknown or too old (a login lasts ten minutes): save the playlist again.")
            return
        request, (name, track_ids) = pending
        try:
            with st.spinner("Saving the playlist to your Spotify account…"):
                user = finish_login(settings, request, answer)
                st.session_state.saved = user.save_playlist(name, track_ids, description="Recommended by Songspace")
        except SpotifyError as error:
            st.warning(safe_text(error))
            return
    saved = st.session_state.get("saved")
    if saved is not None:
        st.success(f"Saved the private playlist {safe_text(saved.name)} ({saved.added} songs) to your Spotify account.")
        link = safe_link(saved.url)
        if link:
            st.link_button("Open it in Spotify", link, key="saved-playlist")
