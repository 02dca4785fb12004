"""Metrics equal scikit-learn's on the same arrays, including empty rows."""

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    hamming_loss,
    jaccard_score,
    precision_score,
    recall_score,
)

from genretune.model.metrics import (
    METRIC_NAMES,
    macro_pr_auc,
    multilabel_metrics,
    to_original_space,
)


def _sklearn(y_true, y_pred):
    kw = {"average": "micro", "zero_division": 0}
    return {
        "f1": f1_score(y_true, y_pred, **kw),
        "precision": precision_score(y_true, y_pred, **kw),
        "recall": recall_score(y_true, y_pred, **kw),
        "hamming_loss": hamming_loss(y_true, y_pred),
        "jaccard": jaccard_score(y_true, y_pred, average="samples", zero_division=0),
        "avg_predictions": y_pred.sum(1).mean(),
    }


def _cases():
    rng = np.random.default_rng(0)
    for n, g, pt, pp in [
        (50, 5, 0.2, 0.3),
        (200, 70, 0.02, 0.1),
        (7, 3, 0.5, 0.5),
        (30, 10, 0.0, 0.2),
    ]:
        yield (rng.random((n, g)) < pt).astype(np.uint8), (rng.random((n, g)) < pp).astype(np.uint8)
    t = (rng.random((40, 6)) < 0.3).astype(np.uint8)
    t[:5] = 0  # tracks with no true label
    p = (rng.random((40, 6)) < 0.3).astype(np.uint8)
    p[3:9] = 0  # tracks with no prediction (3, 4 have neither)
    yield t, p
    yield t, np.zeros_like(t)
    yield t, np.ones_like(t)


@pytest.mark.parametrize("y_true, y_pred", list(_cases()))
def test_metrics_equal_sklearn(y_true, y_pred):
    ours = multilabel_metrics(y_true, y_pred)
    assert tuple(ours) == METRIC_NAMES
    theirs = _sklearn(y_true, y_pred)
    for key in METRIC_NAMES:
        np.testing.assert_allclose(ours[key], theirs[key], atol=1e-12, err_msg=key)


def test_metrics_reject_empty_and_mismatched():
    with pytest.raises(ValueError, match="0 tracks"):
        multilabel_metrics(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="must both be"):
        multilabel_metrics(np.zeros((2, 3)), np.zeros((2, 4)))


def test_macro_pr_auc_skips_genres_without_positives():
    rng = np.random.default_rng(1)
    y = (rng.random((80, 5)) < 0.3).astype(int)
    y[:, 2] = 0
    s = rng.random((80, 5))
    expected = np.mean([average_precision_score(y[:, c], s[:, c]) for c in (0, 1, 3, 4)])
    assert macro_pr_auc(y, s) == pytest.approx(expected)
    assert np.isnan(macro_pr_auc(np.zeros((4, 2)), s[:4, :2]))


def test_to_original_space_places_columns():
    kept = np.array([[0.1, 0.9], [0.5, 0.2]], dtype=np.float32)
    out = to_original_space(kept, np.array([1, 3]), 4)
    np.testing.assert_array_equal(out, np.array([[0, 0.1, 0, 0.9], [0, 0.5, 0, 0.2]], np.float32))
    assert out.dtype == np.float32


def test_macro_f1_coverage_and_thirds_equal_their_definitions():
    from sklearn.metrics import f1_score

    from genretune.model.metrics import coverage_metrics

    rng = np.random.default_rng(5)
    y = (rng.random((200, 12)) < 0.15).astype(np.uint8)
    y[:, 11] = 0  # a genre nobody carries in this split
    kept = np.ones(12, bool)
    kept[[2, 7]] = False  # dropped by the filter: never predicted
    pred = (rng.random((200, 12)) < 0.2) & kept[None, :]
    thirds = (np.array([0, 1, 2, 3]), np.array([4, 5, 6, 7]), np.array([8, 9, 10, 11]))
    m = coverage_metrics(y, pred, kept, thirds)
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert m["coverage"] == 10 / 12
    assert m["label_coverage"] == pytest.approx(y[:, kept].sum() / y.sum())
    for name, genres in zip(("rare", "middle", "common"), thirds, strict=True):
        expected = f1_score(y[:, genres], pred[:, genres], average="macro", zero_division=0)
        assert m[f"f1_macro_{name}"] == pytest.approx(expected)
    # A dropped genre scores 0 (it is never predicted), dragging macro-F1 down.
    assert m["f1_macro"] < f1_score(y[:, kept], pred[:, kept], average="macro", zero_division=0)


def test_frequency_thirds_follow_training_counts():
    from genretune.data import TRAIN, Dataset

    labels = np.zeros((30, 6), np.uint8)
    split = np.full(30, TRAIN)
    split[25:] = 1
    for genre, count in enumerate([9, 1, 5, 3, 7, 2]):
        labels[:count, genre] = 1
    labels[25:, 1] = 1  # validation tracks do not count
    ds = Dataset(np.zeros((30, 16, 16), np.float32), labels, tuple("abcdef"), split, "t")
    rare, middle, common = ds.frequency_thirds()
    assert rare.tolist() == [1, 5] and middle.tolist() == [2, 3] and common.tolist() == [0, 4]
