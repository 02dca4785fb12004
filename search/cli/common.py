"""What several commands share: the parser class, the data and training flags, and turning the
flags a user gave into flat config values."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

from genretune.model.config import FLAT_KEYS, OBJECTIVES


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2), matching every other input error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def optional(cast: Callable[[str], Any]) -> Callable[[str], Any]:
    """A flag value that may also be 'none' (e.g. --top-k none, --pos-weight-cap none)."""

    def parse(text: str) -> Any:
        return None if text.lower() == "none" else cast(text)

    parse.__name__ = cast.__name__
    return parse


# Config flags have no default in the namespace (argparse.SUPPRESS): a flag the user gave is
# an attribute, one they did not give is absent, and `--top-k none` is a given None.
_UNSET = argparse.SUPPRESS


def add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        default=_UNSET,
        help="'synthetic' (default) or a feature dir "
        "(features.npy, labels_multilabel.npy, genres.json, optional split.npy)",
    )
    g.add_argument(
        "--synthetic-scale",
        type=float,
        default=_UNSET,
        help="synthetic dataset size; 1.0 = the FMA dataset's 38,801 genre labels (default 0.1)",
    )
    g.add_argument(
        "--data-seed", type=int, default=_UNSET, help="seed of the synthetic data and the split"
    )
    g.add_argument("--n-mels", type=int, default=_UNSET, help="synthetic input height (32)")
    g.add_argument("--frames", type=int, default=_UNSET, help="synthetic input width (64)")
    g.add_argument("--labels-file", default=_UNSET, help="labels file name in the feature dir")
    g.add_argument(
        "--num-genres", type=int, default=_UNSET, help="expected genre columns (checked)"
    )
    g.add_argument(
        "--min-samples-per-genre", type=int, default=_UNSET, help="keep genres with >= N tracks"
    )
    g.add_argument(
        "--max-genres", type=optional(int), default=_UNSET, help="keep at most the N most common"
    )


def flag_of(key: str, renamed: dict[str, str] | None = None) -> str:
    """The flag a setting's key is given by (`max_genres` -> `--max-genres`), for errors."""
    return (renamed or {}).get(key) or "--" + key.replace("_", "-")


def add_train_flags(p: argparse.ArgumentParser) -> None:
    # The settings whose flag is not their key (a bad value's error names the flag).
    p.set_defaults(renamed_flags={"threshold": "--prediction-threshold"})
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=_UNSET)
    g.add_argument("--batch-size", type=int, default=_UNSET)
    g.add_argument("--lr", type=float, default=_UNSET)
    g.add_argument("--weight-decay", type=float, default=_UNSET)
    g.add_argument(
        "--patience", type=int, default=_UNSET, help="epochs without improvement before stopping"
    )
    g.add_argument(
        "--base-channels", type=int, default=_UNSET, help="width of the first conv block"
    )
    g.add_argument("--dropout", type=float, default=_UNSET)
    g.add_argument(
        "--pos-weight-power", type=float, default=_UNSET, help="1 = raw neg/pos, 0.5 = sqrt"
    )
    g.add_argument(
        "--pos-weight-cap", type=optional(float), default=_UNSET, help="max pos_weight, or none"
    )
    g.add_argument(
        "--prediction-threshold",
        type=optional(float),
        dest="threshold",
        default=_UNSET,
        help="decision threshold in [0, 1], or none for top-K only",
    )
    g.add_argument(
        "--top-k",
        type=optional(int),
        default=_UNSET,
        help="keep the K most probable genres, or none",
    )
    g.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default=_UNSET,
        help="validation metric for patience and best epoch",
    )
    g.add_argument(
        "--seed", type=int, default=_UNSET, help="training seed (init, shuffling, dropout)"
    )


def config_flags(args: argparse.Namespace) -> dict[str, Any]:
    """Flat config values of the config flags the user gave (flag dest = config key)."""
    return {key: getattr(args, key) for key in FLAT_KEYS if hasattr(args, key)}
