import numpy as np
import pytest
import torch

from genretune.data import InputError
from genretune.model.config import FLAT_KEYS, TrainConfig, config_from_flat
from genretune.model.network import GenreCNN, count_parameters
from genretune.model.pos_weight import calculate_pos_weight, describe_pos_weight


@pytest.mark.parametrize("shape", [(16, 16), (32, 64), (128, 40), (17, 23)])
def test_cnn_accepts_any_input_of_at_least_16x16(shape):
    model = GenreCNN(n_genres=7, base_channels=4).eval()
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7)


def test_cnn_rejects_inputs_below_16():
    with pytest.raises(ValueError, match="at least 16x16"):
        GenreCNN(n_genres=3, base_channels=4)(torch.randn(2, 15, 32))


def test_parameters_grow_with_the_square_of_base_channels():
    p96 = count_parameters(GenreCNN(70, base_channels=96))
    p128 = count_parameters(GenreCNN(70, base_channels=128))
    assert 0.70 < p128 / p96 - 1 < 0.80  # the hand-run log's "+78%"


def test_pos_weight_power_and_cap():
    counts = np.array([100, 10, 1])
    n = 1000
    raw = calculate_pos_weight(counts, n)
    np.testing.assert_allclose(raw, [9.0, 99.0, 999.0], rtol=1e-6)
    np.testing.assert_allclose(calculate_pos_weight(counts, n, power=0.5), np.sqrt(raw), rtol=1e-6)
    np.testing.assert_allclose(calculate_pos_weight(counts, n, 1.0, cap=50), [9, 50, 50])
    np.testing.assert_allclose(calculate_pos_weight(counts, n, power=0.0), [1, 1, 1])
    assert calculate_pos_weight(counts, n).dtype == np.float32


def test_pos_weight_of_a_genre_without_positives_is_finite():
    w = calculate_pos_weight(np.array([10, 0]), 100, power=1.0, cap=None)
    assert np.isfinite(w).all() and w[1] == w[0]
    assert calculate_pos_weight(np.array([10, 0]), 100, cap=5.0)[1] == 5.0


def test_describe_pos_weight_lists_the_largest():
    text = describe_pos_weight(np.array([1.0, 4.0, 2.0], np.float32), ["a", "b", "c"])
    assert "max/min 4.0x" in text
    lines = text.splitlines()
    assert lines[2].split()[0] == "b" and lines[3].split()[0] == "c"


def test_config_round_trips_and_rejects_unknown_and_bad_values():
    cfg = config_from_flat({"lr": 0.001, "top_k": 5, "threshold": None, "data": "synthetic"})
    assert cfg.optim.lr == 0.001 and cfg.decision.top_k == 5 and cfg.decision.threshold is None
    assert config_from_flat(cfg.to_flat()) == cfg
    assert set(cfg.to_flat()) == set(FLAT_KEYS)
    assert config_from_flat({}) == TrainConfig()
    for bad, fragment in [
        ({"learning_rate": 1}, "unknown config key(s): learning_rate"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"epochs": 2.5}, "epochs must be an integer"),
        ({"lr": "fast"}, "lr must be a number"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"threshold": 1.5}, "threshold must be in [0, 1]"),
        ({"top_k": 0}, "top_k must be >= 1"),
        ({"batch_size": True}, "batch_size must be an integer"),
        ({"threshold": None, "top_k": None}, "threshold or top-K must be set"),
        ({"patience": None}, "patience must not be null"),
    ]:
        with pytest.raises(InputError) as err:
            config_from_flat(bad, origin="cfg.json")
        assert fragment in str(err.value) and str(err.value).startswith("cfg.json: ")


def test_an_older_export_dir_is_refused_by_name(tmp_path):
    """Before exports wrote model cards, `export --with-checkpoint` wrote the export payload
    as config.json: predict names that and what to do, in one line."""
    import json

    from genretune.model.model_card import read_model_card

    (tmp_path / "config.json").write_text(json.dumps({"config": {}, "provenance": {}}))
    (tmp_path / "model.pt").write_bytes(b"")
    with pytest.raises(InputError, match="an older `genretune export --with-checkpoint` wrote"):
        read_model_card(tmp_path)
