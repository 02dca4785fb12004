"""Search strategies as `genretune search` flags (demo profile): the one place they are defined
for the simulator and the real-search benchmark. `{epochs}` stands for the profile's epochs,
`{worst_baseline}` for a baseline file of the bank's worst configuration (simulator only).

STRATEGIES run by default; VARIANTS run when named (`simulate.py --strategies`,
`search_efficiency.py --methods`); a new strategy is `--strategy NAME="FLAGS"`, under a name
that is neither (each result file records the flags every strategy ran with)."""

from __future__ import annotations

# The random searches are pinned to what they were when the defaults were chosen: plain
# random sampling of the whole space, the decision rule included (--decision space), Ray's
# ASHA with a grace period of 5 epochs. A change of default must not move the references.
STRATEGIES = {
    # Random search; every trial runs every epoch (no ASHA, patience beyond the last epoch).
    "random-fifo": (
        "--sampler random --no-baseline --decision space --scheduler fifo --patience {epochs}"
    ),
    # Random search with ASHA and patience.
    "random-asha": (
        "--sampler random --no-baseline --decision space --grace-period 5 --no-late-cut"
    ),
    # genretune search as it ships.
    "default": "",
    # What it shipped with before the simulator chose (Optuna searched the decision rule, TPE
    # with Optuna's defaults started after 10 random trials, Ray's ASHA with a grace period of
    # 5 epochs).
    "previous-default": (
        "--decision space --tpe-startup 10 --grace-period 5 --tpe-multivariate "
        "--tpe-constant-liar --no-late-cut"
    ),
}
# Always simulated: the statistics compare every strategy with them.
REFERENCES = ("random-fifo", "random-asha")

# The variants the committed results compare with the default.
VARIANTS = {
    # The default without the late cut: Ray's ASHA alone.
    "no-late-cut": "--no-late-cut",
    # Optuna's multivariate TPE with a constant liar instead of the independent TPE.
    "optuna-tpe": "--tpe-multivariate --tpe-constant-liar",
    # Random search with the default's tuned decision rule and late cut.
    "random-asha-tuned": "--sampler random --no-baseline",
    # The default without the hand-tuned baseline point first.
    "default-no-baseline": "--no-baseline",
    # The default, and the default without the late cut, given the bank's worst configuration
    # as the baseline: what a misleading baseline costs.
    "default-misled": "--baseline {worst_baseline}",
    "no-late-cut-misled": "--no-late-cut --baseline {worst_baseline}",
}
# The field's multi-fidelity baselines (simulator only: hposim/baselines.py builds their
# searcher and scheduler from Ray's objects; these flags give the rest: the space with the
# decision rule searched, random proposals where the baseline has no model of its own,
# patience, the budget).
BASELINES = {
    # Every configuration one epoch, the best K trained on (half the budget each).
    "one-epoch-top-k": "--sampler random --no-baseline --decision space --scheduler fifo",
    # Ray's HyperBandScheduler (eta 3) over random search.
    "hyperband": "--sampler random --no-baseline --decision space --scheduler fifo",
    # Ray's TuneBOHB with HyperBandForBOHB (eta 3).
    "bohb": "--no-baseline --decision space --scheduler fifo",
}
NAMED = {**STRATEGIES, **VARIANTS, **BASELINES}
