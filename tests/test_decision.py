"""Decision rules and the threshold / top-K sweep."""

import json

import numpy as np
import pytest

from genretune.model.decision import (
    THRESHOLDS,
    TOP_KS,
    DecisionRule,
    apply_rule,
    apply_threshold,
    apply_topk,
    load_tuning_results,
    plot_tuning_results,
    rule_from_best,
    sweep_decision_rules,
    write_tuning_results,
)
from genretune.model.metrics import multilabel_metrics


def test_threshold_is_inclusive():
    s = np.array([[0.5, 0.49, 0.51]])
    np.testing.assert_array_equal(apply_threshold(s, 0.5), [[True, False, True]])


def test_topk_ties_go_to_the_lower_genre_index():
    s = np.array([[0.2, 0.7, 0.7, 0.7, 0.1]])
    np.testing.assert_array_equal(apply_topk(s, 2), [[False, True, True, False, False]])


def test_combined_is_threshold_and_topk_and_allowed_is_honoured():
    s = np.array([[0.9, 0.8, 0.6, 0.4], [0.3, 0.95, 0.2, 0.9]])
    np.testing.assert_array_equal(
        apply_rule(s, 0.5, 2), [[True, True, False, False], [False, True, False, True]]
    )
    allowed = np.array([False, True, True, True])
    # genre 0 is removed: it is never predicted and does not take a top-K slot
    np.testing.assert_array_equal(
        apply_topk(s, 2, allowed), [[False, True, True, False], [False, True, False, True]]
    )
    np.testing.assert_array_equal(apply_topk(s, 10, allowed), np.tile(allowed, (2, 1)))


def test_rule_validation_and_description():
    with pytest.raises(ValueError, match="threshold"):
        DecisionRule(threshold=1.2)
    with pytest.raises(ValueError, match="top_k"):
        DecisionRule(threshold=None, top_k=0)
    with pytest.raises(ValueError):
        DecisionRule(threshold=None, top_k=None)
    assert DecisionRule(0.6, 5).describe() == "threshold 0.60 + top-5"
    assert DecisionRule(None, 3).to_dict() == {"threshold": None, "top_k": 3}


@pytest.fixture
def scores():
    rng = np.random.default_rng(3)
    y = (rng.random((300, 25)) < 0.08).astype(np.uint8)
    s = np.clip(0.5 * y + rng.random((300, 25)) * 0.7, 0, 1)
    return y, s


def test_sweep_structure_and_rows(scores):
    y, s = scores
    result = sweep_decision_rules(y, s)
    json.dumps(result)  # JSON-serialisable
    assert [r["threshold"] for r in result["threshold_only"]] == list(THRESHOLDS)
    assert THRESHOLDS[1] == 0.35 and len(THRESHOLDS) == 11
    assert [r["top_k"] for r in result["top_k"]] == list(TOP_KS)
    assert len(result["combined"]) == 66
    for row in result["combined"][::7]:
        expected = multilabel_metrics(y, apply_rule(s, row["threshold"], row["top_k"]))
        assert {k: row[k] for k in expected} == pytest.approx(expected)
    for strategy in ("threshold_only", "top_k", "combined"):
        assert result["best"][strategy]["f1"] == max(r["f1"] for r in result[strategy])
    overall = result["best"]["overall"]
    assert overall["f1"] == max(
        result["best"][k]["f1"] for k in ("threshold_only", "top_k", "combined")
    )
    assert overall["strategy"] in ("threshold_only", "top_k", "combined")


def test_sweep_skips_topk_above_the_allowed_genres(scores):
    y, s = scores
    allowed = np.zeros(25, bool)
    allowed[:6] = True
    result = sweep_decision_rules(y, s, allowed=allowed)
    assert [r["top_k"] for r in result["top_k"]] == [3, 5]
    best = rule_from_best(result["best"]["overall"])
    assert not best.apply(s, allowed=allowed)[:, 6:].any()


def test_tuning_results_round_trip_and_validation(scores, tmp_path):
    y, s = scores
    result = sweep_decision_rules(y, s)
    path = write_tuning_results(result, tmp_path)
    assert load_tuning_results(path)["best"] == result["best"]
    png = plot_tuning_results(result, tmp_path / "plots.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        load_tuning_results(bad)
    bad.write_text(json.dumps({"threshold_only": []}))
    with pytest.raises(ValueError, match="bad.json: not threshold tuning results"):
        load_tuning_results(bad)
