"""Model inputs built from prices, causally: the optional features of S2 and S3's inputs.

One implementation for every learned model that reads more than log returns: the S2 stacked
LSTM (``forecaster.params.features``) and the S3 end-to-end allocator (``params.features``).
Every feature at row ``t`` uses prices up to ``t`` only, so the features of a history cut at
``t`` are the first ``t + 1`` rows of those of a longer one (tested by perturbing the future).
Scaling is the model's business (fitted on each training window only).

=====================  ==========  ==============================================================
name                   columns     value at row t (per asset unless noted)
=====================  ==========  ==============================================================
``log_return``         1           ``ln(P_t / P_{t−1})``
``log_returns_1_5``    5           ``ln(P_t / P_{t−k})`` for k = 1..5
``return``             1           ``P_t / P_{t−1} − 1``
``volatility``         1           sample std of the last 20 simple returns
``ewma_volatility``    1           ``sqrt(σ²_t)``, ``σ²_t = λσ²_{t−1} + (1−λ)r²_t`` (λ 0.94, log r)
``rsi``                1           Wilder RSI(14) / 100
``bollinger``          1           ``(P_t − MA20) / (2·SD20)``: −1 and +1 are the bands
``regime``             2           OLS slope of the market asset's log price over 20 and 60
                                   periods (per period; the same for every asset)
``frac_diff``          1           fixed-width fractional difference of ``ln P`` of order ``d``
``ff_factors``         5           the daily Fama–French factors Mkt-RF, SMB, HML, MOM and RF
                                   compounded over the period ending at t (the same for every
                                   asset; data inside 1960–2018 only, e.g. ``ff_industries``)
=====================  ==========  ==============================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from dynafolio.errors import ConfigError, DataError, some_names
from dynafolio.features import rolling_volatility, rsi

FeatureName = Literal[
    "log_return",
    "log_returns_1_5",
    "return",
    "volatility",
    "ewma_volatility",
    "rsi",
    "bollinger",
    "regime",
    "frac_diff",
    "ff_factors",
]
FEATURE_NAMES: tuple[str, ...] = get_args(FeatureName)

#: The S2 source's optional feature set (beside the log return the model forecasts).
S2_FEATURES: tuple[str, ...] = (
    "log_returns_1_5",
    "ewma_volatility",
    "rsi",
    "bollinger",
    "regime",
    "frac_diff",
)
#: S3's inputs: daily return, RSI, realised volatility.
S3_FEATURES: tuple[str, ...] = ("return", "rsi", "volatility")

RSI_WINDOW = 14
VOLATILITY_WINDOW = 20
BOLLINGER_WINDOW = 20
REGIME_WINDOWS = (20, 60)


def ewma_volatility(log_returns: pd.DataFrame, lam: float = 0.94) -> pd.DataFrame:
    """RiskMetrics volatility ``σ_t`` per asset, per period: ``σ²_t = λσ²_{t−1} + (1−λ)r²_t``.

    The recursion starts at each asset's first return with ``σ²`` = that return squared, and
    carries on through missing returns (``adjust=False`` exponential average of ``r²``, NaN
    rows skipped). Causal.
    """
    if not 0.0 < lam < 1.0:
        raise ConfigError(f"ewma_volatility: lambda must be in (0, 1), got {lam!r}")
    squared = log_returns.astype(np.float64).pow(2)
    variance = squared.ewm(alpha=1.0 - lam, adjust=False, ignore_na=True).mean()
    return np.sqrt(variance).where(log_returns.notna())


def bollinger_position(prices: pd.DataFrame, window: int = BOLLINGER_WINDOW) -> pd.DataFrame:
    """Where the price sits in its Bollinger bands: ``(P − MA) / (2·SD)`` over ``window``.

    0 at the moving average, ±1 on the upper/lower band (two sample standard deviations);
    NaN during the warm-up, over gaps, and when prices did not move (no band).
    """
    prices = prices.astype(np.float64)
    mean = prices.rolling(window, min_periods=window).mean()
    std = prices.rolling(window, min_periods=window).std(ddof=1)
    return (prices - mean) / (2.0 * std.where(std > 0))


def trend_slope(series: pd.Series, window: int) -> pd.Series:
    """OLS slope of ``series`` on time over the last ``window`` rows (units per row).

    A fixed linear filter ``Σ c_k y_{t−k}`` with ``c`` the least-squares weights of an
    evenly spaced regressor, so the value at ``t`` uses rows ``t − window + 1 .. t`` only;
    NaN when any of them is missing.
    """
    if window < 2:
        raise ConfigError(f"trend_slope: window must be >= 2, got {window!r}")
    time = np.arange(window, dtype=np.float64)
    centred = time - time.mean()
    weights = centred / np.sum(centred**2)  # slope = Σ weights · y over the window
    values = series.to_numpy(dtype=np.float64)
    out = np.full(len(values), np.nan)
    if len(values) >= window:
        out[window - 1 :] = sliding_window_view(values, window) @ weights
    return pd.Series(out, index=series.index)


def frac_diff_weights(d: float, width: int) -> np.ndarray:
    """Weights ``w_0 .. w_{width−1}`` of ``(1 − B)^d``: ``w_0 = 1``, ``w_k = −w_{k−1}(d−k+1)/k``.

    ``d = 1`` gives ``[1, −1, 0, …]`` (the first difference), ``d = 0`` the identity
    (López de Prado 2018, *Advances in Financial Machine Learning*, ch. 5).
    """
    weights = np.empty(width)
    weights[0] = 1.0
    for k in range(1, width):
        weights[k] = -weights[k - 1] * (d - k + 1) / k
    return weights


def frac_diff(series: pd.Series, d: float, width: int) -> pd.Series:
    """Fixed-width fractional difference ``Σ_{k<width} w_k x_{t−k}`` of order ``d``.

    The window has a fixed width (López de Prado's "fixed-width window" method), so every
    value uses the same number of past rows and the series stays stationary in its
    weighting; NaN for the first ``width − 1`` rows and wherever the window has a gap.
    """
    if not 0.0 <= d <= 2.0:
        raise ConfigError(f"frac_diff: order d must be in [0, 2], got {d!r}")
    if width < 1:
        raise ConfigError(f"frac_diff: width must be >= 1, got {width!r}")
    weights = frac_diff_weights(d, width)[::-1]  # oldest first, to match the window order
    values = series.to_numpy(dtype=np.float64)
    out = np.full(len(values), np.nan)
    if len(values) >= width:
        out[width - 1 :] = sliding_window_view(values, width) @ weights
    return pd.Series(out, index=series.index)


@dataclass(frozen=True)
class FeatureSet:
    """A chosen list of features and their settings; :meth:`build` computes them.

    Attributes
    ----------
    names : tuple of str
        Features in input order (see the module table).
    market : str
        Asset whose price trend is the ``regime`` feature (e.g. SPY).
    frac_d : float
        Order of the fractional difference.
    frac_width : int
        Rows in its fixed window.
    ewma_lambda : float
        Decay of the EWMA volatility.
    """

    names: tuple[str, ...]
    market: str = "SPY"
    frac_d: float = 0.4
    frac_width: int = 50
    ewma_lambda: float = 0.94

    def __post_init__(self) -> None:
        unknown = [n for n in self.names if n not in FEATURE_NAMES]
        if unknown or not self.names:
            raise ConfigError(
                f"features {list(self.names)}: {unknown or 'none given'}; choose from "
                f"{', '.join(FEATURE_NAMES)}"
            )
        if len(set(self.names)) != len(self.names):
            raise ConfigError(f"features {list(self.names)}: a feature is listed twice")

    @property
    def n_columns(self) -> int:
        """Columns per asset."""
        return sum(
            {"log_returns_1_5": 5, "regime": 2, "ff_factors": 5}.get(n, 1) for n in self.names
        )

    def build(self, prices: pd.DataFrame) -> np.ndarray:
        """The features of every asset at every row, ``(n_rows, n_assets, n_columns)``.

        Raises
        ------
        DataError
            If ``regime`` is asked for and the market asset is not in ``prices``.
        """
        prices = prices.astype(np.float64)
        log_prices = np.log(prices)
        log_returns = log_prices.diff()
        columns: list[np.ndarray] = []
        for name in self.names:
            columns += [_values(frame) for frame in self._feature(name, prices, log_prices,
                                                                    log_returns)]  # fmt: skip
        return np.stack(columns, axis=-1)

    def _feature(self, name, prices, log_prices, log_returns) -> list[pd.DataFrame]:
        if name == "log_return":
            return [log_returns]
        if name == "log_returns_1_5":
            return [log_prices - log_prices.shift(k) for k in range(1, 6)]
        if name == "return":
            return [prices / prices.shift(1) - 1.0]
        if name == "volatility":
            return [rolling_volatility(prices / prices.shift(1) - 1.0, VOLATILITY_WINDOW)]
        if name == "ewma_volatility":
            return [ewma_volatility(log_returns, self.ewma_lambda)]
        if name == "rsi":
            return [rsi(prices, RSI_WINDOW) / 100.0]
        if name == "bollinger":
            return [bollinger_position(prices)]
        if name == "regime":
            if self.market not in prices.columns:
                raise DataError(
                    f"feature 'regime' needs the market asset {self.market!r}, which is not "
                    f"among {some_names(prices.columns)}; set market_asset or drop the feature"
                )
            market = log_prices[self.market]
            return [
                pd.DataFrame({a: trend_slope(market, w) for a in prices.columns})
                for w in REGIME_WINDOWS
            ]
        if name == "ff_factors":
            from dynafolio.data.datasets import french_factors_per_period

            factors = french_factors_per_period(pd.DatetimeIndex(prices.index))
            return [
                pd.DataFrame({a: factors[f].to_numpy() for a in prices.columns}, index=prices.index)
                for f in factors.columns
            ]
        # frac_diff (names are checked in __post_init__)
        return [
            pd.DataFrame(
                {a: frac_diff(log_prices[a], self.frac_d, self.frac_width) for a in prices.columns}
            )
        ]


def _values(frame: pd.DataFrame) -> np.ndarray:
    return frame.to_numpy(dtype=np.float64, na_value=np.nan)
