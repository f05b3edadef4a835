"""Does half precision (or decoding covers on the GPU) change rankings? Label P@10 measured each way.

Every song of the dev paired set is embedded on one device at float32 and again under fp16
autocast (what `EMBED_DEVICE=cuda` uses), covers decoded by Pillow on the CPU and, where the
device decodes JPEGs, by the device too. Each way's vectors are centred (as the index centres
them) and ranked by brute force; genre precision@10 (macro, same-artist songs left out, as
`python -m search.eval` counts it) is reported per modality and for the dense fused rule at the
default lyrics weight, with how far each way's vectors are from float32's (cosine).

Run: .venv/bin/python -m bench.encoder_precision [--device cuda] [--text-model FOLDER] [--covers-only]
     [--json bench/results/encoder_precision_gpu.json]
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.ingest_throughput import DEFAULT, device_name
from bench.report import report
from ingest.catalogue import read_catalogue
from ingest.covers import CoverFetcher
from ingest.encoders import DEFAULT_TEXT_ENCODER
from ingest.encoders.base import resolve_runtime
from ingest.encoders.image import ImageEncoder, efficientnet_lite0_encoder, efficientnet_lite0_state_dict
from ingest.encoders.text import TextEncoder
from search.eval import K, cosine, precision_at_k
from search.settings import DEFAULT_LYRICS_WEIGHT, load_settings


def centred_cosines(vectors: np.ndarray) -> np.ndarray:
    """Cosine similarities after subtracting the mean vector, as the index compares songs."""
    return cosine(vectors - vectors.mean(axis=0))


def agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """How close another way's unit vectors are to the reference's: cosine, lowest and median."""
    cosines = np.sum(reference * other, axis=1)
    return {"cosine_min": round(float(cosines.min()), 6), "cosine_median": round(float(np.median(cosines)), 6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("catalogue", type=Path, nargs="?", default=DEFAULT)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--text-model", help="a sentence-transformers folder (default: the all-MiniLM-L6-v2 package)")
    parser.add_argument("--covers-only", action="store_true", help="measure the cover encoder alone")
    parser.add_argument("--lyrics-only", action="store_true", help="measure the lyrics encoder alone")
    parser.add_argument("--fp32-only", action="store_true", help="skip fp16 (slow on a CPU)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    base = resolve_runtime(args.device)
    ways = {"fp32": replace(base, precision=None), "fp16": replace(base, precision="float16")}
    if args.fp32_only:
        del ways["fp16"]
    songs = [s for s in read_catalogue(args.catalogue)[0] if s.lyrics and s.cover and s.genre]
    labels = np.array([s.genre for s in songs])
    artists = [frozenset(a.lower() for a in s.artists) for s in songs]
    results: dict[str, Any] = {"device": device_name(args.device), "songs": len(songs), "k": K}

    def p_at_k(similarity: np.ndarray) -> float:
        return round(precision_at_k(similarity, labels, artists, K)[0], 4)

    lyrics: dict[str, np.ndarray] = {}
    if not args.covers_only:
        from ingest.encoders import _text_source

        source = args.text_model or _text_source(DEFAULT_TEXT_ENCODER)
        for way, runtime in ways.items():
            encoder = TextEncoder(DEFAULT_TEXT_ENCODER, source, runtime=runtime)
            encoder.model.float()  # weights in float32 whatever the folder stores; autocast does the rest
            lyrics[way] = encoder.encode([s.lyrics or "" for s in songs])
        results["text_model"] = str(source)
        results["lyrics"] = {way: {f"p@{K}": p_at_k(centred_cosines(v)), **agreement(lyrics["fp32"], v)} for way, v in lyrics.items()}

    covers: dict[str, np.ndarray] = {}
    if not args.lyrics_only:
        fetcher = CoverFetcher(load_settings())
        datas = [fetcher.load(s.cover or "", args.catalogue.parent) for s in songs]
        state = efficientnet_lite0_state_dict()
        decoders = {"pillow": False, **({"device": True} if base.decodes_jpeg else {})}
        for decoder, on_device in decoders.items():
            for way, runtime in ways.items():
                encoder: ImageEncoder = efficientnet_lite0_encoder(state, replace(runtime, decodes_jpeg=on_device))
                with ThreadPoolExecutor() as pool:
                    inputs = list(pool.map(lambda data: encoder.preparation.prepare(data), datas))
                covers[f"{way}, {decoder} decoding"] = encoder.encode_tensors(inputs)
        reference = covers["fp32, pillow decoding"]
        results["cover_encoder"] = "efficientnet-lite0"
        results["covers"] = {way: {f"p@{K}": p_at_k(centred_cosines(v)), **agreement(reference, v)} for way, v in covers.items()}

    if lyrics and covers:
        w = DEFAULT_LYRICS_WEIGHT
        fused = {
            f"{way}, {decoder}": p_at_k(w * centred_cosines(lyrics[way]) + (1 - w) * centred_cosines(covers[f"{way}, {decoder} decoding"]))
            for way in ways
            for decoder in ("pillow", "device")
            if f"{way}, {decoder} decoding" in covers
        }
        results[f"fused_dense_at_lyrics_weight_{w}"] = fused
    report(results, args.json)


if __name__ == "__main__":
    main()
