"""`genretune data prepare-fma` on a small archive in FMA's exact formats, then stats, train and a
tiny search on its output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fma_fixture import BROKEN, GENRES, UNLABELED, make_fma

from genretune.data.audio import MelSpec, log_mel, mel_filterbank
from genretune.data.feature_dir import load_feature_dir
from genretune.data.fma import WORK_DIR, build_labels, read_genre_table, read_tracks

# Starts Ray or trains real models: the full suite (make test), not the fast lane.
pytestmark = pytest.mark.slow

GENRETUNE = str(Path(sys.executable).with_name("genretune"))
SMALL_MELS = [
    "--sample-rate",
    "8000",
    "--n-fft",
    "256",
    "--hop-length",
    "128",
    "--n-mels",
    "32",
    "--frames",
    "48",
    "--min-seconds",
    "1.0",
]


def _prepare(fma: dict, out: Path, *extra: str, **kwargs) -> subprocess.CompletedProcess:
    argv = [
        GENRETUNE,
        "data",
        "prepare-fma",
        "--metadata",
        str(fma["metadata"]),
        "--audio",
        str(fma["audio"]),
        "--out",
        str(out),
        *SMALL_MELS,
        *extra,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict:
    return make_fma(tmp_path_factory.mktemp("fma"))


@pytest.fixture(scope="module")
def prepared(archive, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "fma_small_features"
    res = _prepare(archive, out, "--subset", "medium", "--workers", "2")
    assert res.returncode == 0, res.stderr
    return out


def test_feature_dir_matches_the_metadata_and_lists_skipped_clips(archive, prepared):
    features, labels, genres, split = load_feature_dir(prepared)
    track_ids = np.load(prepared / "track_ids.npy")
    truth = archive["truth"]
    good = [t for t in truth if t not in BROKEN and t != UNLABELED]
    assert sorted(track_ids) == sorted(good)
    assert features.shape == (len(good), 32, 48) and features.dtype == np.float16
    assert np.isfinite(np.asarray(features, dtype=np.float32)).all()
    # Columns are the genres present, titled from genres.csv, in genre-id order.
    assert list(genres) == [GENRES[g][1] for g in sorted(GENRES)]
    by_title = {GENRES[g][1]: g for g in GENRES}
    for row, track_id in enumerate(track_ids):
        expected = sorted(truth[track_id]["genres"])
        assert sorted(by_title[genres[j]] for j in np.flatnonzero(labels[row])) == expected
        assert split[row] == {"training": 0, "validation": 1, "test": 2}[truth[track_id]["split"]]
    skipped = pd.read_csv(prepared / "skipped.csv")
    reasons = dict(zip(skipped["track_id"], skipped["reason"], strict=True))
    assert reasons[141] == "empty file"
    assert reasons[142].startswith("corrupt")
    assert reasons[143].startswith("too short")
    assert reasons[144] == "missing file"
    assert reasons[UNLABELED] == "no genre label or split"
    assert not (prepared / WORK_DIR).exists(), "work files are removed once finished"
    # Each genre's tone lands in its own mel band: the data is learnable, not noise.
    fb = mel_filterbank(8000, 256, 32)
    centres = np.linspace(0, 4000, 129)[fb.argmax(axis=1)]
    for j, title in enumerate(genres):
        rows = np.flatnonzero(labels.sum(1) == 1 & (labels[:, j] == 1))
        if len(rows):
            band = int(np.asarray(features[rows], np.float32).mean(axis=(0, 2)).argmax())
            assert abs(centres[band] - GENRES[by_title[title]][3]) < 200, title


def test_rerun_is_a_no_op_and_stats_train_search_run_on_it(prepared, archive, local_ray, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in prepared.iterdir()}
    res = _prepare(archive, prepared, "--subset", "medium")
    assert res.returncode == 0 and "already prepared" in res.stderr
    assert {p.name: p.stat().st_mtime_ns for p in prepared.iterdir()} == before
    other = _prepare(archive, prepared, "--subset", "medium", "--n-mels", "16")
    assert other.returncode == 2 and "other settings" in other.stderr

    stats = subprocess.run(
        [GENRETUNE, "data", "stats", "--data", str(prepared)], capture_output=True, text=True
    )
    assert stats.returncode == 0, stats.stderr
    assert f"{len(GENRES)} genres" in stats.stdout

    train = subprocess.run(
        [GENRETUNE, "train", "--data", str(prepared), "--epochs", "2", "--base-channels", "4"]
        + ["--output-dir", str(tmp_path / "models"), "--no-progress", "--threads", "1"],
        capture_output=True,
        text=True,
    )
    assert train.returncode == 0, train.stderr
    assert "test" in train.stdout

    from helpers import search_settings

    from genretune.search.launch import run_search

    s = search_settings(
        tmp_path / "runs",
        "--data",
        str(prepared),
        "--name",
        "fma",
        "--num-samples",
        "2",
        "--epochs",
        "2",
        "--grace-period",
        "2",
    )
    results = run_search(s)
    assert len(results) == 2 and not results.errors
    saved = json.loads((tmp_path / "runs" / "fma" / "genretune_search.json").read_text())
    # The default 50..1000 range keeps no genre of so small a dataset: it was narrowed.
    assert saved["space"]["min_samples_per_genre"]


def test_metadata_subsets_and_label_columns(archive):
    tracks = read_tracks(archive["metadata"])
    table = read_genre_table(archive["metadata"])
    truth = archive["truth"]
    small = build_labels(tracks, table, "small", "genres", 1, "t")
    assert all(truth[t]["subset"] == "small" for t in small.track_ids)
    medium = build_labels(tracks, table, "medium", "genres", 1, "t")
    assert len(medium.track_ids) > len(small.track_ids)
    top = build_labels(tracks, table, "medium", "genre_top", 1, "t")
    assert top.labels.sum(axis=1).max() == 1, "genre_top is one label per track"
    assert set(top.genres) <= {t for p, t, _, _ in GENRES.values() if p == 0}
    every = build_labels(tracks, table, "medium", "genres_all", 1, "t")
    assert every.labels.sum() > medium.labels.sum(), "genres_all adds the parent genres"
    fewest = int(medium.labels.sum(axis=0).min())
    rare = build_labels(tracks, table, "medium", "genres", fewest + 1, "t")
    assert 0 < len(rare.genres) < len(medium.genres)


def test_killed_preparation_resumes_where_it_stopped(tmp_path):
    fma = make_fma(tmp_path / "fma", n_tracks=150, seconds=2.0)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [GENRETUNE, "data", "prepare-fma", "--metadata", str(fma["metadata"])]
        + ["--audio", str(fma["audio"]), "--out", str(out), "--workers", "1", *SMALL_MELS],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    status = out / WORK_DIR / "status.npy"
    deadline = time.monotonic() + 120
    done = 0
    while done < 20:
        assert proc.poll() is None, "finished before it could be interrupted"
        assert time.monotonic() < deadline
        if status.is_file():
            try:
                done = int((np.load(status, mmap_mode="r") != 0).sum())
            except (ValueError, OSError):
                pass
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "features.npy").exists()
    res = _prepare(fma, out, "--workers", "1")
    assert res.returncode == 0, res.stderr
    resumed = int(res.stderr.split("resuming: ")[1].split(" of ")[0].replace(",", ""))
    assert resumed >= 20
    # Identical to a preparation that was never interrupted.
    clean = tmp_path / "clean"
    assert _prepare(fma, clean, "--workers", "2").returncode == 0
    for name in ("features.npy", "labels_multilabel.npy", "split.npy", "track_ids.npy"):
        assert np.array_equal(np.load(out / name), np.load(clean / name)), name
    assert (out / "skipped.csv").read_text() == (clean / "skipped.csv").read_text()


def test_log_mel_of_a_tone_peaks_at_its_frequency():
    spec = MelSpec(sample_rate=22050, n_fft=2048, hop_length=512, n_mels=128, frames=40)
    t = np.arange(22050) / 22050
    mel = log_mel(np.sin(2 * np.pi * 1000.0 * t).astype(np.float32), spec)
    assert mel.shape == (128, 40)
    fb = mel_filterbank(22050, 2048, 128)
    centre = np.linspace(0, 11025, 1025)[fb[int(mel.mean(axis=1).argmax())].argmax()]
    assert abs(centre - 1000.0) < 60
    assert mel.max() - mel.min() <= 80.0 + 1e-3, "top_db=80 as librosa's power_to_db"


def test_ray_tasks_decode_the_same_features(archive, prepared, local_ray, tmp_path):
    """With --address, clips are decoded as Ray tasks (here on the session's local Ray), by
    the decoder the command hands in (data/ itself imports no Ray)."""
    from genretune.data.fma import PrepareSettings, prepare_fma
    from genretune.search.ray_cluster import ray_decoder

    spec = MelSpec(
        sample_rate=8000, n_fft=256, hop_length=128, n_mels=32, frames=48, min_seconds=1.0
    )
    out = tmp_path / "via_ray"
    settings = PrepareSettings(
        metadata=archive["metadata"],
        audio=archive["audio"],
        out=out,
        subset="medium",
        spec=spec,
    )
    summary = prepare_fma(settings, log=lambda text: None, decoder=(ray_decoder("auto"), "Ray"))
    assert summary["tracks"] == len(np.load(prepared / "track_ids.npy"))
    for name in ("features.npy", "labels_multilabel.npy", "split.npy", "track_ids.npy"):
        assert np.array_equal(np.load(out / name), np.load(prepared / name)), name


def test_features_that_cannot_fit_on_the_disk_are_refused_before_anything_is_written(tmp_path):
    import shutil

    from genretune.data import InputError
    from genretune.data.fma import check_disk_space

    out = tmp_path / "not" / "yet" / "there"
    free = shutil.disk_usage(tmp_path).free
    check_disk_space(out, free // 2)
    with pytest.raises(InputError, match="GiB free"):
        check_disk_space(out, free * 2)
    assert not (tmp_path / "not").exists()


def test_predict_on_audio_uses_prepare_fma_features_and_skips_what_cannot_decode(
    archive, prepared, tmp_path
):
    """A model trained on prepare-fma's features tags the archive's MP3 clips: each clip's
    features are its prepare-fma row exactly, so its probabilities are the feature dir's; the
    broken clips are skipped and counted."""
    from genretune.model.predictor import load_model
    from genretune.search.cli.predict import _audio_files, _decoded_audio

    models = tmp_path / "models"
    train = subprocess.run(
        [GENRETUNE, "train", "--data", str(prepared), "--epochs", "2", "--base-channels", "4"]
        + ["--output-dir", str(models), "--no-progress", "--threads", "1"],
        capture_output=True,
        text=True,
    )
    assert train.returncode == 0, train.stderr
    (model_dir,) = models.iterdir()
    card = json.loads((model_dir / "config.json").read_text())
    assert (
        card["features"]["audio"]
        == json.loads((prepared / "prepare.json").read_text())["identity"]["mel"]
    ), "the model dir records prepare-fma's exact settings"

    features = np.load(prepared / "features.npy")
    row_of = {int(t): i for i, t in enumerate(np.load(prepared / "track_ids.npy"))}
    skipped: list = []
    files = _audio_files([archive["audio"]])
    for names, block in _decoded_audio(files, card["features"]["audio"], skipped):
        for name, clip in zip(names, block, strict=True):
            track = int(Path(name).stem)
            if track in row_of:  # an unlabeled track decodes too, but has no row
                assert np.array_equal(clip, features[row_of[track]]), name
    assert {Path(n).stem for n, _ in skipped} == {"000141", "000142", "000143"}

    out = tmp_path / "audio.csv"
    res = subprocess.run(
        [GENRETUNE, "predict", "--model-dir", str(model_dir), "--audio", str(archive["audio"])]
        + ["-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "skipped 3 of" in res.stderr
    by_audio = pd.read_csv(out, keep_default_na=False)
    by_audio["track"] = [int(Path(name).stem) for name in by_audio["track"]]
    model = load_model(model_dir)
    columns = [f"p:{g}" for g in model.genres]
    labeled = by_audio[by_audio["track"].isin(row_of)]
    expected = model.predict_proba(features[[row_of[t] for t in labeled["track"]]])
    assert np.allclose(labeled[columns].to_numpy(), expected, atol=1e-6)
    # Nothing decodes: refused in one line, nothing written.
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.mp3").write_bytes(b"\xff\xfb\x90" + bytes(3000))
    res = subprocess.run(
        [GENRETUNE, "predict", "--model-dir", str(model_dir), "--audio", str(junk)]
        + ["-o", str(tmp_path / "none.csv")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "no file could be decoded" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "none.csv").exists()
