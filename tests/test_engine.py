"""The engine's accounting against hand-computed ledgers and invariants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynafolio.backtest import PortfolioConstraints, ProportionalCost, run_backtest, simulate
from dynafolio.errors import DataError, OptimizationError
from dynafolio.strategies import BuyAndHoldStrategy, EqualWeightStrategy
from dynafolio.strategies.base import Strategy


def test_hand_ledger_drift_and_costs():
    # Two assets, three periods, tc = 1%. Rebalance at decisions 0 and 2.
    returns = np.array([[0.10, -0.10], [0.20, 0.00], [0.00, 0.10]])
    targets = np.array([[0.5, 0.5], [9.0, 9.0], [1.0, 0.0]])  # row 1 is ignored: no rebalance
    sim = simulate(returns, targets, np.array([True, False, True]), ProportionalCost(0.01))
    # Period 0: buy from cash, turnover 1.0, cost 0.01; gross 0.5*0.1 + 0.5*(-0.1) = 0.
    #   holdings end: [0.55, 0.45], value 1.0 -> drifted weights [0.55, 0.45].
    # Period 1: no trade; gross 0.55*0.2 = 0.11; holdings [0.66, 0.45], value 1.11.
    # Period 2: trade [0.66/1.11, 0.45/1.11] -> [1, 0]: turnover 2*0.45/1.11, cost 0.01 * that;
    #   gross 1.0*0.0 = 0.
    turnover2 = 2 * 0.45 / 1.11
    np.testing.assert_allclose(sim.gross, [0.0, 0.11, 0.0], atol=1e-12)
    np.testing.assert_allclose(sim.turnover, [1.0, 0.0, turnover2], atol=1e-12)
    np.testing.assert_allclose(sim.cost, [0.01, 0.0, 0.01 * turnover2], atol=1e-12)
    np.testing.assert_allclose(sim.net, [-0.01, 0.11, -0.01 * turnover2], atol=1e-12)
    np.testing.assert_allclose(sim.weights_start[1], [0.55, 0.45], atol=1e-12)
    np.testing.assert_allclose(sim.weights_end[1], [0.66 / 1.11, 0.45 / 1.11], atol=1e-12)
    np.testing.assert_allclose(sim.weights_end[2], [1.0, 0.0], atol=1e-12)


def test_hand_ledger_long_short_with_cash():
    # 50% long A, 20% short B, 70% cash. Both rise 10%: gross = 0.05 - 0.02 = 0.03.
    # Holdings end [0.55, -0.22] + cash 0.7 = 1.03 -> weights [0.55/1.03, -0.22/1.03].
    returns = np.array([[0.10, 0.10], [0.0, -0.5]])
    targets = np.array([[0.5, -0.2], [0.0, 0.0]])
    sim = simulate(returns, targets, np.array([True, False]), ProportionalCost(0.0))
    np.testing.assert_allclose(sim.gross[0], 0.03, atol=1e-12)
    np.testing.assert_allclose(sim.weights_end[0], [0.55 / 1.03, -0.22 / 1.03], atol=1e-12)
    # Period 1: B halves, the short gains 0.11 on a value of 1.03.
    np.testing.assert_allclose(sim.gross[1], 0.11 / 1.03, atol=1e-12)


def test_nan_return_is_carried_at_last_price():
    returns = np.array([[0.1, np.nan], [np.nan, 0.2]])
    sim = simulate(
        returns, np.array([[0.5, 0.5], [0.5, 0.5]]), np.array([True, True]), ProportionalCost(0.0)
    )
    np.testing.assert_allclose(sim.gross, [0.05, 0.5 * 0.2], atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), every=st.integers(1, 5))
def test_zero_cost_net_equals_gross_and_costs_nonnegative(seed, every):
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0, 0.05, size=(30, 4))
    targets = rng.dirichlet(np.ones(4), size=30)
    rebalance = np.zeros(30, dtype=bool)
    rebalance[::every] = True
    free = simulate(returns, targets, rebalance, ProportionalCost(0.0))
    np.testing.assert_array_equal(free.net, free.gross)
    paid = simulate(returns, targets, rebalance, ProportionalCost(0.002))
    assert (paid.cost >= 0).all()
    np.testing.assert_allclose(paid.gross, free.gross)  # costs do not move weights
    np.testing.assert_allclose(paid.weights_end.sum(axis=1), 1.0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), every=st.integers(1, 6))
def test_vectorised_drift_matches_a_period_by_period_ledger(seed, every):
    rng = np.random.default_rng(seed)
    n, k = 25, 5
    returns = rng.normal(0.001, 0.08, size=(n, k)).clip(-0.9)
    targets = rng.dirichlet(np.ones(k), size=n)
    rebalance = np.arange(n) % every == 0
    sim = simulate(returns, targets, rebalance, ProportionalCost(0.003))
    w = np.zeros(k)
    for i in range(n):
        cost = 0.0
        if rebalance[i]:
            cost = 0.003 * np.abs(targets[i] - w).sum()
            w = targets[i]
        gross = w @ returns[i]
        assert sim.net[i] == pytest.approx(gross - cost, abs=1e-12)
        w = w * (1 + returns[i]) / (1 + gross)


def test_run_backtest_timing_and_buy_and_hold(prices):
    result = run_backtest(
        BuyAndHoldStrategy("A0"), prices, prices.index[60], cost_model=ProportionalCost(0.0)
    )
    # First decision is the close before the first evaluated date; returns are A0's own.
    assert result.weights.index[0] == prices.index[59]
    assert result.ledger.index[0] == prices.index[60]
    expected = prices["A0"].pct_change().iloc[60:]
    np.testing.assert_allclose(result.net_returns.to_numpy(), expected.to_numpy())
    assert result.rebalanced.sum() == 1
    assert result.ledger["turnover"].iloc[1:].eq(0).all()


def test_equal_weight_buys_late_listings_only_once_priced(prices):
    result = run_backtest(EqualWeightStrategy(), prices, prices.index[10])
    late = prices.columns[-1]
    first_price = prices[late].first_valid_index()
    before = result.weights.loc[result.weights.index < first_price, late]
    assert (before == 0).all()
    assert (result.weights.loc[first_price:, late] > 0).all()


class _BuysUnlisted(Strategy):
    label = "cheater"

    def weights(self, history):
        return pd.Series(1.0 / history.prices.shape[1], index=history.assets)


def test_engine_refuses_weight_on_unlisted_asset(prices):
    with pytest.raises(OptimizationError, match="no price"):
        run_backtest(_BuysUnlisted(), prices, prices.index[5])


def test_constraints_are_enforced(prices):
    class _Leveraged(Strategy):
        label = "leveraged"

        def weights(self, history):
            return pd.Series({"A0": 1.5, "A1": -0.5})

    with pytest.raises(OptimizationError, match="short position"):
        run_backtest(_Leveraged(), prices, prices.index[40])
    with pytest.raises(OptimizationError, match="gross leverage"):
        run_backtest(
            _Leveraged(),
            prices,
            prices.index[40],
            constraints=PortfolioConstraints(long_only=False, max_gross_leverage=1.5),
        )
    ok = run_backtest(
        _Leveraged(),
        prices,
        prices.index[40],
        constraints=PortfolioConstraints(long_only=False, max_gross_leverage=2.0, max_position=1.5),
    )
    assert np.isfinite(ok.net_returns).all()


def test_evaluation_must_leave_a_decision_date(prices):
    with pytest.raises(DataError, match="no earlier date"):
        run_backtest(EqualWeightStrategy(), prices, prices.index[0])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_rebalance_step_reproduces_simulate_period_by_period(seed):
    from dynafolio.backtest import rebalance_step

    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0, 0.05, size=(12, 4))
    targets = rng.dirichlet(np.ones(4), size=12)
    cost = ProportionalCost(0.002)
    sim = simulate(returns, targets, np.ones(12, dtype=bool), cost)
    drifted = np.zeros((1, 4))
    for i in range(12):
        step = rebalance_step(targets[i : i + 1], drifted, returns[i : i + 1], cost)
        assert step.net[0] == pytest.approx(sim.net[i], abs=1e-14)
        np.testing.assert_allclose(step.weights_end[0], sim.weights_end[i], atol=1e-14)
        drifted = step.weights_end
