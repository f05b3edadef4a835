"""Playlists in and out of the page: Spotify playlists and albums as seeds, downloads, Save to Spotify."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from streamlit.testing.v1 import AppTest

from tests.fakes import ALL_TRACKS, CATALOGUE_TRACKS, ROAD_TRIP_ID, TODAYS_TOP_HITS_ID, TRACKS
from tests.ui.apptest import APP, card_titles, messages, pick_by_title, shown, use

ALBUM = f"https://open.spotify.com/album/{CATALOGUE_TRACKS[60].album_id}"  # 4 tracks
ROAD_TRIP = f"https://open.spotify.com/playlist/{ROAD_TRIP_ID}?si=abc"


def paste(at: AppTest, url: str) -> AppTest:
    at.text_input(key="collection_url").input(url).run()
    return at.button(key="collection-go").click().run()


def song_count(at: AppTest) -> int:
    return int(at.sidebar.markdown[0].value.split("**")[1])


def test_an_album_becomes_liked_seeds(monkeypatch, catalogue_settings, services, app):
    use(monkeypatch, catalogue_settings, services)
    app.run()
    paste(app, ALBUM)
    assert not app.exception
    said = "\n".join(messages(app))
    assert "album 'Catalogue Album 1': 4 of its songs are seeds" in said
    assert "4 added to the catalogue, 0 were in it already" in said
    assert "4 without lyrics (none found, or instrumental): recommended from by their cover" in said
    assert song_count(app) == 13
    assert "Your seeds: 4 liked, 0 disliked" in [e.label for e in app.expander]
    assert card_titles(app) and not any(t.startswith("Catalogue Song 1-") for t in card_titles(app))  # seeds never shown
    paste(app, ALBUM)  # again: nothing new is stored
    said = "\n".join(messages(app))
    assert "4 of its songs are seeds" in said and "added to the catalogue" not in said and song_count(app) == 13


def test_a_playlist_is_capped_and_its_odd_entries_explained(monkeypatch, catalogue_settings, services, app):
    use(monkeypatch, catalogue_settings, services, PLAYLIST_MAX_TRACKS="10")
    app.run()
    assert any("Its first 10 songs become liked seeds" in c.value for c in app.caption)
    paste(app, ROAD_TRIP)
    said = "\n".join(messages(app))
    assert "playlist 'Road Trip': 10 of its songs are seeds" in said
    assert "only its first 10 songs were taken; it has 123 entries" in said
    assert "2 entries are not songs Spotify shares (local files, podcast episodes, removed tracks)" in said
    assert song_count(app) == 19


@pytest.mark.parametrize(
    "url, fault, message",
    [
        (f"https://open.spotify.com/playlist/{TODAYS_TOP_HITS_ID}", None, "owned by Spotify"),
        (ROAD_TRIP, (403, {}, None), "development mode"),
        (ROAD_TRIP, (429, {"Retry-After": "3600"}, None), "rate limit"),
        ("https://example.com/not-spotify", None, "is not a Spotify playlist or album"),
    ],
)
def test_spotify_refusals_are_short_messages(monkeypatch, catalogue_settings, services, app, url, fault, message):
    use(monkeypatch, catalogue_settings, services)
    if fault:
        services.faults["/v1/playlists/"] = [fault] * 6
    app.run()
    paste(app, url)
    assert not app.exception
    assert any(message in m for m in app.warning.values)
    assert song_count(app) == 9 and not app.expander


def test_without_credentials_pasting_says_what_is_needed(monkeypatch, catalogue_settings, app):
    use(monkeypatch, catalogue_settings)
    app.run()
    paste(app, ALBUM)
    assert any("SPOTIPY_CLIENT_ID" in m for m in app.warning.values)


def test_with_adding_turned_off_unseen_songs_are_left_out(monkeypatch, catalogue_settings, services, app):
    use(monkeypatch, catalogue_settings, services, PAGE_ADDS_SONGS="false")
    app.run()
    assert [t.label for t in app.tabs] == ["Find a song", "Spotify playlist or album", "Describe a theme"]
    assert any("PAGE_ADDS_SONGS=false" in c.value for c in app.sidebar.caption)
    paste(app, ALBUM)
    assert any("4 not in the catalogue were left out: adding songs is turned off here" in m for m in messages(app))
    assert song_count(app) == 9 and not app.expander
    app.text_input(key="query").input("harbour").run()
    unseen = app.button(key=f"spotify-{TRACKS[0].id}")
    assert unseen.disabled and "this page does not add songs" in unseen.label


def test_the_results_can_be_downloaded_in_each_format(monkeypatch, catalogue_settings, app):
    """The files themselves are downloaded and read in the browser test."""
    use(monkeypatch, catalogue_settings)
    app.run()
    pick_by_title(app, "Sea Song 0", "Sea Song 0")
    assert [b.label for b in app.download_button] == ["Download CSV", "Download M3U8", "Download JSPF"]


def test_save_to_spotify_logs_in_and_saves_a_private_playlist(monkeypatch, catalogue_settings, services, app):
    use(monkeypatch, catalogue_settings, services, SPOTIFY_REDIRECT_URI="http://127.0.0.1:8599/")
    app.run()
    paste(app, ALBUM)
    for key in [b.key for b in app.button if b.key.startswith("remove-")][2:]:  # two album songs become results
        app.button(key=key).click().run()
    shown_titles = [shown(t) for t in card_titles(app)]
    app.button(key="save-spotify").click().run()
    login = app.link_button(key="spotify-login")
    # The visitor's browser: Spotify's login page redirects back to the page with a code and the state.
    answer = requests.get(login.proto.url, allow_redirects=False, timeout=5)
    back = urlsplit(answer.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == "http://127.0.0.1:8599/"
    returned = AppTest.from_file(APP, default_timeout=120)  # the redirect opens a new page session
    for key, (value,) in parse_qs(back.query).items():
        returned.query_params[key] = value
    returned.run()
    assert not returned.exception
    assert any(m.startswith("Saved the private playlist Songspace: Because you like Catalogue Song 1-0") and "(2 songs)" in m
               for m in messages(returned))
    ((playlist_id, playlist),) = services.created.items()
    assert playlist["public"] is False
    assert returned.link_button(key="saved-playlist").proto.url == f"https://open.spotify.com/playlist/{playlist_id}"
    # The store's only Spotify songs are the album's: the playlist holds those results, in their order.
    by_id = {t.id: t.title for t in ALL_TRACKS}
    on_spotify = {t.title for t in CATALOGUE_TRACKS}
    assert [by_id[uri.removeprefix("spotify:track:")] for uri in playlist["items"]] == [t for t in shown_titles if t in on_spotify]
    returned.run()  # a rerun does not use the single-use login again
    assert len(services.created) == 1 and services.grants("authorization_code") == 1


def test_save_to_spotify_after_a_stale_login_says_to_save_again(monkeypatch, catalogue_settings, services, app):
    use(monkeypatch, catalogue_settings, services)
    app.query_params["state"] = "nobody-started-this"
    app.query_params["code"] = "code-x"
    app.run()
    assert any("unknown or too old" in m for m in app.warning.values)


def test_save_to_spotify_without_an_app_says_what_is_needed(monkeypatch, catalogue_settings, app):
    use(monkeypatch, catalogue_settings)
    app.run()
    pick_by_title(app, "Sea Song 0", "Sea Song 0")
    app.button(key="save-spotify").click().run()
    assert any("SPOTIPY_CLIENT_ID" in m and "SPOTIFY_REDIRECT_URI" in m for m in messages(app))
    assert not [b for b in app.link_button if b.key == "spotify-login"]
