"""Ingestion throughput end to end, against the encoders' own rate measured in the same run.

The encoders alone (on inputs read, decoded and preprocessed beforehand) bound what ingestion can
reach; the pipeline (reading, cover loading and decoding in threads, or processes beside a GPU, both encoders, the words
vector, store writes) is timed into a fresh embedded store, with a breakdown by stage and the CPU
time of the process that feeds the encoders (preparation in worker processes is not in it), then
again with nothing changed.

Catalogues: a real one (default: the 456-song dev set, `../shared/data/eval-dev/paired.csv`), or
with `--songs N` that many distinct songs made from it (each lyric with a numbered extra line,
each cover mirrored, rotated and tinted by its number, so that no content repeats), for a GPU,
where a few hundred songs take less than a second.

Run: .venv/bin/python -m bench.ingest_throughput [CATALOGUE] [--songs 20000] [--device cuda]
     [--repeats N] [--json bench/results/ingest_gpu.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from bench.report import report
from ingest.catalogue import Song, read_catalogue
from ingest.context import open_songspace
from ingest.pipeline import Ingestor
from ingest.preparation import start_worker_server, worker_processes
from search.settings import PROJECT_ROOT, load_settings

DEFAULT = PROJECT_ROOT.parent / "shared" / "data" / "eval-dev" / "paired.csv"
CHUNK = 1024


def _varied_cover(job: tuple[str, str, int]) -> None:
    from PIL import Image, ImageOps

    source, target, take = job
    image = Image.open(source).convert("RGB").resize((300, 300))
    if take % 2:
        image = ImageOps.mirror(image)
    image = image.rotate(7 * (take % 50), fillcolor=(take * 37 % 256, take * 91 % 256, take * 53 % 256))
    tint = Image.new("RGB", image.size, (take * 13 % 256, take * 29 % 256, take * 71 % 256))
    Image.blend(image, tint, 0.15).save(target, "JPEG", quality=85)


def varied_catalogue(source: Path, songs: int, folder: Path) -> Path:
    """`songs` distinct songs made from the source catalogue's songs that have lyrics and a cover."""
    originals = [s for s in read_catalogue(source)[0] if s.lyrics and s.cover]
    jobs, rows = [], []
    for i in range(songs):
        song, take = originals[i % len(originals)], i // len(originals)
        cover = folder / f"c{i}.jpg"
        jobs.append((str(source.parent / song.cover), str(cover), take))  # type: ignore[operator]
        rows.append({"id": f"v{i}", "title": f"{song.title} ({take})", "artist": ";".join(song.artists),
                     "lyrics": f"{song.lyrics}\n(take {take} of verse {i})", "cover_path": cover.name})
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_varied_cover, jobs, chunksize=64))
    path = folder / "varied.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def encoders_alone(songspace: Any, songs: list[Song], base: Path) -> dict[str, float]:
    """Both encoders on preloaded inputs, as the image encoder's `prepare` makes them (decoded and
    preprocessed on the CPU, or a GPU's JPEG bytes): the ceiling for ingestion."""
    text, image, fetcher = songspace.embedder.text, songspace.embedder.image, songspace.fetcher
    lyrics = [s.lyrics for s in songs if s.lyrics]
    covers = [s.cover for s in songs if s.cover]
    text_seconds = image_seconds = 0.0
    for start in range(0, len(lyrics), CHUNK):
        started = time.perf_counter()
        text.encode(lyrics[start : start + CHUNK])
        text_seconds += time.perf_counter() - started
    def prepared(cover: str) -> torch.Tensor:
        return image.preparation.prepare(fetcher.load(cover, base))

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        for start in range(0, len(covers), CHUNK):  # a chunk at a time: 20k preprocessed tensors need 12 GB
            inputs = list(pool.map(prepared, covers[start : start + CHUNK]))
            started = time.perf_counter()
            image.encode_tensors(inputs)
            image_seconds += time.perf_counter() - started
    return {
        "text_songs_per_s": len(lyrics) / text_seconds,
        "image_songs_per_s": len(covers) / image_seconds,
        "encoder_bound_songs_per_s": len(songs) / (text_seconds + image_seconds),
    }


