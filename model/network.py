"""The multilabel genre CNN: four conv blocks whose widths all scale with `base_channels`."""

from __future__ import annotations

import torch
from torch import nn

# Widths of the four blocks as multiples of base_channels; parameters grow with its square.
WIDTH_MULTIPLIERS = (1, 2, 4, 4)
MIN_INPUT = 2 ** len(WIDTH_MULTIPLIERS)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class GenreCNN(nn.Module):
    """(batch, n_mels, frames) log-mel spectrograms -> (batch, n_genres) logits.

    Inputs are normalised by a BatchNorm on the single input channel, so raw dB values and
    standardised features both train. Global average + max pooling makes any input of at least
    16 x 16 work.
    """

    def __init__(self, n_genres: int, base_channels: int = 16, dropout: float = 0.3) -> None:
        super().__init__()
        widths = [base_channels * m for m in WIDTH_MULTIPLIERS]
        self.input_norm = nn.BatchNorm2d(1)
        self.features = nn.Sequential(
            *(_block(c_in, c_out) for c_in, c_out in zip([1, *widths[:-1]], widths, strict=True))
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * widths[-1], n_genres)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] < MIN_INPUT or x.shape[-1] < MIN_INPUT:
            raise ValueError(
                f"input must be at least {MIN_INPUT}x{MIN_INPUT}, got {tuple(x.shape)}"
            )
        h = self.features(self.input_norm(x.unsqueeze(1)))
        # The pooling and the classifier run in fp32 even under bf16 autocast: bf16 logits
        # would leave a few hundred distinct probabilities per batch, and the threshold/top-K
        # sweep, PR-AUC and the retrain agreement all rest on them. (A no-op in fp32.)
        h = h.float()
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        with torch.autocast(device_type=pooled.device.type, enabled=False):
            return self.classifier(self.dropout(pooled))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
