"""The surrogate's parameters, fitted once per bank and kept beside it."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from hposim.curves import CurveSource, KnnSurrogate
from hposim.surrogate import fit_surrogate


def bank_digest(bank_path: str | Path) -> str:
    return hashlib.sha256(Path(bank_path).read_bytes()).hexdigest()[:16]


def surrogate_path(bank_path: str | Path) -> Path:
    path = Path(bank_path)
    return path.with_name(path.stem + ".surrogate.json")


def load_or_fit_surrogate(
    source: CurveSource, bank_path: str | Path, surrogate_file: str | None = None
) -> KnnSurrogate:
    """The parameters fitted for this bank (by its digest); fitted and saved when missing."""
    path = Path(surrogate_file) if surrogate_file else surrogate_path(bank_path)
    digest = bank_digest(bank_path)
    x = source.configs.x
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("bank_sha256") == digest:
            return KnnSurrogate(x, np.array(saved["weights"]), saved["k"], saved["power"])
    print(f"fitting the surrogate to {Path(bank_path).name} (k-fold) ...", file=sys.stderr)
    model = fit_surrogate(source.configs)
    payload = {
        "bank_sha256": digest,
        "k": model.k,
        "power": model.power,
        "weights": model.weights.tolist(),
        "features": list(source.features.names),
    }
    try:
        path.write_text(json.dumps(payload, indent=1) + "\n")
    except OSError as exc:
        print(f"(not saved: {exc})", file=sys.stderr)
    return model
