"""The input rate the daemon plans for: a damped Holt forecast (statsmodels) of the recent rate."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from ..errors import KhaosError


def forecast(
    rates: pd.Series, horizon_s: float, step_s: int = 60, alpha: float = 0.5, beta: float = 0.2, phi: float = 0.9
) -> float:
    """Mean rate expected over the next ``horizon_s`` seconds.

    Damped Holt (additive trend, statsmodels ``Holt(damped_trend=True)``, fixed smoothing alpha, beta
    and damping phi, not optimised) on ``step_s``-second means of the series (whole blocks, aligned
    to its end), started at the first block with the first difference as its trend. The forecast is
    the mean over the next ceil(horizon_s/step_s) blocks, clipped to [0, 2 * max seen]. Fewer than
    three blocks: the mean of the series (too little to tell a trend). NaNs are dropped.
    """
    y = np.asarray(rates, dtype=float)
    y = y[np.isfinite(y)]
    if y.size == 0:
        raise KhaosError("forecast: the series has no values")
    if not horizon_s > 0 or step_s < 1:
        raise KhaosError(f"forecast: need horizon_s > 0 and step_s >= 1 (got {horizon_s}, {step_s})")
    if not (0 < alpha <= 1 and 0 <= beta <= 1 and 0 < phi <= 1):
        raise KhaosError(f"forecast: need 0 < alpha <= 1, 0 <= beta <= 1, 0 < phi <= 1 (got {alpha}, {beta}, {phi})")
    n = y.size // step_s
    if n < 3:
        value = float(y.mean())
    else:
        from statsmodels.tsa.holtwinters import Holt

        blocks = y[y.size - n * step_s :].reshape(n, step_s).mean(axis=1)
        model = Holt(
            blocks[1:],
            damped_trend=True,
            initialization_method="known",
            initial_level=blocks[0],
            initial_trend=blocks[1] - blocks[0],
        )
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # statsmodels warns about fixed parameters, short series, perfect fits
            fitted = model.fit(smoothing_level=alpha, smoothing_trend=beta, damping_trend=phi, optimized=False)
            value = float(np.mean(fitted.forecast(max(1, math.ceil(horizon_s / step_s)))))
    return float(np.clip(value, 0.0, 2 * y.max()))
