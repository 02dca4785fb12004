"""ASHA for several objectives: a trial is never cut for being poor on the first objective
while it is on the Pareto front of all of them.

ASHA decides on the first objective (each trial's best-so-far value at a rung against the
others that reached the rung before it), as for a single objective. When it would cut a trial,
the trial is kept instead if no trial that reached the same rung before it is at least as good
on every objective and better on one: a high-coverage trial with a lower F1 survives to show
its trade-off. Patience still stops a trial that stopped improving on the first objective.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from genretune.results.internals import asha_max_t, asha_time_attr
from genretune.search.late_cut_asha import rung_to_record


def dominates(a: list[float], b: list[float]) -> bool:
    """Whether `a` is at least as good as `b` everywhere and better somewhere (maximising)."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(
        x > y for x, y in zip(a, b, strict=True)
    )


class ParetoASHA(ASHAScheduler):
    def __init__(self, objectives: tuple[tuple[str, str], ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.objectives = tuple(objectives)
        self.rung_points: dict[float, dict[str, list[float]]] = {}

    def _point(self, result: dict[str, Any]) -> list[float] | None:
        point = []
        for metric, mode in self.objectives:
            value = result.get(f"best_{metric}", result.get(metric))
            if value is None:
                return None
            point.append(float(value) if mode == "max" else -float(value))
        return point

    def on_trial_result(self, tune_controller, trial, result: dict[str, Any]) -> str:
        t = result.get(asha_time_attr(self))
        rung = rung_to_record(self, trial.trial_id, t) if t is not None else None
        milestone = rung[0] if rung is not None else None
        action = super().on_trial_result(tune_controller, trial, result)
        point = self._point(result)
        if milestone is None or point is None:
            return action
        recorded = self.rung_points.setdefault(milestone, {})
        on_front = not any(dominates(other, point) for other in recorded.values())
        recorded[trial.trial_id] = point
        if action == TrialScheduler.STOP and on_front and t < asha_max_t(self):
            return TrialScheduler.CONTINUE
        return action
