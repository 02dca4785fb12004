import json

import numpy as np
import pytest
from helpers import make_feature_dir

from genretune.data import DataConfig, InputError, filter_genres, load_dataset
from genretune.data.feature_dir import load_feature_dir
from genretune.data.splits import stratified_split
from genretune.data.synthetic import SyntheticSpec, generate, scaled_counts, seed_genre_table
from genretune.output_files import write_text_atomically


@pytest.mark.slow  # generates the full-scale dataset
def test_synthetic_counts_at_full_scale_equal_the_seed_table():
    table = seed_genre_table()
    features, labels, genres, split = generate(SyntheticSpec(scale=1.0))
    assert genres == table.genres and len(genres) == 70
    np.testing.assert_array_equal(labels.sum(0), table.counts)
    assert labels.sum() == 38_801
    assert features.shape == (labels.shape[0], 32, 64) and features.dtype == np.float16
    per_track = labels.sum(1)
    assert per_track.min() == 1 and per_track.max() == 2
    assert 1.0 < per_track.mean() <= 1.2
    assert set(np.unique(split)) == {0, 1, 2}


def test_secondary_genres_come_from_the_same_family():
    table = seed_genre_table()
    _, labels, _, _ = generate(SyntheticSpec(scale=0.2))
    families = np.array(table.families)
    for row in labels[labels.sum(1) == 2][:200]:
        a, b = np.flatnonzero(row)
        assert families[a] == families[b]


@pytest.mark.parametrize("scale", [0.01, 0.1, 0.5])
def test_scaled_counts_are_proportional_with_a_floor(scale):
    table = seed_genre_table()
    counts = scaled_counts(table.counts, scale, min_count=6)
    assert (counts >= 6).all()
    big = table.counts * scale >= 20
    np.testing.assert_allclose(counts[big], table.counts[big] * scale, atol=0.51)
    _, labels, _, _ = generate(SyntheticSpec(scale=scale))
    np.testing.assert_array_equal(labels.sum(0), counts)


def test_synthetic_is_deterministic_and_seed_dependent():
    a = generate(SyntheticSpec(scale=0.05, seed=3))
    b = generate(SyntheticSpec(scale=0.05, seed=3))
    c = generate(SyntheticSpec(scale=0.05, seed=4))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(a[0][:50], c[0][:50])


