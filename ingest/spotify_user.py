"""Saving recommendations to the user's own Spotify account: their login by Authorization Code with
PKCE (scope playlist-modify-private), then a private playlist holding the songs.

The flow, as a page runs it: `start_login` gives the URL to send the user to and what to keep until
they come back (in `PendingLogins`, as the redirect starts a new page session); Spotify redirects
to SPOTIFY_REDIRECT_URI with `code` and `state` (or `error`); `finish_login` turns those into a
`SpotifyUser`, whose `save_playlist` creates the playlist
(POST /me/playlists: Spotify removed POST /users/{id}/playlists for apps in development mode in
February 2026) and adds its items 100 to a request.

Tokens live in the SpotifyUser object only: never on disk, never logged, never in its repr. An
expired access token is refreshed (ahead of time, or once when Spotify answers 401); a refresh token
the user revoked ends in a SpotifyError asking them to log in again.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode, urljoin

import requests
import spotipy

from ingest.spotify import (
    SpotifyError,
    as_spotify_error,
    call_with_retries,
    parse_track_id,
    rate_limited,
)
from search.settings import Settings

T = TypeVar("T")
SCOPE = "playlist-modify-private"
ITEMS_PER_REQUEST = 100  # the most Spotify adds in one request
REFRESH_MARGIN_S = 60  # refresh this long before the access token expires, not after a refusal
DEFAULT_PLAYLIST_NAME = "Songspace recommendations"
LOGIN_TTL_S = 600  # how long a login may take on Spotify's pages
MAX_PENDING_LOGINS = 1000  # logins under way at once, the oldest forgotten first: visitors' clicks cannot pile up
_WRITE_ERRORS = {
    403: (
        "Spotify refused to change this account's playlists (HTTP 403). An app in development mode "
        "admits only the users listed in its dashboard (developer.spotify.com > the app > User "
        "Management): add this account there, or log in with one that is listed."
    ),
    404: "Spotify does not know the playlist Songspace just created; try saving again",
}


@dataclass(frozen=True)
class LoginRequest:
    """Where to send the user to log in, and what to keep (in the session) until they come back."""

    url: str
    state: str
    redirect_uri: str
    code_verifier: str = field(repr=False)


@dataclass(frozen=True)
class SavedPlaylist:
    """A playlist created in the user's account."""

    id: str
    name: str
    url: str
    added: int


class PendingLogins:
    """Logins under way, by their state, for a page whose session does not survive the trip to
    Spotify and back (the redirect loads the page afresh). Kept in memory, single use, only for
    `ttl_s`, and at most `max_pending` at once; `keep` travels along (say, the songs to save)."""

    def __init__(self, ttl_s: float = LOGIN_TTL_S, max_pending: int = MAX_PENDING_LOGINS) -> None:
        self.ttl_s = ttl_s
        self.max_pending = max_pending
        self._pending: dict[str, tuple[float, LoginRequest, Any]] = {}
        self._lock = threading.Lock()

    def add(self, request: LoginRequest, keep: Any = None) -> None:
        """Remember a login until its user comes back (or it expires)."""
        now = time.monotonic()
        with self._lock:
            self._pending = {k: v for k, v in self._pending.items() if now - v[0] < self.ttl_s}
            self._pending[request.state] = (now, request, keep)
            while len(self._pending) > self.max_pending:
                del self._pending[next(iter(self._pending))]

    def take(self, state: str) -> tuple[LoginRequest, Any] | None:
        """The login with this state and what was kept with it, once; None if unknown or expired."""
        with self._lock:
            found = self._pending.pop(state, None)
        if found is None or time.monotonic() - found[0] >= self.ttl_s:
            return None
        return found[1], found[2]


def _client_id(settings: Settings) -> str:
    if not settings.spotify_client_id:
        raise SpotifyError(
            "Saving to Spotify needs a Spotify app: create one at developer.spotify.com, set "
            "SPOTIPY_CLIENT_ID to its client id (no secret is needed for this), and add "
            f"SPOTIFY_REDIRECT_URI ({settings.spotify_redirect_uri}, this page's address) to its "
            "Redirect URIs"
        )
    return settings.spotify_client_id


def start_login(settings: Settings) -> LoginRequest:
    """A Spotify login URL for scope playlist-modify-private, with a fresh PKCE verifier and state."""
    client_id = _client_id(settings)
    verifier = secrets.token_urlsafe(64)  # 86 characters from RFC 7636's alphabet (43 to 128 allowed)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    state = secrets.token_urlsafe(16)
    query = urlencode({
        "client_id": client_id,
        "response_type": "code",
        "redirect_uri": settings.spotify_redirect_uri,
        "scope": SCOPE,
        "state": state,
        "code_challenge_method": "S256",
        "code_challenge": challenge,
    })
    # The accounts service's base comes from SPOTIFY_AUTH_URL, its token endpoint (/api/token).
    url = f"{urljoin(settings.spotify_auth_url, '/authorize')}?{query}"
    return LoginRequest(url, state, settings.spotify_redirect_uri, verifier)


