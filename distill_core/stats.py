"""Statistics over seeds shared by the reproductions and the papers' studies.

A difference between two settings measured over several seeds counts only when it is beyond the
seeds' spread (:data:`SPREAD_RULE`, :func:`beyond_spread`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SPREAD_RULE = ("a difference counts as shown only when the difference of the means exceeds the sum of the two "
               "standard deviations over seeds (sample std, ddof 1): the mean ± std intervals do not overlap; with a "
               "single seed there is no spread to compare against and nothing is shown")


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1) of per-seed values; the std is nan for one value."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan


def beyond_spread(a: Sequence[float], b: Sequence[float], margin: float = 0.0) -> bool:
    """:data:`SPREAD_RULE`: is ``mean(a) - mean(b) > margin`` by more than ``std(a) + std(b)``?

    ``a`` and ``b`` are per-seed values (fractions); False when either has a single value (no spread).
    """
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    return not (math.isnan(sa) or math.isnan(sb)) and ma - mb - margin > sa + sb
