"""Save to Spotify against the loopback fake: PKCE login (authorize, code, token), a private
playlist with items 100 to a request, refresh on expiry, refusal, revoked logins, and no token
ever logged or written."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from ingest.spotify import SpotifyError
from ingest.spotify_user import SCOPE, PendingLogins, finish_login, start_login
from tests.fakes import CATALOGUE_TRACKS, CLIENT_ID

REDIRECT = "http://127.0.0.1:8501/"


@pytest.fixture
def user_settings(client_settings):
    return replace(client_settings, spotify_redirect_uri=REDIRECT)


def visit(url: str) -> dict[str, str]:
    """What the user's browser does: open the login URL; Spotify redirects to the page, whose query
    parameters the page hands over."""
    response = requests.get(url, allow_redirects=False, timeout=5)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(REDIRECT)
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def log_in(settings):
    request = start_login(settings)
    return finish_login(settings, request, visit(request.url))


def test_login_url_asks_for_private_playlists_with_pkce(user_settings, services):
    request = start_login(user_settings)
    parts = urlsplit(request.url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{services.url}/authorize"
    assert query["client_id"] == CLIENT_ID and query["response_type"] == "code"
    assert query["redirect_uri"] == REDIRECT and query["scope"] == SCOPE == "playlist-modify-private"
    assert query["code_challenge_method"] == "S256" and query["state"] == request.state
    assert 43 <= len(request.code_verifier) <= 128 and request.code_verifier not in request.url
    assert request.code_verifier not in repr(request)
    assert start_login(user_settings).state != request.state  # fresh for every login


def test_save_creates_a_private_playlist_in_order(user_settings, services):
    user = log_in(user_settings)
    ids = [t.id for t in CATALOGUE_TRACKS[:130]]
    saved = user.save_playlist("Songs like\nHarbour Lights", ids, description="From Songspace")
    created = services.created[saved.id]
    assert created["public"] is False and created["name"] == "Songs like Harbour Lights"
    assert created["items"] == [f"spotify:track:{i}" for i in ids]
    assert saved.url == f"https://open.spotify.com/playlist/{saved.id}" and saved.added == 130
    item_posts = [body for path, body in services.bodies if path == f"/v1/playlists/{saved.id}/items"]
    assert [len(body) for body in item_posts] == [100, 30]
    assert services.grants("authorization_code") == 1 and services.grants("refresh_token") == 0


def test_the_code_is_bound_to_its_verifier(user_settings, services):
    request = start_login(user_settings)
    answer = visit(request.url)
    forged = replace(request, code_verifier=start_login(user_settings).code_verifier)
    with pytest.raises(SpotifyError, match="did not accept this login"):
        finish_login(user_settings, forged, answer)
    assert services.user_tokens == {}


def test_declining_on_spotify_is_a_clear_message(user_settings, services):
    services.login_denied = True
    request = start_login(user_settings)
    with pytest.raises(SpotifyError, match="declined.*nothing was saved"):
        finish_login(user_settings, request, visit(request.url))


def test_an_answer_for_another_session_is_refused(user_settings, services):
    request = start_login(user_settings)
    answer = visit(start_login(user_settings).url)
    with pytest.raises(SpotifyError, match="does not belong to this session"):
        finish_login(user_settings, request, answer)
    assert services.grants("authorization_code") == 0


def test_a_token_spotify_says_expired_is_refreshed_once(user_settings, services):
    user = log_in(user_settings)
    services.expire_user_tokens()
    saved = user.save_playlist("Later", [CATALOGUE_TRACKS[0].id])
    assert services.created[saved.id]["items"] == [f"spotify:track:{CATALOGUE_TRACKS[0].id}"]
    assert services.grants("refresh_token") == 1
    assert services.count("/v1/me/playlists") == 2  # refused once as expired, then done


def test_a_token_about_to_expire_is_refreshed_before_use(user_settings, services):
    services.token_lifetimes = [61]  # the login's token; refreshed ones live an hour
    user = log_in(user_settings)
    time.sleep(1.2)
    user.save_playlist("Soon", [CATALOGUE_TRACKS[0].id])
    assert services.grants("refresh_token") == 1
    assert services.count("/v1/me/playlists") == 1  # never sent with the stale token


def test_a_withdrawn_login_asks_to_log_in_again(user_settings, services):
    user = log_in(user_settings)
    services.revoke_refresh_tokens()
    services.expire_user_tokens()
    with pytest.raises(SpotifyError, match="log in to Spotify again"):
        user.save_playlist("Never", [CATALOGUE_TRACKS[0].id])
    assert services.created == {}


def test_rate_limited_writes_wait_and_are_not_repeated(user_settings, services):
    user = log_in(user_settings)
    services.faults["/v1/me/playlists"] = [(429, {"Retry-After": "1"}, None)]
    services.faults["/v1/playlists/"] = [(502, {}, None)]
    with pytest.raises(SpotifyError, match="created the playlist 'Once'.*took only 0 of its 1 songs.*HTTP 502"):
        user.save_playlist("Once", [CATALOGUE_TRACKS[0].id])
    assert services.count("/v1/me/playlists") == 2  # the 429 was retried after Retry-After
    assert len(services.created) == 1 and services.count("/v1/playlists/") == 1  # a 502 write is not repeated


def test_nothing_to_save_creates_nothing(user_settings, services):
    with pytest.raises(SpotifyError, match="nothing to save"):
        log_in(user_settings).save_playlist("Empty", [])
    assert services.created == {}


def test_without_an_app_the_user_is_told_what_is_needed(user_settings):
    with pytest.raises(SpotifyError, match="SPOTIPY_CLIENT_ID.*SPOTIFY_REDIRECT_URI"):
        start_login(replace(user_settings, spotify_client_id=None))


def test_tokens_are_never_logged_or_written(user_settings, services, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    services.token_lifetimes = [61]
    user = log_in(user_settings)
    time.sleep(1.2)
    user.save_playlist("Private", [t.id for t in CATALOGUE_TRACKS[:3]])
    assert len(services.issued) == 4  # two access tokens, two refresh tokens
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert caplog.records and not any(token in logged for token in services.issued)
    assert not any(token in repr(user) for token in services.issued)
    written = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]
    assert not any(token.encode() in data for token in services.issued for data in written)


def test_a_login_survives_the_trip_through_a_new_page_session(user_settings, services):
    pending = PendingLogins()
    request = start_login(user_settings)
    pending.add(request, keep=[CATALOGUE_TRACKS[1].id])
    answer = visit(request.url)  # the page loads afresh: only the answer's state leads back
    found, songs = pending.take(answer["state"])
    saved = finish_login(user_settings, found, answer).save_playlist("Kept", songs)
    assert services.created[saved.id]["items"] == [f"spotify:track:{CATALOGUE_TRACKS[1].id}"]
    assert pending.take(answer["state"]) is None  # single use


def test_an_old_or_unknown_login_is_gone(user_settings):
    pending = PendingLogins(ttl_s=0.2)
    request = start_login(user_settings)
    pending.add(request)
    assert pending.take("someone else's state") is None
    time.sleep(0.3)
    assert pending.take(request.state) is None


def test_logins_under_way_are_capped_the_oldest_forgotten(user_settings):
    pending = PendingLogins(max_pending=2)
    first, second, third = (start_login(user_settings) for _ in range(3))
    for request in (first, second, third):
        pending.add(request)
    assert pending.take(first.state) is None  # a page's visitors clicking Save cannot fill its memory
    assert pending.take(second.state)[0] == second and pending.take(third.state)[0] == third
