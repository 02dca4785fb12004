"""The one test of "is this a number" for values read from files, results and studies."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def finite_number(value: Any) -> float | None:
    """`value` as a float when it is a finite real number (a Python or NumPy int or float; not
    a bool, not a string), else None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
