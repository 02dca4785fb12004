"""`genretune predict` and `genretune.load_model` on a model trained here, on data whose rare
genre the model filters out."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genretune.search.cli import main

N_GENRES, RARE = 5, 4  # genre 4 is on 6 tracks: --min-samples-per-genre 10 removes it


def _imbalanced_feature_dir(directory: Path) -> Path:
    rng = np.random.default_rng(3)
    n, shape = 300, (16, 16)
    labels = np.zeros((n, N_GENRES), dtype=np.uint8)
    labels[np.arange(n), rng.integers(0, RARE, n)] = 1
    labels[rng.choice(n, 6, replace=False), RARE] = 1
    features = rng.normal(0, 0.3, size=(n, *shape)).astype(np.float32)
    for g in range(N_GENRES):
        features[labels[:, g] == 1, (g * 3) % shape[0], :] += 2.0
    directory.mkdir(parents=True)
    np.save(directory / "features.npy", features)
    np.save(directory / "labels_multilabel.npy", labels)
    (directory / "genres.json").write_text(json.dumps([f"genre {g}" for g in range(N_GENRES)]))
    fifth = np.arange(n) % 5  # 0-2 train, 3 val, 4 test
    np.save(directory / "split.npy", np.select([fifth < 3, fifth == 3], [0, 1], 2).astype(np.int8))
    np.save(directory / "track_ids.npy", np.arange(1000, 1000 + n, dtype=np.int64))
    return directory


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("predict")
    data = _imbalanced_feature_dir(root / "features")
    argv = ["train", "--data", str(data), "--epochs", "3", "--base-channels", "4"]
    argv += ["--min-samples-per-genre", "10", "--output-dir", str(root / "models")]
    assert main([*argv, "--no-progress", "--device", "cpu"]) == 0
    (model_dir,) = (root / "models").iterdir()
    split = np.load(data / "split.npy")
    test_rows = np.flatnonzero(split == 2)
    features = np.load(data / "features.npy")
    np.save(root / "test_features.npy", features[test_rows])
    return {
        "root": root,
        "data": data,
        "model": model_dir,
        "test_rows": test_rows,
        "test_labels": np.load(data / "labels_multilabel.npy")[test_rows],
        "metrics": json.loads((model_dir / "metrics.json").read_text()),
        "card": json.loads((model_dir / "config.json").read_text()),
    }


def _predict(trained, out: Path, *extra: str, source: list[str] | None = None) -> pd.DataFrame:
    source = source or ["--features", str(trained["root"] / "test_features.npy")]
    assert main(["predict", "--model-dir", str(trained["model"]), *source, "-o", str(out),
                 *extra]) == 0  # fmt: skip
    if out.suffix == ".json":
        return pd.DataFrame(json.loads(out.read_text())["tracks"])
    if out.suffix == ".parquet":
        return pd.read_parquet(out)
    return pd.read_csv(out, keep_default_na=False)


def _f1_in_the_dataset_label_space(trained, df: pd.DataFrame) -> float:
    """Micro-F1 over all the dataset's genres, a filtered-out genre never predicted."""
    from genretune.model.metrics import multilabel_metrics

    genres = trained["card"]["genres"]
    pred = np.zeros((len(df), len(genres)), dtype=bool)
    for row, tags in enumerate(df["genres"]):
        for genre in filter(None, tags.split("|")):
            pred[row, genres.index(genre)] = True
    return multilabel_metrics(trained["test_labels"], pred)["f1"]


def test_predict_on_the_test_split_reproduces_the_test_report(trained, tmp_path):
    card, metrics = trained["card"], trained["metrics"]
    assert card["kept_genres"] == [f"genre {g}" for g in range(RARE)], "the rare genre is gone"
    df = _predict(trained, tmp_path / "p.csv")
    assert list(df.columns) == ["track", "genres"] + [f"p:{g}" for g in card["kept_genres"]]
    assert list(df["track"]) == list(range(len(trained["test_rows"])))
    assert _f1_in_the_dataset_label_space(trained, df) == metrics["test_tuned_rule"]["test_f1"]
    # The rule the run was configured with, given as flags, reproduces the other report.
    configured = metrics["decision_rule"]
    flags = []
    if configured["threshold"] is not None:
        flags += ["--threshold", str(configured["threshold"])]
    if configured["top_k"] is not None:
        flags += ["--top-k", str(configured["top_k"])]
    df = _predict(trained, tmp_path / "configured.csv", *flags)
    assert _f1_in_the_dataset_label_space(trained, df) == metrics["test"]["test_f1"]


