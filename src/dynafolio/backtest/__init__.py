"""Backtest engine: one accounting of drift, turnover and costs for every strategy."""

from __future__ import annotations

from dynafolio.backtest.constraints import PortfolioConstraints
from dynafolio.backtest.costs import CostModel, ProportionalCost
from dynafolio.backtest.engine import (
    Simulation,
    chain_backtests,
    decision_rows,
    rebalance_step,
    run_backtest,
    simulate,
)
from dynafolio.backtest.result import BacktestResult

__all__ = [
    "BacktestResult",
    "CostModel",
    "PortfolioConstraints",
    "ProportionalCost",
    "Simulation",
    "chain_backtests",
    "decision_rows",
    "rebalance_step",
    "run_backtest",
    "simulate",
]
