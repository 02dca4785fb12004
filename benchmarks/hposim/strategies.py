"""Search strategies as `genretune search` flags (demo profile): the one list the simulator and
the real-search benchmark both run. `{epochs}` stands for the profile's epochs."""

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
