"""`genretune data prepare-fma`: FMA's metadata and MP3 clips -> a feature dir of log-mels."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from genretune.data import InputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metadata", type=Path, required=True, help="FMA's fma_metadata directory")
    p.add_argument("--audio", type=Path, required=True, help="e.g. fma_small (000/000002.mp3)")
    p.add_argument("--out", type=Path, required=True, help="the feature dir to write")
    p.add_argument("--subset", default="small", help="small (default), medium, large or full")
    p.add_argument("--labels", default="genres", help="genres (default), genres_all, genre_top")
    p.add_argument("--min-tracks", type=int, default=1, help="keep genres with >= N tracks")
    p.add_argument("--sample-rate", type=int, default=22050)
    p.add_argument("--n-fft", type=int, default=2048)
    p.add_argument("--hop-length", type=int, default=512)
    p.add_argument("--n-mels", type=int, default=128)
    p.add_argument("--frames", type=int, default=1280, help="spectrogram width (hops)")
    p.add_argument("--min-seconds", type=float, default=10.0, help="skip clips shorter than this")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="local processes (default: the CPUs of this machine, at most that)",
    )
    p.add_argument("--address", help="decode as Ray tasks on this cluster instead")


def run(args: argparse.Namespace) -> int:
    try:
        import soundfile  # noqa: F401

        from genretune.data.audio import MelSpec
        from genretune.data.fma import PrepareSettings, prepare_fma
    except ImportError:
        raise InputError("prepare-fma needs soundfile: pip install 'genretune[audio]'") from None
    spec = MelSpec(
        sample_rate=args.sample_rate,
        n_fft=args.n_fft,
        hop_length=args.hop_length,
        n_mels=args.n_mels,
        frames=args.frames,
        min_seconds=args.min_seconds,
    )
    settings = PrepareSettings(
        metadata=args.metadata,
        audio=args.audio,
        out=args.out,
        subset=args.subset,
        labels=args.labels,
        min_tracks=args.min_tracks,
        spec=spec,
        workers=args.workers,
    )
    decoder = None
    if args.address:
        from genretune.search.ray_cluster import check_address, ray_decoder

        check_address(args.address)  # before anything is written: ray.init would retry minutes
        decoder = (ray_decoder(args.address), f"Ray at {args.address}")
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    prepare_fma(settings, log=log, decoder=decoder)
    print(f"next: genretune data stats --data {args.out}")
    return 0
