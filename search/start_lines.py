"""What a search says before it starts: the line naming its strategy, and a note when its
budget is spread too thin over the trials that run at once."""

from __future__ import annotations

from genretune.search.settings import SearchSettings

SAMPLER_NAMES = {"tpe": "TPE", "random": "random sampling", "gp": "GP-BO", "nsga2": "NSGA-II"}


def strategy_line(s: SearchSettings) -> str:
    """One line saying what the search will do: sampler, early stopping, objective."""
    sampler = SAMPLER_NAMES.get(s.sampler, s.sampler)
    if s.sampler in ("tpe", "gp"):
        sampler += f" after {s.tpe_startup_trials} random start-up trial(s)"
    if s.scheduler == "asha":
        late = ", late cut" if s.late_cut else ""
        stop = f"ASHA from epoch {s.grace_period} (reduction factor {s.reduction_factor}{late})"
    else:
        stop = "no ASHA"
    budget = f", at most {s.budget_epochs} trial-epochs" if s.budget_epochs else ""
    objective = (
        ", ".join(f"{m} ({mode})" for m, mode in s.objectives)
        if s.objectives
        else f"{s.metric} ({s.mode})"
    )
    return (
        f"search {s.name}: {s.num_samples} trial(s){budget} of up to {s.base.optim.epochs} "
        f"epochs; {sampler} over {', '.join(s.space)}; {stop}, patience "
        f"{s.base.optim.patience}; objective {objective}"
    )


# With fewer trial-epochs than this many whole trials per trial running at once, most trials
# start before any has ended and the search has little to learn from: on the simulator
# (benchmarks/log/2026-11-24_lab_notebook.md) the default with 8 or 32 workers did as well for
# its budget as with 2 from 3 whole trials per worker on, and worse below.
WHOLE_TRIALS_PER_SLOT = 3


def thin_budget_note(budget: int | None, at_once: int, epochs: int) -> str | None:
    """A note when --budget-epochs spreads too thin over the trials running at once."""
    if not budget or at_once < 2 or budget >= WHOLE_TRIALS_PER_SLOT * epochs * at_once:
        return None
    return (
        f"note: --budget-epochs {budget} over {at_once} trials at once is {budget / at_once:.1f} "
        f"epochs each, under {WHOLE_TRIALS_PER_SLOT} whole trials of {epochs} epoch(s): most "
        "trials will start before any has ended, so TPE and ASHA learn little; --ramp-up N "
        "starts N and adds one as each ends, --max-concurrent N caps how many run at once"
    )
