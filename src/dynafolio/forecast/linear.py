"""A linear baseline: least-squares AR(p) forecasts of next-period log returns.

=============================  ======  ===================================================
Forecaster                     System  Model
=============================  ======  ===================================================
ARForecaster                   any     ``r_{t+1} = c + Σ_k φ_k r_{t+1−k}`` by OLS, pooled
                                       over assets (panel) or one regression per asset
=============================  ======  ===================================================

The yardstick a learned forecaster has to beat: if an LSTM does no better than an AR(1)
fitted in a millisecond, its extra machinery buys nothing.

Timing: :meth:`ARForecaster.fit` learns from the history it is given only; at the close of
``history.date`` :meth:`ARForecaster.predict` reads the last ``p + 1`` prices (``p`` log
returns) and forecasts ``ln(P_{t+1}/P_t)``.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd

from dynafolio.errors import ConfigError, DataError
from dynafolio.features import prices_to_returns
from dynafolio.forecast.base import Forecaster
from dynafolio.forecast.registry import register_forecaster
from dynafolio.forecast.state import FittedState, take
from dynafolio.forecast.windows import make_windows
from dynafolio.history import MarketHistory
from dynafolio.settings import parameters

__all__ = ["ARForecaster", "ar_design", "fit_ols"]


def ar_design(log_returns: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """The AR(p) regression rows of one return series, rows with a missing value dropped.

    Parameters
    ----------
    log_returns : numpy.ndarray, shape (n_periods,)
        One asset's log returns per period, ascending dates; NaN where missing.
    p : int
        Number of lags.

    Returns
    -------
    X : numpy.ndarray, shape (n_rows, p + 1)
        ``[1, r_t, r_{t−1}, ..., r_{t−p+1}]`` per row: an intercept, then the lags from the
        most recent.
    y : numpy.ndarray, shape (n_rows,)
        ``r_{t+1}``, the return after each row's lags.
    """
    # make_windows drops every sample whose lags or target touch a NaN: a regression row never
    # spans a gap, and a late listing simply has fewer rows.
    windows, target = make_windows(log_returns[:, None], p)
    lags = windows[:, ::-1, 0]  # oldest → newest becomes lag 1 first
    return np.column_stack([np.ones(len(lags)), lags]), target[:, 0]


def fit_ols(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients ``argmin_b ‖y − X b‖²``, shape ``(n_columns,)``.

    The minimum-norm solution when the columns are collinear (e.g. a price that never moved).
    """
    return np.linalg.lstsq(X, y, rcond=None)[0]