def finish_login(settings: Settings, request: LoginRequest, answer: Mapping[str, str]) -> SpotifyUser:
    """The logged-in user, from the query parameters Spotify redirected back with."""
    if not secrets.compare_digest(answer.get("state") or "", request.state):
        raise SpotifyError("This Spotify login answer does not belong to this session; start saving again")
    if answer.get("error"):
        if answer["error"] == "access_denied":
            raise SpotifyError("You declined Songspace's request on Spotify, so nothing was saved")
        raise SpotifyError(f"Spotify could not log you in ({answer['error']}); try again")
    if not answer.get("code"):
        raise SpotifyError("Spotify sent no login code back; start saving again")
    user = SpotifyUser(settings)
    user._grant(
        {
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": request.redirect_uri,
            "client_id": _client_id(settings),
            "code_verifier": request.code_verifier,
        },
        invalid="Spotify did not accept this login (used already, too old, or another session's); start saving again",
    )
    return user


class SpotifyUser:
    """A user logged in to Spotify through this app; keeps their tokens in memory only."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._session = requests.Session()  # plain: spotipy adds no retries, our policy does
        self._access_token = ""
        self._refresh_token = ""
        self._expires_at = 0.0
        # spotipy asks this object for the token before each request (see get_access_token).
        self._api = spotipy.Spotify(
            auth_manager=self, requests_session=self._session, requests_timeout=settings.http_timeout_s
        )
        self._api.prefix = settings.spotify_api_url.rstrip("/") + "/"

    def __repr__(self) -> str:
        return "SpotifyUser(<logged in>)"

    def get_access_token(self, as_dict: bool = False) -> str:
        """The access token, refreshed first if it expires within a minute (spotipy's auth-manager call)."""
        if time.time() >= self._expires_at - REFRESH_MARGIN_S:
            self._refresh()
        return self._access_token

    def _refresh(self) -> None:
        self._grant(
            {
                "grant_type": "refresh_token",
                "refresh_token": self._refresh_token,
                "client_id": _client_id(self._settings),
            },
            invalid="Your Spotify login has expired or was withdrawn; log in to Spotify again",
        )

    def _grant(self, form: dict[str, str], invalid: str) -> None:
        """Ask the token endpoint for tokens (for a login code or a refresh) and keep them; `invalid`
        says what a refused grant means."""
        try:
            response = self._session.post(
                self._settings.spotify_auth_url, data=form, timeout=self._settings.http_timeout_s
            )
        except (requests.ConnectionError, requests.Timeout) as error:
            raise SpotifyError(
                f"Spotify's login service cannot be reached ({error.__class__.__name__}); try again later"
            ) from error
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            body = {}
        if response.status_code == 400 and body.get("error") == "invalid_grant":
            raise SpotifyError(invalid)
        if response.status_code != 200 or not body.get("access_token"):
            reason = body.get("error", "no reason given")
            raise SpotifyError(
                f"Spotify's login service refused (HTTP {response.status_code}, {reason}); try again later"
            )
        self._access_token = body["access_token"]
        self._refresh_token = body.get("refresh_token") or self._refresh_token  # Spotify may rotate it
        self._expires_at = time.time() + float(body.get("expires_in") or 3600)

    def _write(self, call: Callable[[], T]) -> T:
        """One write to the user's account. Only a rate-limit refusal is retried (a write that may
        have happened is never repeated); a 401 (token expired early) refreshes the token once."""
        try:
            try:
                return call_with_retries(call, retryable=rate_limited)
            except spotipy.SpotifyException as error:
                if error.http_status != 401:
                    raise
            self._refresh()
            return call_with_retries(call, retryable=rate_limited)
        except spotipy.SpotifyException as error:
            if error.http_status == 401:
                raise SpotifyError("Spotify no longer accepts this login; log in to Spotify again") from error
            raise as_spotify_error(error, _WRITE_ERRORS) from error
        except (requests.ConnectionError, requests.Timeout) as error:
            raise as_spotify_error(error) from error

    def save_playlist(self, name: str, track_ids: Sequence[str], description: str = "") -> SavedPlaylist:
        """Create a private playlist in the user's account holding these tracks (ids, URIs or URLs), in order."""
        uris = [f"spotify:track:{parse_track_id(ref)}" for ref in track_ids]
        if not uris:
            raise SpotifyError("None of these songs is on Spotify, so there is nothing to save there")
        # Spotify keeps names and descriptions on one line.
        name = " ".join(name.split()) or DEFAULT_PLAYLIST_NAME
        description = " ".join(description.split())
        created = self._write(
            lambda: self._api.current_user_playlist_create(name, public=False, description=description)
        )
        for start in range(0, len(uris), ITEMS_PER_REQUEST):
            batch = uris[start : start + ITEMS_PER_REQUEST]
            try:
                self._write(lambda: self._api.playlist_add_items(created["id"], batch))
            except SpotifyError as error:
                raise SpotifyError(
                    f"Spotify created the playlist {name!r} in your account but took only {start} of its "
                    f"{len(uris)} songs: {error}"
                ) from error
        links = created.get("external_urls") or {}
        url = links.get("spotify") or f"https://open.spotify.com/playlist/{created['id']}"
        return SavedPlaylist(created["id"], created.get("name") or name, url, len(uris))
