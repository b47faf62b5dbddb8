"""What a strategy is allowed to see at a decision date."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


def carried_returns(prices: pd.DataFrame) -> pd.DataFrame:
    """Simple returns of prices carried at their last value over gaps, ``(n_dates, n_assets)``.

    See :attr:`MarketHistory.carried_returns`.
    """
    return prices.ffill().pct_change(fill_method=None)


@dataclass(frozen=True)
class MarketHistory:
    """Prices and returns up to and including the decision date — nothing later.

    The backtest engine builds one per decision by slicing; a strategy never receives the
    full data set, so it cannot look ahead even by accident.

    Attributes
    ----------
    prices : pd.DataFrame, shape (n_dates, n_assets)
        Prices up to the decision date (last row). NaN where an asset had no price.
    returns : pd.DataFrame, shape (n_dates, n_assets)
        One-period simple returns ``P_t / P_{t-1} − 1`` on the same index (first row NaN;
        NaN wherever either price is missing). What estimators and models learn from: no
        return ever spans a gap.
    """

    prices: pd.DataFrame
    returns: pd.DataFrame

    @property
    def date(self) -> pd.Timestamp:
        """The decision date: the close of the last row."""
        return self.prices.index[-1]

    @property
    def assets(self) -> pd.Index:
        return self.prices.columns

    @property
    def available(self) -> pd.Series:
        """Assets with a price at the decision date: the only ones that may be bought."""
        return self.prices.iloc[-1].notna()

    @property
    def carried_returns(self) -> pd.DataFrame:
        """Returns of holding each asset: what a portfolio earns, as the engine books it.

        A missing price carries the last one (return 0 while it is missing) and the first
        price after a gap earns the whole move since the last price, so a position held
        through a trading halt is valued honestly. NaN only before an asset's first price.
        Causal: each row uses that row's price and the last one before it.
        """
        return carried_returns(self.prices)

    def window_returns(self, window: int | None, min_coverage: float = 0.9) -> pd.DataFrame:
        """Complete-data returns for estimating a model on the last ``window`` periods.

        Assets available today with a valid return on at least ``min_coverage`` of the
        window's periods are kept; the rows where any kept asset is missing are dropped, so
        estimators see a rectangular, NaN-free sample. ``window=None`` uses all history.
        """
        returns = self.returns.iloc[1:]  # the first row has no previous price
        if window is not None:
            returns = returns.iloc[-window:]
        returns = returns.loc[:, self.available]
        coverage = returns.notna().mean()
        kept = returns.loc[:, coverage >= min_coverage]
        return kept.dropna(how="any")
