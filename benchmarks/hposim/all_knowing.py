"""An all-knowing search: a bound on how soon any search can reach a target with W workers.

It proposes the bank's recorded configurations best first, ranked by what it cannot know in a
real search: their recorded validation curves (for a configuration recorded once, the very run
it will replay, noise included). Ranked on the best tuned-rule validation F1 within the first
k epochs, for several k: which depth matters depends on how far a trial gets before the
target is reached. Every trial runs to its end (no ASHA: cutting a trial only frees its worker
for another, which consumes trial-epochs at the same rate). Whatever a real search learns, it
cannot propose better than this while every worker is busy.

`FirstWaveThenKnowing` is the bound for a search without prior knowledge: its first wave (one
trial per worker, proposed before any result exists) is the default's own, and every later
proposal is all-knowing, under the default's ASHA. What it misses of a third of the budget,
no choice of later proposals can win back. Ranked on the expected curves (the simulator's
noise-shrunk means) instead of the recorded ones, the same bound knows every configuration's
quality but not the luck of the run it will replay: what the best model of the task could do.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.tune.search import Searcher

from hposim.curves import Configs, tuned_rules

# The epochs over which each ranking takes a configuration's best ("all" = every epoch).
RANKING_EPOCHS = (1, 2, 3, 4, 6, "all")
FLAGS = ["--scheduler", "fifo"]  # genretune search flags of its replays (metric as the default)


def tuned_val_curves(val: np.ndarray) -> np.ndarray:
    """(configs, epochs) each configuration's validation F1 at the rule tuned on each epoch's
    validation predictions, from `val` (configs, epochs, rules)."""
    return np.stack([v[np.arange(v.shape[0]), tuned_rules(v)] for v in val])


def rankings(configs: Configs, val: np.ndarray | None = None) -> dict[str, list[int]]:
    """Ranking name -> configuration indices, best first: on the recorded curves (the mean of
    each configuration's runs), or on `val` (e.g. the simulator's noise-shrunk means: what a
    search could know of each configuration's expected curve, without its run's luck)."""
    curves = tuned_val_curves(configs.val if val is None else val)
    out = {}
    for k in RANKING_EPOCHS:
        depth = curves.shape[1] if k == "all" else min(int(k), curves.shape[1])
        # A stable sort: equal values keep the bank's order, so a ranking is deterministic.
        out[f"best of epochs 1-{k}"] = np.argsort(-curves[:, :depth].max(axis=1), kind="stable")
    return {name: [int(i) for i in order] for name, order in out.items()}


class KnownOrderSearcher(Searcher):
    """Proposes `configs` in the given order (cycling if the search outlasts them)."""

    def __init__(self, configs: list[dict[str, Any]], metric: str, mode: str = "max"):
        super().__init__(metric=metric, mode=mode)
        if not configs:
            raise ValueError("an all-knowing search needs at least one configuration")
        self._configs = configs
        self._next = 0

    def suggest(self, trial_id: str) -> dict[str, Any]:
        config = dict(self._configs[self._next % len(self._configs)])
        self._next += 1
        return config

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        pass


class FirstWaveThenKnowing(Searcher):
    """`first` (a searcher) proposes the first `n_first` trials, `known` every later one; the
    results of `first`'s trials go back to it, as they would in a search of its own."""

    def __init__(self, first: Searcher, known: KnownOrderSearcher, n_first: int, metric: str):
        super().__init__(metric=metric, mode="max")
        self._first, self._known, self._n_first = first, known, n_first
        self._first_trials: set[str] = set()

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if len(self._first_trials) < self._n_first:
            self._first_trials.add(trial_id)
            return self._first.suggest(trial_id)
        return self._known.suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._first_trials:
            self._first.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        if trial_id in self._first_trials:
            self._first.on_trial_complete(trial_id, result=result, error=error)
