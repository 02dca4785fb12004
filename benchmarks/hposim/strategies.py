"""Search strategies as `genretune search` flags (demo profile): the one list the simulator and
the real-search benchmark both run. `{epochs}` stands for the profile's epochs."""

from __future__ import annotations

STRATEGIES = {
    # Random search; every trial runs every epoch (no ASHA, patience beyond the last epoch).
    "random-fifo": "--sampler random --no-baseline --scheduler fifo --patience {epochs}",
    # Random search with ASHA and patience.
    "random-asha": "--sampler random --no-baseline",
    # genretune search as it ships.
    "default": "",
}
# Always simulated: the statistics compare every strategy with them.
REFERENCES = ("random-fifo", "random-asha")
