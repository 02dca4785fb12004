"""genretune: hyperparameter search for imbalanced multilabel music-genre CNNs.

This file is the top-level package `genretune` itself (installed from model/toplevel/); the
subpackages are genretune.data, genretune.model, genretune.search and genretune.results.
Beside it, below every subpackage: genretune.errors (InputError, first_line) and
genretune.output_files (atomic writes, output path checks), which import nothing of genretune.
Its names are loaded on first use, so `import genretune.data` stays free of torch:

    import genretune
    model = genretune.load_model("models/fma_20261207_101500")
"""

from __future__ import annotations

from typing import Any

__all__ = ["TunedModel", "load_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from genretune.model import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'genretune' has no attribute {name!r}")
