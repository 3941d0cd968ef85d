"""What the statistics modules share: 1-d run arrays, the sample std, ``as_dict()`` of results."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Sequence

import numpy as np


class AsDict:
    """``as_dict()`` for the result dataclasses of :mod:`bench.stats`."""

    def as_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]


def as_1d(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """``x`` as a float array of runs ``(n,)``; a ValueError for any other shape."""
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-d array of runs, got shape {arr.shape}")
    return arr


def sample_std(x: np.ndarray) -> float:
    """The std with ddof 1; NaN below two runs."""
    return float(np.std(x, ddof=1)) if x.size >= 2 else math.nan