def test_threshold_and_top_k_flags(trained, tmp_path):
    kept = trained["card"]["kept_genres"]

    def tags(df: pd.DataFrame) -> list[set[str]]:
        return [set(filter(None, t.split("|"))) for t in df["genres"]]

    def expected(df: pd.DataFrame, threshold=None, top_k=None) -> list[set[str]]:
        p = df[[f"p:{g}" for g in kept]].to_numpy()
        out = []
        for row in p:
            chosen = set(range(len(kept)))
            if threshold is not None:
                chosen &= set(np.flatnonzero(row >= threshold))
            if top_k is not None:
                chosen &= set(np.argsort(-row, kind="stable")[:top_k])
            out.append({kept[j] for j in chosen})
        return out

    alone = _predict(trained, tmp_path / "t.csv", "--threshold", "0.3")
    assert tags(alone) == expected(alone, threshold=0.3)
    top = _predict(trained, tmp_path / "k.csv", "--top-k", "2")
    assert tags(top) == expected(top, top_k=2) and all(len(t) == 2 for t in tags(top))
    both = _predict(trained, tmp_path / "tk.csv", "--threshold", "0.3", "--top-k", "1")
    assert tags(both) == expected(both, threshold=0.3, top_k=1)
    assert any(t != u for t, u in zip(tags(alone), tags(both), strict=True)), "the flags matter"


def test_load_model_equals_the_command_in_every_format(trained, tmp_path):
    import genretune

    model = genretune.load_model(trained["model"])
    features = np.load(trained["root"] / "test_features.npy", mmap_mode="r")
    prob = model.predict_proba(features)
    assert prob.dtype == np.float32 and prob.shape == (len(features), len(model.genres))
    assert model.genres == tuple(trained["card"]["kept_genres"])
    rule = trained["card"]["decision_rule"]
    assert (model.rule.threshold, model.rule.top_k) == (rule["threshold"], rule["top_k"])
    columns = [f"p:{g}" for g in model.genres]
    tags = model.predict(features)
    for suffix in (".csv", ".json", ".parquet"):
        df = _predict(trained, tmp_path / f"p{suffix}")
        # Full precision: every file gives back the float32 probabilities exactly.
        assert np.array_equal(df[columns].to_numpy().astype(np.float32), prob), suffix
        names = np.array(model.genres)
        assert list(df["genres"]) == ["|".join(names[row]) for row in tags], suffix
    header = json.loads((tmp_path / "p.json").read_text())
    assert header["label_space"]["never_predicted"] == [f"genre {RARE}"]
    assert header["decision_rule"] == {"threshold": rule["threshold"], "top_k": rule["top_k"]}
    # float16 and float64 inputs are cast; one clip alone is one row (a batch of one: the same
    # probabilities to float32 rounding, as CPU kernels block a batch by its size).
    assert np.allclose(model.predict_proba(features.astype(np.float64)), prob, atol=1e-6)
    assert np.allclose(model.predict_proba(np.asarray(features[0])), prob[:1], atol=1e-6)


def test_one_clip_saved_alone_is_one_track(trained, tmp_path):
    import genretune

    clip = np.load(trained["root"] / "test_features.npy")[3]
    np.save(tmp_path / "clip.npy", clip)
    df = _predict(trained, tmp_path / "one.csv", source=["--features", str(tmp_path / "clip.npy")])
    model = genretune.load_model(trained["model"])
    assert list(df["track"]) == [0]
    expected = model.predict_proba(clip)
    assert np.allclose(df[[f"p:{g}" for g in model.genres]].to_numpy(), expected, atol=1e-6)


def test_a_feature_dir_names_rows_by_its_track_ids_in_input_order(trained, tmp_path, capsys):
    df = _predict(trained, tmp_path / "all.csv", source=["--feature-dir", str(trained["data"])])
    assert list(df["track"]) == list(range(1000, 1300))
    err = capsys.readouterr().err
    assert "predicts 4 of its dataset's 5 genres" in err and "never predicted" in err
    assert "# " not in (tmp_path / "all.csv").read_text(), "no comment lines in the CSV"


def test_the_python_example_of_docs_predict_runs(trained, tmp_path):
    from helpers import DOCS, doc_code_blocks, run_doc_python

    (doc,) = [p for p in DOCS if p.name == "predict.md"]
    (code,) = doc_code_blocks(doc, ("python",))
    name = re.search(r'load_model\("([^"]+)"\)', code).group(1)
    features = trained["root"] / "test_features.npy"
    setup = f"import numpy as np\nx = np.load({str(features)!r})\n"
    check = "\nassert tags.shape == (len(x), len(model.genres)) and tags.dtype == bool\n"
    run_doc_python(code + check, tmp_path, {name: str(trained["model"])}, setup)
