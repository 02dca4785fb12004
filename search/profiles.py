"""Search profiles: `demo` (minutes on a laptop CPU) and `full` (the FMA dataset's scale, GPU
clusters)."""

from __future__ import annotations

from dataclasses import dataclass

from genretune.data import InputError

# The hand-tuned baseline filtered at 300 tracks per genre on its 38,801-label dataset.
BASELINE_MIN_SAMPLES = 300


@dataclass(frozen=True)
class Profile:
    name: str
    synthetic_scale: float
    n_mels: int
    frames: int
    base_channels: tuple[int, ...]
    epochs: int
    patience: int
    batch_size: int
    num_samples: int
    reduction_factor: int
    grace_period: int | None = None  # None: derived from patience

    def scaled_min_samples(self, value: int) -> int:
        """A per-genre count at the FMA dataset's size, scaled to this profile's data."""
        return max(1, round(value * self.synthetic_scale))

    def default_grace_period(self, epochs: int, patience: int) -> int:
        """Epochs before ASHA may cut a trial: the profile's measured choice (the demo's 2 won
        on the search simulator, benchmarks/log/2026-11-24_lab_notebook.md) when the epochs
        are the profile's, else about as long as patience would give a trial, never the whole
        budget."""
        if self.grace_period is not None and epochs == self.epochs:
            return min(self.grace_period, epochs)
        return max(1, min(patience, epochs // 2))


PROFILES = {
    "demo": Profile(
        name="demo",
        synthetic_scale=0.1,
        n_mels=32,
        frames=64,
        base_channels=(8, 16),
        epochs=15,
        patience=5,
        batch_size=32,
        num_samples=20,
        reduction_factor=3,
        grace_period=2,
    ),
    "full": Profile(
        name="full",
        synthetic_scale=1.0,
        n_mels=64,
        frames=128,
        base_channels=(64, 96, 128, 160),
        epochs=150,
        patience=25,
        batch_size=32,
        num_samples=64,
        reduction_factor=3,
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise InputError(f"--profile {name}: choose one of {', '.join(PROFILES)}") from None