@parameters
class ARForecaster(Forecaster):
    """AR(p) with an intercept on each asset's log returns, fitted by ordinary least squares.

    ``pooled=True`` fits one set of coefficients on every asset's rows stacked (panel OLS:
    efficient when the assets share their dynamics, and it forecasts an asset with little
    history of its own); ``pooled=False`` fits one regression per asset. A regression row is
    ``p`` consecutive log returns and the one after them; rows with a missing value are
    dropped (late listings, gaps), never filled.

    Hand-written least squares rather than statsmodels' ``AutoReg``: ``AutoReg`` fits one
    series and has no pooled panel fit, and one mechanism serves both modes.

    Parameters
    ----------
    p : int, default 1
        Lags (periods of log returns) per forecast.
    pooled : bool, default True
        One regression on all assets' rows, or one per asset.
    min_rows : int, default 20
        Fewest complete rows a regression needs (never fewer than ``p + 2``). Per asset: an
        asset with fewer is forecast as NaN. Pooled: the stacked rows of all assets; every
        asset whose last ``p`` returns exist gets the pooled forecast.
    seed : int, default 0
        Unused: the fit is deterministic. Part of the forecaster contract.

    Attributes
    ----------
    coef_ : pandas.DataFrame, shape (n_assets, p + 1)
        Per fitted asset, columns ``const, lag_1 .. lag_p`` (``lag_1`` multiplies ``r_t``);
        identical rows when pooled, a NaN row for an asset without enough rows per asset.
    n_rows_ : pandas.Series, shape (n_assets,)
        Regression rows of each asset's own in the fit.
    """

    p: int = 1
    pooled: bool = True
    min_rows: int = 20
    seed: int = 0

    def fit(self, history: MarketHistory) -> Self:
        """Estimate the coefficients from the log returns of ``history.prices``.

        Parameters
        ----------
        history : MarketHistory
            Prices ``(n_dates, n_assets)`` up to the fit date; nothing else is read.

        Raises
        ------
        ConfigError
            If ``p`` or ``min_rows`` is not a whole number >= 1.
        DataError
            If no regression has ``max(min_rows, p + 2)`` complete rows.
        """
        for name in ("p", "min_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ConfigError(
                    f"{type(self).__name__}: {name} must be a whole number >= 1, got {value!r}"
                )
        returns = prices_to_returns(history.prices, "log")
        rows = [ar_design(returns[asset].to_numpy(), self.p) for asset in returns.columns]
        counts = np.array([len(y) for _, y in rows])
        needed = max(self.min_rows, self.p + 2)
        coef = np.full((len(rows), self.p + 1), np.nan)
        if self.pooled:
            have, where = int(counts.sum()), "all assets together have"
            if have >= needed:
                coef[:] = fit_ols(np.vstack([X for X, _ in rows]), np.hstack([y for _, y in rows]))
        else:
            have, where = int(counts.max(initial=0)), "the best asset has"
            for j in np.flatnonzero(counts >= needed):
                coef[j] = fit_ols(*rows[j])
        if have < needed:
            raise DataError(
                f"{type(self).__name__}: an AR(p={self.p}) regression needs max(min_rows, "
                f"p + 2) = {needed} rows of p + 1 consecutive log returns; {where} {have} in "
                f"{len(history.prices)} price rows. Give a longer history or lower p or min_rows."
            )
        columns = ["const", *(f"lag_{k}" for k in range(1, self.p + 1))]
        self.coef_ = pd.DataFrame(coef, index=returns.columns, columns=columns)
        self.n_rows_ = pd.Series(counts, index=returns.columns, name="n_rows")
        return self

    def fitted_state(self) -> FittedState:
        self._check_fitted()
        arrays = {"coef": self.coef_.to_numpy(), "n_rows": self.n_rows_.to_numpy(dtype=np.int64)}
        return FittedState(tuple(map(str, self.coef_.index)), arrays)

    def restore(self, state: FittedState) -> Self:
        n = len(state.assets)
        columns = ["const", *(f"lag_{k}" for k in range(1, self.p + 1))]
        coef = take(state.arrays, "coef", (n, self.p + 1))
        self.coef_ = pd.DataFrame(coef, index=pd.Index(state.assets), columns=columns)
        counts = take(state.arrays, "n_rows", (n,))
        self.n_rows_ = pd.Series(counts, index=pd.Index(state.assets), name="n_rows")
        return self

    def predict(self, history: MarketHistory) -> pd.Series:
        """``c + Σ_k φ_k r_{t+1−k}`` per asset, from the last ``p + 1`` prices of ``history``.

        Returns
        -------
        pandas.Series, shape (n_assets,)
            The forecast of ``ln(P_{t+1}/P_t)`` indexed by ``history.assets``; NaN for an
            asset missing one of its last ``p`` returns, without coefficients of its own
            (per asset) or not in the fit history.
        """
        self._check_fitted()
        tail = history.prices.reindex(columns=self.coef_.index).iloc[-(self.p + 1) :]
        lags = prices_to_returns(tail, "log").to_numpy()[::-1]  # (p, n_assets), r_t first
        forecast = np.full(len(self.coef_), np.nan)
        if len(lags) == self.p:
            coef = self.coef_.to_numpy()
            forecast = coef[:, 0] + np.einsum("ka,ak->a", lags, coef[:, 1:])
        return pd.Series(forecast, index=self.coef_.index, dtype=float).reindex(history.assets)


register_forecaster("ar", ARForecaster, label="AR")
