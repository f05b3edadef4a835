"""Songs that are not in the catalogue: fetched (Spotify, LRCLIB) or given by hand, embedded and
inserted once, then returned as search seeds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ingest.catalogue import Song
from ingest.context import Songspace
from ingest.covers import CoverError
from ingest.lrclib import LrclibClient, LyricsUnavailable
from ingest.pipeline import Ingestor
from ingest.preparation import COVER_HASH, LYRICS_HASH
from ingest.spotify import DEFAULT_COLLECTION_CAP, SpotifyClient, SpotifyCollection, SpotifyTrack, parse_track_id
from search.engines.base import Filter, Match
from search.index import COVER, LYRICS, SongIndex, SongPoint, normalise_text, song_point_id


class UnseenSongError(Exception):
    """The song cannot be added; the message says why."""


@dataclass
class AddedSong:
    """An unseen song as stored, whether this call inserted it, and what was used."""

    point: SongPoint
    inserted: bool
    notes: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        """One line for people: what was used to recommend from."""
        return "; ".join(self.notes)


def catalogue_match(index: SongIndex, title: str, artists: list[str]) -> SongPoint | None:
    """A stored catalogue song (loaded by the command or on the page) with the same normalised title and a shared normalised artist."""
    wanted = {normalise_text(a) for a in artists}
    where = Filter(must=(Match("title_key", (normalise_text(title),)), Match("source", ("catalogue", "upload"))))
    for point_id, payload in index.scroll_payloads(["artists"], where=where):
        if wanted & {normalise_text(a) for a in payload.get("artists", [])}:
            return index.get([point_id])[0]
    return None


def _insert(songspace: Songspace, song: Song, source: str, notes: list[str]) -> AddedSong:
    match = catalogue_match(songspace.index, song.title, song.artists)
    if match is not None:  # the catalogue has this song: use it rather than shadow it
        return AddedSong(match, inserted=False, notes=["already in the catalogue"])
    ingestor = Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False)
    summary, (prepared,) = ingestor.add([song], source)
    if prepared.stored:  # a stored song is never replaced from the page: use it
        where = "in the catalogue" if prepared.stored.get("source") != "user" else "added by a visitor"
        return AddedSong(songspace.index.get([prepared.point_id])[0], inserted=False, notes=[f"already {where}"])
    if prepared.cover_problem:
        notes.append(f"cover not usable ({prepared.cover_problem})")
    has_lyrics, has_cover = LYRICS_HASH in prepared.payload, COVER_HASH in prepared.payload
    if not has_lyrics and not has_cover:
        raise UnseenSongError(f"{song.title!r}: neither lyrics nor a cover could be had, so there is nothing to recommend from")
    if not has_lyrics:
        notes.append("recommended by cover only")
    elif not has_cover:
        notes.append("recommended by lyrics only")
    (point,) = songspace.index.get([prepared.point_id])
    return AddedSong(point, inserted=summary.inserted == 1, notes=notes)


def stored_spotify_track(index: SongIndex, ref: str) -> SongPoint | None:
    """The stored song for a Spotify track, if there is one (nothing is fetched or inserted)."""
    track_id = parse_track_id(ref)
    point_id = song_point_id(spotify_id=track_id, song_id=None, artists=[], title="")
    # A catalogue song keeps its own point when enrichment gives it a Spotify id: look for both.
    stored = index.get([point_id]) or index.find("spotify_id", track_id, limit=1)
    return stored[0] if stored else None


def add_spotify_track(
    songspace: Songspace,
    ref: str,
    spotify: SpotifyClient | None = None,
    lyrics: LrclibClient | None = None,
) -> AddedSong:
    """Fetch a Spotify track's data, cover and lyrics, and insert it unless it is already stored."""
    track_id = parse_track_id(ref)
    stored = stored_spotify_track(songspace.index, track_id)
    if stored is not None:
        return AddedSong(stored, inserted=False, notes=["already in the catalogue"])
    spotify = spotify or SpotifyClient(songspace.settings)
    lyrics = lyrics or LrclibClient(songspace.settings)
    track = spotify.track(track_id)
    notes = []
    text = None
    try:
        found = lyrics.find(track.title, track.artists, track.album, (track.duration_ms or 0) / 1000 or None)
    except LyricsUnavailable as error:
        found = None
        notes.append(f"lyrics service unavailable ({error})")
    if found is None:
        notes.append("lyrics not found")
    elif found.instrumental:
        notes.append("instrumental, no lyrics")
    else:
        text = found.text
        notes.append("lyrics from LRCLIB")
    cover = track.cover_url()
    notes.append("cover from Spotify" if cover else "no cover on Spotify")
    song = Song(
        row=0, title=track.title, artists=track.artists, album=track.album, year=track.year,
        lyrics=text, cover=cover, spotify_id=track.id, spotify_url=track.url,
        extra={"duration_ms": track.duration_ms} if track.duration_ms else {},  # for playlists out
    )
    return _insert(songspace, song, "spotify", notes)