def device_name(device: str) -> str:
    """The GPU's name, or the CPU's."""
    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def one_round(catalogue: Path, device: str, batch_size: int | None) -> dict[str, Any]:
    """Encoders alone, then the pipeline, then a re-run, each on a fresh store and cache."""
    with tempfile.TemporaryDirectory(prefix="songspace-bench-") as folder:
        settings = replace(load_settings(), qdrant_url=None, engine="edge", qdrant_path=Path(folder) / "q",
                           cache_dir=Path(folder) / "cache", collection="bench", device=device)
        processes = worker_processes(settings)
        if processes:
            start_worker_server()  # as the command does, before the store opens and the encoders load
        if settings.store_process is None:  # as the command chooses
            settings = replace(settings, store_process=processes > 0)
        songspace = open_songspace(settings)
        songs, _ = read_catalogue(catalogue)
        songspace.embedder.text.encode(["warm up"])
        encoders = encoders_alone(songspace, songs, catalogue.parent)
        on_gpu = songspace.embedder.text.runtime.device == "cuda"
        encoder_names = f"{songspace.index.encoders.text} + {songspace.index.encoders.image}"
        ingestor = Ingestor(songspace.index, songspace.embedder, songspace.fetcher,
                            batch_size=batch_size or (1024 if on_gpu else 128), progress=False)
        cpu = time.process_time()
        first = ingestor.run(catalogue)
        cpu = time.process_time() - cpu
        again = ingestor.run(catalogue)
        songspace.close()
    pipeline = first.read / first.elapsed_seconds
    return {
        "encoders": encoder_names,
        **{k: round(v, 1) for k, v in encoders.items()},
        "songs_per_s": round(pipeline, 1),
        "share_of_encoder_bound": round(pipeline / encoders["encoder_bound_songs_per_s"], 3),
        "elapsed_s": round(first.elapsed_seconds, 2),
        "prepare_processes": ingestor.processes,
        "store_process": settings.store_process,
        # The process that feeds the encoders and the store is the one that cannot scale with cores.
        "main_process_cpu_ms_per_song": round(1000 * cpu / first.read, 3),
        "stages_s": {k: round(v, 2) for k, v in first.stages.items()},
        "rerun_s": round(again.elapsed_seconds, 2),
        "rerun_model_s": round(again.model_seconds, 3),
        "rerun_unchanged": again.unchanged,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("catalogue", type=Path, nargs="?", default=DEFAULT)
    parser.add_argument("--songs", type=int, help="make this many distinct songs from the catalogue")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--batch-size", type=int, help="songs a batch (default: 128 on the CPU, 1024 on a GPU)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--weights", default="their packages' real weights",
                        help="what the encoders' weights are, for the results (say 'random' where they are)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="songspace-catalogue-") as folder:
        catalogue = varied_catalogue(args.catalogue, args.songs, Path(folder)) if args.songs else args.catalogue
        rounds = []
        for _ in range(args.repeats):
            rounds.append(one_round(catalogue, args.device, args.batch_size))
            print(json.dumps(rounds[-1]), flush=True)
        songs = len(read_catalogue(catalogue)[0])
    middle = sorted(rounds, key=lambda r: r["songs_per_s"])[len(rounds) // 2]  # the median round
    results = {
        "device": device_name(args.device),
        "songs": songs,
        "encoders": f"{middle['encoders']} ({args.weights})",
        "songs_per_s": middle["songs_per_s"],
        "encoder_bound_songs_per_s": middle["encoder_bound_songs_per_s"],
        "share_of_encoder_bound": middle["share_of_encoder_bound"],
        "stages_s": middle["stages_s"],
        "rounds": rounds,
    }
    report(results, args.json)


if __name__ == "__main__":
    main()
