"""S3: drawdown loss, RSI / volatility features and the end-to-end LSTM allocator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dynafolio.backtest import run_backtest
from dynafolio.errors import DataError
from dynafolio.features import rolling_volatility, rsi
from dynafolio.history import MarketHistory
from dynafolio.strategies.e2e import DrawdownLSTMAllocator
from dynafolio.strategies.e2e_model import (
    drawdown_loss,
    features_for_allocation,
    net_portfolio_returns,
)

TINY = dict(lookback=10, hidden=8, epochs=3, batch_size=32, val_fraction=0.2)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny LSTMs are slower with several OpenMP threads, badly so on a loaded machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def daily_prices(n_periods: int = 200, seed: int = 0, late: int = 160) -> pd.DataFrame:
    """Three random-walk assets, daily; ``C`` is listed ``late`` rows in (NaN before)."""
    rng = np.random.default_rng(seed)
    returns = rng.normal([0.001, 0.0005, 0.0], 0.02, size=(n_periods, 3))
    prices = pd.DataFrame(
        100.0 * np.exp(np.cumsum(returns, axis=0)),
        index=pd.date_range("2021-01-01", periods=n_periods, freq="D", name="date"),
        columns=pd.Index(["A", "B", "C"], name="asset"),
    )
    prices.iloc[:late, 2] = np.nan
    return prices


# --- the loss -----------------------------------------------------------------------------


def test_penalty_is_zero_for_non_negative_returns():
    returns = torch.tensor([0.0, 0.01, 0.02, 0.5])
    for lam in (0.0, 10.0, 1e6):
        assert drawdown_loss(returns, lam).item() == pytest.approx(-0.1325, abs=1e-7)


def test_loss_matches_hand_value():
    # −mean = 0.02/3; penalty = 10 · (0.01² + 0.03²) / 3 = 0.01/3.
    returns = torch.tensor([0.02, -0.01, -0.03], dtype=torch.float64)
    assert drawdown_loss(returns, 10.0).item() == pytest.approx(0.01, rel=1e-12)


@pytest.mark.parametrize("lam", [0.0, 10.0, 50.0])
@pytest.mark.parametrize("x", [0.001, 0.02, 0.3])
def test_penalty_grows_quadratically_below_zero(lam, x):
    # L(−x) = x + λx², so L(−2x) − L(−x) = x + 3λx².
    def loss(r: float) -> float:
        return drawdown_loss(torch.full((4,), r, dtype=torch.float64), lam).item()

    assert loss(-2 * x) - loss(-x) == pytest.approx(x + 3 * lam * x**2, rel=1e-12)


@pytest.mark.parametrize(("lam", "w0_falls"), [(0.0, False), (50.0, True)])
def test_gradient_moves_weight_away_from_the_losing_asset(lam, w0_falls):
    # Asset 0 has the higher mean (+1 %) but loses 8 % on one of two days; asset 1 earns
    # 0.5 % steadily. Without penalty the step buys asset 0; with λ = 50 it sells it.
    next_returns = torch.tensor([[0.10, 0.005], [-0.08, 0.005]], dtype=torch.float64)
    logits = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.SGD([logits], lr=1.0)
    w_before = torch.softmax(logits, dim=0)[0].item()
    weights = torch.softmax(logits, dim=0).expand(2, 2)
    drawdown_loss(net_portfolio_returns(weights, next_returns), lam).backward()
    optimiser.step()
    w_after = torch.softmax(logits, dim=0)[0].item()
    assert (w_after < w_before) is w0_falls


def test_turnover_cost_matches_hand_numbers():
    w = torch.tensor([[0.5, 0.5], [0.8, 0.2], [0.8, 0.2]], dtype=torch.float64)
    r = torch.tensor([[0.01, 0.02], [0.0, -0.01], [0.03, 0.0]], dtype=torch.float64)
    gross = [0.015, -0.002, 0.024]
    np.testing.assert_allclose(net_portfolio_returns(w, r).numpy(), gross)
    np.testing.assert_allclose(net_portfolio_returns(w, r, cost=0.0).numpy(), gross)
    # Chronological batch: row 1 trades 0.3 + 0.3 from row 0; row 0 pays nothing.
    np.testing.assert_allclose(
        net_portfolio_returns(w, r, cost=0.001).numpy(), [0.015, -0.0026, 0.024]
    )
    # Given previous weights: buying in from cash costs ‖w‖₁ = 1 on row 0.
    previous = torch.tensor([[0.0, 0.0], [0.5, 0.5], [0.8, 0.2]], dtype=torch.float64)
    np.testing.assert_allclose(
        net_portfolio_returns(w, r, previous, cost=0.001).numpy(), [0.014, -0.0026, 0.024]
    )


# --- features -----------------------------------------------------------------------------


def frame(values: dict[str, list[float]]) -> pd.DataFrame:
    n = len(next(iter(values.values())))
    return pd.DataFrame(values, index=pd.date_range("2022-01-03", periods=n, freq="D"))


def test_rsi_hand_values():
    # Changes +1, −0.5, +1, −0.5, +1 with window 3. Seed: gain 2/3, loss 1/6 → RS 4 → 80;
    # then gain 4/9, loss 5/18 → RS 8/5; then gain 17/27, loss 5/27 → RS 17/5.
    prices = frame({"x": [10.0, 11.0, 10.5, 11.5, 11.0, 12.0]})
    expected = [np.nan] * 3 + [80.0, 100 - 100 / 2.6, 100 - 100 / 4.4]
    np.testing.assert_allclose(rsi(prices, 3)["x"].to_numpy(), expected)


def test_rsi_limits_and_warm_up():
    n = 30
    prices = frame(
        {
            "up": list(np.arange(n) + 100.0),
            "down": list(200.0 - np.arange(n)),
            "flat": [50.0] * n,
            "late": [np.nan] * 5 + list(np.linspace(10, 20, n - 5)),
        }
    )
    values = rsi(prices, 14)
    assert values.iloc[:14].isna().all().all()
    np.testing.assert_allclose(values["up"].iloc[14:], 100.0)
    np.testing.assert_allclose(values["down"].iloc[14:], 0.0)
    np.testing.assert_allclose(values["flat"].iloc[14:], 50.0)
    assert values["late"].iloc[:19].isna().all() and values["late"].iloc[19:].eq(100.0).all()


def test_rsi_is_causal():
    prices = daily_prices(60, late=0)
    np.testing.assert_allclose(rsi(prices.iloc[:40]), rsi(prices).iloc[:40])


def test_rolling_volatility_hand_values():
    # Windows of 3: [.01, .03, −.02] and [.03, −.02, 0] have squared deviations summing to
    # 114/9·1e-4, so std = sqrt(19/30000); [−.02, 0, .04] sums to 168/9·1e-4.
    returns = frame({"x": [0.01, 0.03, -0.02, 0.0, 0.04], "y": [0.01, np.nan, 0.0, 0.0, 0.0]})
    vol = rolling_volatility(returns, 3)
    expected = [np.nan, np.nan, np.sqrt(19 / 30000), np.sqrt(19 / 30000), np.sqrt(28 / 30000)]
    np.testing.assert_allclose(vol["x"].to_numpy(), expected)
    np.testing.assert_allclose(vol["y"].to_numpy(), [np.nan] * 4 + [0.0])
    with pytest.raises(DataError, match="window"):
        rolling_volatility(returns, 1)


def test_allocation_features_shape_and_causality():
    prices = daily_prices(80, late=50)
    features = features_for_allocation(prices)
    assert features.shape == (80, 3, 3)
    assert np.isnan(features[:20]).any(axis=(1, 2)).all()  # volatility warm-up
    assert np.isfinite(features[20:, :2]).all() and np.isnan(features[:70, 2]).any(axis=1).all()
    np.testing.assert_allclose(features_for_allocation(prices.iloc[:60]), features[:60])
    np.testing.assert_allclose(features[1:, 0, 0], prices["A"].pct_change().iloc[1:])


# --- the strategy -------------------------------------------------------------------------


def test_name_and_unfitted_error():
    strategy = DrawdownLSTMAllocator(lam=25)
    assert strategy.name == "E2E drawdown LSTM (λ=25)" and strategy.learned
    prices = daily_prices()
    history = MarketHistory(prices, prices.pct_change(fill_method=None))
    with pytest.raises(RuntimeError, match="not fitted"):
        strategy.weights(history)
    with pytest.raises(DataError, match="lookback"):
        DrawdownLSTMAllocator(**{**TINY, "lookback": 190}).fit(history)


def test_weights_are_long_only_and_zero_on_untradable_assets():
    prices = daily_prices()  # C listed at row 160, tradable from row 160 + 20 + 10 − 1
    result = run_backtest(DrawdownLSTMAllocator(**TINY), prices, prices.index[140])
    weights = result.weights
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    assert (weights.to_numpy() >= 0).all()
    assert (weights.loc[: prices.index[188], "C"] == 0).all()
    assert (weights.loc[prices.index[189] :, "C"] > 0).all()


def test_same_seed_same_weights_other_seed_differs():
    prices = daily_prices(late=0)
    start = prices.index[150]
    first = run_backtest(DrawdownLSTMAllocator(**TINY, seed=3), prices, start).weights
    again = run_backtest(DrawdownLSTMAllocator(**TINY, seed=3), prices, start).weights
    other = run_backtest(DrawdownLSTMAllocator(**TINY, seed=4), prices, start).weights
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    assert not np.allclose(first.to_numpy(), other.to_numpy())


@pytest.mark.parametrize("retrain_every", [None, 7])
def test_changing_the_future_leaves_past_weights_unchanged(retrain_every):
    prices = daily_prices(late=0)
    start, cut = prices.index[150], 175
    changed = prices.copy()
    shock = np.random.default_rng(9).uniform(0.5, 1.5, size=changed.iloc[cut + 1 :].shape)
    changed.iloc[cut + 1 :] *= shock
    params = {**TINY, "retrain_every": retrain_every}
    base = run_backtest(DrawdownLSTMAllocator(**params), prices, start).weights
    moved = run_backtest(DrawdownLSTMAllocator(**params), changed, start).weights
    past = base.index <= prices.index[cut]
    pd.testing.assert_frame_equal(base[past], moved[past], check_exact=True)
    assert not np.allclose(base[~past].to_numpy(), moved[~past].to_numpy())


def test_early_stopping_keeps_the_best_validation_epoch():
    prices = daily_prices(late=0)
    history = MarketHistory(prices, prices.pct_change(fill_method=None))
    params = {**TINY, "epochs": 200, "patience": 2, "lr": 0.05}
    strategy = DrawdownLSTMAllocator(**params).fit(history)
    stopped = len(strategy.val_losses_)
    assert stopped < 200 and stopped == strategy.best_epoch_ + 2 + 1
    assert strategy.best_epoch_ == int(np.argmin(strategy.val_losses_))


def test_cost_in_loss_batches_are_shuffled_chronological_runs():
    strategy = DrawdownLSTMAllocator(batch_size=8, cost_in_loss=0.001)
    batches = strategy._batches(50)
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(50))
    assert all(len(b) <= 8 and bool((b.diff() == 1).all()) for b in batches)
    prices = daily_prices(late=0)
    result = run_backtest(DrawdownLSTMAllocator(**TINY, cost_in_loss=0.001), prices, "2021-06-20")
    np.testing.assert_allclose(result.weights.sum(axis=1), 1.0)


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 5),
    st.floats(0.0, 0.05),
    st.integers(0, 10_000),
)
def test_net_returns_never_exceed_gross(batch, n_assets, cost, seed):
    rng = np.random.default_rng(seed)
    w = torch.from_numpy(rng.dirichlet(np.ones(n_assets), size=batch))
    r = torch.from_numpy(rng.normal(0.0, 0.05, size=(batch, n_assets)))
    gross = net_portfolio_returns(w, r)
    net = net_portfolio_returns(w, r, cost=cost)
    assert bool((net <= gross + 1e-15).all()) and net[0].item() == gross[0].item()


def test_drawdown_penalty_steers_away_from_the_crashing_asset():
    # A rises 0.1 %/day almost without noise; B gains 3 % but loses 6.5 % on 30 % of days,
    # with a higher mean than A over these training days (+0.32 %/day). Return maximisation
    # (λ = 0) buys B; a large λ must buy A.
    rng = np.random.default_rng(1)
    n = 400
    up = rng.normal(0.001, 0.0005, n)
    crashy = np.where(rng.random(n) < 0.3, -0.065, 0.03)
    prices = pd.DataFrame(
        100.0 * np.cumprod(1.0 + np.column_stack([up, crashy]), axis=0),
        index=pd.date_range("2020-01-01", periods=n, freq="D"),
        columns=["A", "B"],
    )
    assert crashy[:340].mean() > 0.003
    on_a = {}
    for lam in (0.0, 50.0):
        strategy = DrawdownLSTMAllocator(
            lam=lam, lookback=10, hidden=8, lr=1e-2, epochs=20, val_fraction=0.0
        )
        on_a[lam] = run_backtest(strategy, prices, prices.index[340]).weights["A"].mean()
    assert on_a[50.0] > 0.8 and on_a[0.0] < 0.2
