"""Request-to-recommendations time for unseen Spotify tracks, against the loopback fakes, and peak memory.

The store holds the sample catalogue; both encoders are loaded first, as in the app. Each unseen
track is fetched (Spotify track, cover, LRCLIB lyrics), embedded, inserted and recommended from.

Run: .venv/bin/python -m bench.unseen_latency
"""

from __future__ import annotations

import json
import resource
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ingest.context import open_songspace
from ingest.lrclib import LrclibClient
from ingest.pipeline import Ingestor
from ingest.spotify import SpotifyClient
from ingest.unseen import add_spotify_track
from search.recommend import recommend, seed_query
from search.settings import PROJECT_ROOT, load_settings
from tests.fakes import TRACKS, fake_services

SAMPLE = PROJECT_ROOT / "data" / "sample" / "hymns.csv"


def main() -> None:
    with fake_services() as services, tempfile.TemporaryDirectory(prefix="songspace-bench-") as folder:
        env = services.env()
        settings = replace(
            load_settings(), qdrant_url=None, qdrant_path=Path(folder) / "q", collection="bench",
            spotify_client_id=env["SPOTIPY_CLIENT_ID"], spotify_client_secret=env["SPOTIPY_CLIENT_SECRET"],
            spotify_api_url=env["SPOTIFY_API_URL"], spotify_auth_url=env["SPOTIFY_AUTH_URL"],
            lrclib_url=env["LRCLIB_URL"], cover_allowed_hosts=("127.0.0.1",),
        )
        songspace = open_songspace(settings)
        Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False).run(SAMPLE)
        songspace.embedder.load()
        spotify, lyrics = SpotifyClient(settings), LrclibClient(settings)
        rows = []
        for track in TRACKS:
            started = time.perf_counter()
            added = add_spotify_track(songspace, track.id, spotify, lyrics)
            results = recommend(songspace.index, seed_query([added.point]), 0.6, 10)
            seconds = time.perf_counter() - started
            rows.append({"track": track.title, "seconds": round(seconds, 3), "results": len(results), "used": added.message})
            print(json.dumps(rows[-1]), flush=True)
        again = time.perf_counter()
        add_spotify_track(songspace, TRACKS[0].id, spotify, lyrics)
        again = time.perf_counter() - again
        songspace.close()
    print(json.dumps({
        "catalogue_songs": 286,
        "median_s": statistics.median(r["seconds"] for r in rows),
        "max_s": max(r["seconds"] for r in rows),
        "known_track_again_s": round(again, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }, indent=2))


if __name__ == "__main__":
    main()
