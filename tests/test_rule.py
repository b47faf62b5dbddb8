"""S4 price-forecast rule: hand examples, cap and gross invariants, a long-short backtest."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from conftest import make_prices
from dynafolio.backtest import run_backtest
from dynafolio.backtest.costs import ProportionalCost
from dynafolio.errors import OptimizationError
from dynafolio.history import MarketHistory
from dynafolio.strategies.rule import PriceRuleStrategy, cap_positions, rule_weights
from test_signal import LONG_SHORT, MeanReturnForecaster, MomentumPriceForecaster

CAP = 1 / 3


def test_mixed_predictions_long_risers_short_fallers_then_cap():
    # R = (11/10 − 1, 19/20 − 1, 44/40 − 1, 50/50 − 1) = (0.10, −0.05, 0.10, 0).
    # w ∝ R with Σ|R| = 0.25: (0.4, −0.2, 0.4, 0). Cap at 1/3: A0, A2 give up 2 × 1/15 =
    # 2/15, all of it to A1 (the only position below the cap): −0.2 − 2/15 = −1/3.
    weights = rule_weights(np.array([10, 20, 40, 50.0]), np.array([11, 19, 44, 50.0]), CAP)
    np.testing.assert_allclose(weights, [1 / 3, -1 / 3, 1 / 3, 0.0], atol=1e-15)


def test_mixed_predictions_below_the_cap_are_proportional():
    # R = (0.02, 0.01, −0.01, 0.03, −0.03, 0.02), Σ|R| = 0.12: w = R / 0.12, max 0.25 < 1/3.
    current = np.full(6, 50.0)
    change = np.array([0.02, 0.01, -0.01, 0.03, -0.03, 0.02])
    weights = rule_weights(current, current * (1 + change), CAP)
    np.testing.assert_allclose(weights, change / 0.12, atol=1e-12)


def test_all_rise_uses_the_z_score_adjustment_factor():
    # R = (0.01, 0.02, 0.03, 0.04, 0.05): mean 0.03, std (ddof 0) = √(2·10⁻⁴) = 0.014142,
    # z = (−1.4142, −0.7071, 0, 0.7071, 1.4142), Σ|z| = 4.2426,
    # w = z / Σ|z| = (−1/3, −1/6, 0, 1/6, 1/3): long the strongest risers, short the weakest,
    # net 0, gross 1, nothing above the cap.
    weights = rule_weights(np.full(5, 100.0), np.array([101, 102, 103, 104, 105.0]), CAP)
    np.testing.assert_allclose(weights, [-1 / 3, -1 / 6, 0, 1 / 6, 1 / 3], atol=1e-12)


def test_all_rise_with_capping():
    # R = (0.01, 0.02, 0.03, 0.06): deviations (−0.02, −0.01, 0, 0.03), Σ|.| = 0.06,
    # w = (−1/3, −1/6, 0, 1/2). A3 gives up 1/6; A0 sits at the cap, so A1 takes it all.
    weights = rule_weights(np.full(4, 100.0), np.array([101, 102, 103, 106.0]), CAP)
    np.testing.assert_allclose(weights, [-1 / 3, -1 / 3, 0, 1 / 3], atol=1e-12)


def test_equal_or_no_predicted_changes_mean_all_cash():
    equal_rise = rule_weights(np.array([100, 200, 50.0]), np.array([101, 202, 50.5]), CAP)
    flat = rule_weights(np.array([100, 200, 50.0]), np.array([100, 200, 50.0]), CAP)
    assert (equal_rise == 0).all() and (flat == 0).all()


def test_too_few_positions_leave_the_rest_in_cash():
    weights = rule_weights(np.array([10, 10.0]), np.array([11, 9.0]), CAP)
    np.testing.assert_allclose(weights, [1 / 3, -1 / 3])  # gross 2/3, 1/3 in cash


def test_untradable_assets_get_nothing():
    current = np.array([np.nan, 10, 10, 10, 10])
    predicted = np.array([12, np.nan, 11, 9, 10.5])
    weights = rule_weights(current, predicted, CAP)
    assert weights[0] == 0 and weights[1] == 0
    assert weights[2] > 0 > weights[3] and weights[4] > 0


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="same length"):
        rule_weights(np.ones(3), np.ones(4), CAP)
    with pytest.raises(ValueError, match="positive"):
        rule_weights(np.array([0.0, 1.0]), np.ones(2), CAP)
    with pytest.raises(ValueError, match="max_position"):
        rule_weights(np.ones(2), np.ones(2), 0.0)
    with pytest.raises(ValueError, match="max_position"):
        cap_positions(np.ones(2), 1.5)


prices_arrays = st.integers(1, 12).flatmap(
    lambda n: st.tuples(
        arrays(float, n, elements=st.floats(1.0, 1000.0)),
        arrays(float, n, elements=st.floats(-0.5, 0.5)),
        arrays(bool, n, elements=st.booleans()),
    )
)


@settings(max_examples=300, deadline=None)
@given(data=prices_arrays, cap=st.sampled_from([CAP, 0.2, 0.5, 1.0]))
def test_rule_invariants(data, cap):
    current, change, missing = data
    predicted = np.where(missing, np.nan, current * (1 + change))
    weights = rule_weights(current, predicted, cap)
    valid = ~missing
    assert np.isfinite(weights).all() and (weights[missing] == 0).all()
    assert np.abs(weights).max(initial=0) <= cap + 1e-12
    gross = np.abs(weights).sum()
    assert gross <= 1 + 1e-12
    nonzero = int((weights != 0).sum())
    if nonzero:  # fully deployed unless the cap leaves too few positions to reach 1
        assert gross == pytest.approx(min(1.0, nonzero * cap), abs=1e-9)
    r = predicted[valid] / current[valid] - 1
    if r.size and (r > 0).all():
        deviation = r - r.mean()
        big = np.abs(deviation) > 1e-9 * np.abs(r).max()
        assert (np.sign(weights[valid][big]) == np.sign(deviation[big])).all()
    else:  # risers long, fallers short, flat nothing
        assert (np.sign(weights[valid]) == np.sign(r)).all()


@settings(max_examples=300, deadline=None)
@given(w=arrays(float, st.integers(1, 10), elements=st.floats(-1, 1)), cap=st.floats(0.05, 1))
def test_cap_positions_invariants(w, cap):
    capped = cap_positions(w, cap)
    assert np.abs(capped).max() <= cap
    assert (np.sign(capped) == np.sign(w)).all()
    expected_gross = min(np.abs(w).sum(), (w != 0).sum() * cap)
    if np.abs(w).max() <= cap:
        np.testing.assert_array_equal(capped, w)  # nothing over the cap: untouched
    assert np.abs(capped).sum() == pytest.approx(expected_gross, rel=1e-9, abs=1e-12)


def test_strategy_refuses_a_log_return_forecaster(prices):
    strategy = PriceRuleStrategy(MeanReturnForecaster())
    history = MarketHistory(prices, prices.pct_change(fill_method=None))
    with pytest.raises(ValueError, match="predicts prices"):
        strategy.fit(history)


def test_strategy_allocate_matches_the_pure_rule(prices):
    history = MarketHistory(prices, prices.pct_change(fill_method=None))
    strategy = PriceRuleStrategy(MomentumPriceForecaster(), forecaster_label="LSTM").fit(history)
    assert strategy.name == "LSTM price rule"
    forecast = prices.iloc[-1] * np.array([1.02, 0.99, 1.01, 1.03, 0.97, 1.0])
    weights = strategy.allocate(forecast, history)
    expected = rule_weights(prices.iloc[-1].to_numpy(), forecast.to_numpy(), CAP)
    np.testing.assert_array_equal(weights.to_numpy(), expected)


def test_full_backtest_passes_the_long_short_checks():
    prices = make_prices(n_periods=104, seed=5, late=70)
    strategy = PriceRuleStrategy(MomentumPriceForecaster(), retrain_every=4)
    start = prices.index[52]
    result = run_backtest(
        strategy, prices, start, constraints=LONG_SHORT, cost_model=ProportionalCost(0.0)
    )
    targets = result.weights.to_numpy()
    assert (np.abs(targets) <= CAP + 1e-12).all()
    assert (np.abs(targets).sum(axis=1) <= 1 + 1e-12).all()
    assert (targets < 0).any() and (targets > 0).any()  # it really is long-short
    assert result.ledger["cost"].eq(0).all()
    assert result.ledger["net"].equals(result.ledger["gross"])
    # Weekly book: the net return is the weighted sum of asset returns (cash earns 0).
    forward = prices.pct_change(fill_method=None).shift(-1).loc[result.weights.index]
    np.testing.assert_allclose(
        result.ledger["gross"].to_numpy(), (targets * forward.fillna(0).to_numpy()).sum(axis=1)
    )
    # Under the default long-only constraints the engine refuses the shorts.
    with pytest.raises(OptimizationError, match="short position"):
        run_backtest(PriceRuleStrategy(MomentumPriceForecaster()), prices, start)


def _plan_price_rule(constraints: dict):
    """Plan (build and check, training nothing) one price-rule entry on small prices."""
    from dynafolio.experiments.config import validate_config
    from dynafolio.experiments.plan import PreparedData, plan_strategies

    prices = make_prices(n_periods=60, n_assets=4, late=0)
    entry = {"kind": "price_rule", "forecaster": {"model": "price_lstm"}}
    config = validate_config(
        {
            "name": "rule",
            "split": {"train_fraction": 0.7},
            "strategies": [{"kind": "equal_weight"}, {**entry, "constraints": constraints}],
        }
    )
    return plan_strategies(config, PreparedData(prices, "synthetic", "0" * 64, {}))


def test_the_price_rule_caps_positions_at_the_constraint_the_engine_checks():
    # The README's example: the cap is the entry's constraints.max_position, so the rule's
    # targets pass the engine's check of that same number (0.333 < the source's 1/3).
    _, rule = _plan_price_rule({"long_only": False, "max_position": 0.333})
    assert rule.constraints.max_position == 0.333
    assert rule.build(0).max_position == 0.333
    weights = rule_weights(np.array([10, 20, 40, 50.0]), np.array([11, 19, 44, 50.0]), 0.333)
    assert np.abs(weights).max() <= 0.333 + 1e-12


@pytest.mark.parametrize(
    ("constraints", "message"),
    [
        ({}, "long_only: false"),  # the experiment's default limits are long-only
        ({"long_only": False, "max_gross_leverage": 0.5}, "max_gross_leverage is 0.5"),
        ({"long_only": False, "max_position": 2.0}, "max_position, which is 2.0"),
    ],
)
def test_limits_the_price_rule_cannot_keep_are_refused_before_training(constraints, message):
    from dynafolio.errors import ConfigError

    with pytest.raises(ConfigError, match=f"strategies.1: .*{message}"):
        _plan_price_rule(constraints)
