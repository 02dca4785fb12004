"""A concurrency limit that starts small and grows as trials end.

With many workers and a budget of a few times their number in trial-epochs, every trial of a
search starts before any has ended: the searcher proposes with nothing to learn from, and the
hand-tuned baseline advances one epoch per round of all the others. `--ramp-up N` lets N trials
run at first and one more for every trial that has ended (cut by ASHA, stopped by patience or
finished), up to the search's concurrency: more is learnt per trial-epoch, at the cost of idle
workers while the limit grows (benchmarks/log/2026-11-24_lab_notebook.md measures both).
"""

from __future__ import annotations

from ray.tune.search import ConcurrencyLimiter, Searcher

# A limit no search reaches: Ray's own --max-concurrent (or the cluster's size) is the cap.
UNLIMITED = 1_000_000


class RampUpLimiter(ConcurrencyLimiter):
    """Ray's ConcurrencyLimiter whose limit is `start` plus the trials ended so far (capped
    by `max_concurrent`). Its count and the trials it admitted are saved with the experiment
    the way Ray saves its own limiter (get_state), so --resume neither restarts the ramp nor
    loses the end of a trial that was running."""

    def __init__(self, searcher: Searcher, start: int, max_concurrent: int | None = None):
        if start < 1:
            raise ValueError(f"ramp-up start must be >= 1, got {start}")
        self.start = start
        self.ended = 0
        super().__init__(searcher, max_concurrent=max_concurrent or UNLIMITED)

    @property
    def limit(self) -> int:
        return min(self.max_concurrent, self.start + self.ended)

    def suggest(self, trial_id: str) -> dict | None:
        if len(self.live_trials) >= self.limit:
            return None
        return super().suggest(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in self.live_trials:
            self.ended += 1
        super().on_trial_complete(trial_id, result=result, error=error)