def add_user_song(
    songspace: Songspace,
    title: str,
    artist: str,
    lyrics: str | None = None,
    cover_bytes: bytes | None = None,
) -> AddedSong:
    """Insert a song given by hand: a title, an artist, and lyrics and/or cover image bytes."""
    if not title.strip() or not artist.strip():
        raise UnseenSongError("a song needs a title and an artist")
    cover = None
    if cover_bytes:
        # Uploads are kept as files, so the page can show them and the usual cover path reads them;
        # the file is checked before it is written, and only this call may read the uploads folder.
        try:
            path = songspace.fetcher.save_upload(cover_bytes)
        except CoverError as error:
            raise UnseenSongError(f"the uploaded cover cannot be used: {error}") from error
        songspace = replace(songspace, fetcher=songspace.fetcher.with_roots(path.parent))
        cover = str(path)
    notes = ["lyrics given" if lyrics and lyrics.strip() else "no lyrics given"]
    notes.append("cover uploaded" if cover else "no cover given")
    song = Song(row=0, title=title.strip(), artists=[artist.strip()], lyrics=(lyrics or "").strip() or None, cover=cover)
    return _insert(songspace, song, "user", notes)


@dataclass
class CollectionAdded:
    """A Spotify playlist's or album's tracks as stored songs, and what could not be used."""

    collection: SpotifyCollection
    songs: list[AddedSong] = field(default_factory=list)  # in the collection's order
    refused: list[tuple[SpotifyTrack, str]] = field(default_factory=list)  # with the reason
    not_stored: list[SpotifyTrack] = field(default_factory=list)  # unseen, left out: inserting was off

    def lines(self) -> list[str]:
        """What happened, for people, a line per fact worth knowing."""
        c = self.collection
        lines = [f"{c.kind} {c.name!r}: {len(self.songs)} of its songs are seeds"]
        if c.truncated:
            lines.append(f"only its first {len(c.tracks)} songs were taken; it has {c.total} entries")
        if c.skipped:
            lines.append(f"{c.skipped} entries are not songs Spotify shares (local files, podcast episodes, removed tracks)")
        inserted = sum(song.inserted for song in self.songs)
        if inserted:
            lines.append(f"{inserted} added to the catalogue, {len(self.songs) - inserted} were in it already")
        no_lyrics = sum(LYRICS not in song.point.vectors for song in self.songs)
        no_cover = sum(COVER not in song.point.vectors for song in self.songs)
        if no_lyrics:
            lines.append(f"{no_lyrics} without lyrics (none found, or instrumental): recommended from by their cover")
        if no_cover:
            lines.append(f"{no_cover} without a usable cover: recommended from by their lyrics")
        if self.not_stored:
            lines.append(f"{len(self.not_stored)} not in the catalogue were left out: adding songs is turned off here")
        lines += [f"left out: {reason}" for _, reason in self.refused]
        return lines


def add_spotify_collection(
    songspace: Songspace,
    ref: str,
    spotify: SpotifyClient,
    lyrics: LrclibClient | None = None,
    limit: int = DEFAULT_COLLECTION_CAP,
    insert: bool = True,
    progress: Callable[[int, int, SpotifyTrack], None] | None = None,
) -> CollectionAdded:
    """The first `limit` tracks of a playlist or album as seeds: unseen ones fetched and inserted
    (unless not `insert`); `progress(done, total, track)` follows each track.

    Raises SpotifyError when Spotify will not list the collection.
    """
    collection = spotify.collection(ref, limit)  # caches the tracks: adding them asks Spotify nothing
    added = CollectionAdded(collection)
    lyrics = lyrics or LrclibClient(songspace.settings)
    for done, track in enumerate(collection.tracks, start=1):
        try:
            if insert:
                added.songs.append(add_spotify_track(songspace, track.id, spotify, lyrics))
            elif (stored := stored_spotify_track(songspace.index, track.id)) is not None:
                added.songs.append(AddedSong(stored, inserted=False, notes=["already in the catalogue"]))
            else:
                added.not_stored.append(track)
        except UnseenSongError as error:
            added.refused.append((track, str(error)))
        if progress is not None:
            progress(done, len(collection.tracks), track)
    return added
