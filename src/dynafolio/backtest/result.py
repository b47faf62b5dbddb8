"""The result object every backtest returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class BacktestResult:
    """Per-period ledger of one strategy over one evaluation period.

    Timing: a decision taken at the close of date ``d_i`` (row of ``weights``) earns the
    return realised at the close of ``d_{i+1}`` (row of ``ledger``).

    Attributes
    ----------
    name : str
        Strategy label.
    ledger : pd.DataFrame, shape (n_periods, 4)
        Indexed by period end date, columns ``gross`` (return before costs), ``cost``
        (fraction of value paid at the rebalance that opened the period), ``net``
        (``gross − cost``) and ``turnover`` (``‖w_target − w_drifted‖₁``, buys plus sells, traded at
        the period's opening rebalance, 0 without one). All per period, simple returns.
    weights : pd.DataFrame, shape (n_periods, n_assets)
        Weights held at the start of each period (after trading), indexed by decision date.
    drifted_weights : pd.DataFrame, shape (n_periods, n_assets)
        Weights at the end of each period after prices moved, indexed by period end date.
    rebalanced : pd.Series of bool, shape (n_periods,)
        Whether the strategy traded at each decision date.
    periods_per_year : int
        Annualisation factor of the data's frequency.
    notes : tuple of str
        Things the strategy wants a reader to know (fallbacks used, assets skipped).
    """

    name: str
    ledger: pd.DataFrame
    weights: pd.DataFrame
    drifted_weights: pd.DataFrame
    rebalanced: pd.Series
    periods_per_year: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def net_returns(self) -> pd.Series:
        return self.ledger["net"].rename(self.name)

    @property
    def gross_returns(self) -> pd.Series:
        return self.ledger["gross"].rename(self.name)

    @property
    def equity(self) -> pd.Series:
        """Net equity curve starting from 1.0 (value after each period)."""
        return (1.0 + self.net_returns).cumprod()