def test_synthetic_is_cached_and_memory_mapped(isolated_cache):
    cfg = DataConfig(synthetic_scale=0.03, data_seed=11)
    first = load_dataset(cfg)
    assert isinstance(first.features, np.memmap)
    cached = list(isolated_cache.glob("synthetic-s0.03-seed11-*/features.npy"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    second = load_dataset(cfg)
    assert cached[0].stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.split, second.split)


def test_split_is_stratified_deterministic_and_covers_every_genre():
    _, labels, _, _ = generate(SyntheticSpec(scale=0.1))
    split = stratified_split(labels, seed=0)
    np.testing.assert_array_equal(split, stratified_split(labels, seed=0))
    fractions = np.bincount(split, minlength=3) / len(split)
    np.testing.assert_allclose(fractions, [0.70, 0.15, 0.15], atol=0.03)
    for part in range(3):
        assert (labels[split == part].sum(0) > 0).all(), f"a genre is missing from split {part}"
    share = labels[split == 0].sum(0) / labels.sum(0)
    big = labels.sum(0) >= 100
    np.testing.assert_allclose(share[big], 0.70, atol=0.05)


def test_feature_dir_split_file_wins(feature_dir):
    ds = load_dataset(DataConfig(source=str(feature_dir)))
    np.testing.assert_array_equal(ds.split, np.load(feature_dir / "split.npy"))


def test_feature_dir_without_split_gets_a_cached_stratified_split(tmp_path, isolated_cache):
    d = make_feature_dir(tmp_path / "f", n=80, with_split=False)
    before = set((isolated_cache / "splits").glob("*.npy"))
    a = load_dataset(DataConfig(source=str(d)))
    (cached,) = set((isolated_cache / "splits").glob("*.npy")) - before
    np.testing.assert_array_equal(np.load(cached), a.split)
    # The second load reads the cache: a marked cache file comes back as the split.
    marked = a.split.copy()
    marked[[0, 1]] = marked[[1, 0]]
    np.save(cached, marked)
    b = load_dataset(DataConfig(source=str(d)))
    np.testing.assert_array_equal(b.split, marked)
    assert set(np.unique(a.split)) == {0, 1, 2}
    assert not (d / "split.npy").exists(), "the user's data dir must not be modified"


def _break(d, what):
    if what == "missing_features":
        (d / "features.npy").unlink()
    elif what == "length_mismatch":
        np.save(d / "labels_multilabel.npy", np.zeros((5, 4), np.uint8))
    elif what == "labels_not_binary":
        lab = np.load(d / "labels_multilabel.npy")
        lab[0, 0] = 2
        np.save(d / "labels_multilabel.npy", lab)
    elif what == "nan_features":
        f = np.load(d / "features.npy")
        f[7, 3, 3] = np.nan
        np.save(d / "features.npy", f)
    elif what == "inf_features":
        f = np.load(d / "features.npy")
        f[1, 0, 0] = np.inf
        np.save(d / "features.npy", f)
    elif what == "wrong_dtype":
        np.save(d / "features.npy", np.load(d / "features.npy").astype(np.int32))
    elif what == "wrong_rank":
        np.save(d / "features.npy", np.load(d / "features.npy").reshape(60, -1))
    elif what == "genres_length":
        (d / "genres.json").write_text(json.dumps(["a", "b"]))
    elif what == "genres_not_json":
        (d / "genres.json").write_text("a, b, c")
    elif what == "split_values":
        np.save(d / "split.npy", np.full(60, 3, np.int8))
    elif what == "split_empty_val":
        np.save(d / "split.npy", np.zeros(60, np.int8))
    elif what == "too_small":
        np.save(d / "features.npy", np.zeros((60, 8, 8), np.float32))
    elif what == "empty":
        np.save(d / "features.npy", np.zeros((0, 16, 16), np.float32))
        np.save(d / "labels_multilabel.npy", np.zeros((0, 4), np.uint8))
    elif what == "not_npy":
        (d / "labels_multilabel.npy").write_text("hello")
    return d


@pytest.mark.parametrize(
    "what, fragment",
    [
        ("missing_features", "features.npy: file not found"),
        ("length_mismatch", "has 5 rows"),
        ("labels_not_binary", "only 0 and 1"),
        ("nan_features", "NaN or Inf (first at track 7)"),
        ("inf_features", "NaN or Inf"),
        ("wrong_dtype", "float16 or float32"),
        ("wrong_rank", "rank 3"),
        ("genres_length", "lists 2 genres"),
        ("genres_not_json", "not valid JSON"),
        ("split_values", "split values"),
        ("split_empty_val", "val split"),
        ("too_small", "at least 16x16"),
        ("empty", "empty"),
        ("not_npy", "not a readable .npy"),
    ],
)
def test_feature_dir_validation(feature_dir, what, fragment):
    _break(feature_dir, what)
    with pytest.raises(InputError, match=None) as err:
        load_feature_dir(feature_dir)
    assert fragment in str(err.value)
    assert str(feature_dir) in str(err.value)


def test_filter_genres_min_samples_and_max_genres():
    labels = np.zeros((100, 5), np.uint8)
    for g, count in enumerate([50, 30, 10, 30, 5]):
        labels[:count, g] = 1
    f = filter_genres(labels, tuple("abcde"), min_samples_per_genre=10)
    assert f.kept_genres == ("a", "b", "c", "d")
    f = filter_genres(labels, tuple("abcde"), min_samples_per_genre=0, max_genres=2)
    assert f.kept_genres == ("a", "b"), "ties keep the lower column index"
    f = filter_genres(labels, tuple("abcde"), min_samples_per_genre=20, max_genres=10)
    np.testing.assert_array_equal(f.kept_idx, [0, 1, 3])
    with pytest.raises(InputError, match="min_samples_per_genre 51 keeps no genre"):
        filter_genres(labels, tuple("abcde"), min_samples_per_genre=51)
    with pytest.raises(InputError, match="max_genres must be >= 1"):
        filter_genres(labels, tuple("abcde"), max_genres=0)


@pytest.mark.slow  # full-scale synthetic data: over 10 s, the full suite's
def test_filter_at_seed_threshold_matches_the_seed_log():
    _, labels, genres, _ = generate(SyntheticSpec(scale=1.0))
    f = filter_genres(labels, genres, min_samples_per_genre=300)
    assert f.n_kept == 24
    assert f.kept_counts().sum() == 32_856
    assert round(f.kept_counts().max() / f.kept_counts().min(), 1) == 20.4


def test_a_state_file_write_that_fails_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "prepare.json"
    write_text_atomically(path, '{"identity": 1}')
    with pytest.raises(UnicodeEncodeError):
        write_text_atomically(path, '{"identity": "\udcff"}')  # fails mid-write
    assert json.loads(path.read_text()) == {"identity": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["prepare.json"], "no temporary file left"
    write_text_atomically(path, '{"identity": 2}')
    assert json.loads(path.read_text()) == {"identity": 2}


def test_finite_number_is_the_one_number_test():
    import numpy as np

    from genretune.data.numbers import finite_number

    assert finite_number(3) == 3.0 and finite_number(np.float32(0.5)) == 0.5
    assert finite_number(np.int64(7)) == 7.0
    for not_a_number in (True, np.bool_(False), "0.5", None, float("nan"), float("inf"), [1]):
        assert finite_number(not_a_number) is None, not_a_number
