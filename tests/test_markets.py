"""Known-answer markets: generation, best forecasts, the oracle forecaster, config and CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dynafolio.cli import app
from dynafolio.data import load_dataset
from dynafolio.data.markets import KnownMarket, MarketSettings, best_forecast, generate_market
from dynafolio.errors import ConfigError, DataError
from dynafolio.experiments.config import validate_config
from dynafolio.experiments.plan import load_prices, plan_strategies
from dynafolio.forecast.oracle import OracleForecaster
from dynafolio.history import MarketHistory


def _market(kind: str, **settings) -> KnownMarket:
    return KnownMarket(kind=kind, settings=MarketSettings(**settings))


def _log_returns(prices: pd.DataFrame) -> pd.DataFrame:
    return np.log(prices).diff().iloc[1:]


def test_markets_are_deterministic_weekly_panels_starting_at_100():
    market = _market("momentum", n_assets=7, n_periods=50, seed=3)
    prices = generate_market(market)
    assert prices.shape == (50, 7)
    assert (prices.iloc[0] == 100.0).all()
    assert (prices.index.day_of_week == 4).all() and prices.index.freq is None
    assert list(prices.columns) == [f"A{i}" for i in range(1, 8)]
    pd.testing.assert_frame_equal(prices, generate_market(market))
    assert not prices.equals(generate_market(_market("momentum", n_assets=7, n_periods=50, seed=4)))


def test_momentum_has_autocorrelation_phi_and_the_best_forecast_is_phi_times_the_last_return():
    market = _market("momentum", n_assets=20, n_periods=4000, phi=0.3, sigma=0.02)
    returns = _log_returns(generate_market(market)).to_numpy()
    lag1 = np.mean([np.corrcoef(returns[1:, j], returns[:-1, j])[0, 1] for j in range(20)])
    assert lag1 == pytest.approx(0.3, abs=0.02)
    # Stationary from the first row: the innovations' sd over sqrt(1 - phi^2).
    assert returns.std() == pytest.approx(0.02 / np.sqrt(1 - 0.09), rel=0.03)
    dates = generate_market(market).index
    forecast = best_forecast(market, dates[100])
    np.testing.assert_allclose(forecast.to_numpy(), 0.3 * returns[99], atol=1e-15)
    # Its cross-sectional IC is phi and its out-of-sample R^2 phi^2.
    fitted = 0.3 * returns[:-1]
    ic = np.mean([np.corrcoef(fitted[t], returns[t + 1])[0, 1] for t in range(len(fitted))])
    assert ic == pytest.approx(0.3, abs=0.03)
    r2 = 1 - np.mean((returns[1:] - fitted) ** 2) / np.mean(returns[1:] ** 2)
    assert r2 == pytest.approx(0.09, abs=0.02)


def test_foresight_forecasts_the_realised_next_return_and_noise_only_the_drift():
    market = _market("foresight", n_assets=5, n_periods=30)
    prices = generate_market(market)
    returns = _log_returns(prices)
    for row in (0, 10, 28):
        np.testing.assert_allclose(best_forecast(market, prices.index[row]), returns.iloc[row])
    assert best_forecast(market, prices.index[29]).isna().all()
    noise = _market("noise", n_assets=5, n_periods=30, drift=0.001)
    assert (best_forecast(noise, prices.index[5]) == 0.001).all()
    # foresight's prices are noise's: the same draws.
    noise_prices = generate_market(_market("noise", n_assets=5, n_periods=30))
    pd.testing.assert_frame_equal(prices, noise_prices)


def test_static_edge_assets_have_the_higher_drift_and_are_the_best_forecast():
    market = _market("static_edge", n_assets=10, n_periods=3000, edge=0.01, n_edge=3, seed=2)
    edge = market.edge_assets()
    assert len(edge) == 3
    means = _log_returns(generate_market(market)).mean()
    assert set(means.nlargest(3).index) == set(edge)
    forecast = best_forecast(market, generate_market(market).index[50])
    assert set(forecast.nlargest(3).index) == set(edge)
    with pytest.raises(ValueError, match="n_edge"):
        _market("static_edge", n_assets=3, n_edge=3)


def test_markets_are_datasets():
    prices = load_dataset("momentum")
    assert prices.shape == (365, 20)


def test_oracle_forecaster_serves_only_its_own_market():
    market = _market("foresight", n_assets=4, n_periods=40)
    prices = generate_market(market)
    history = MarketHistory(prices.iloc[:20], prices.iloc[:20].pct_change(fill_method=None))
    oracle = OracleForecaster(market=market).fit(history)
    np.testing.assert_allclose(oracle.predict(history), _log_returns(prices).iloc[19])
    with pytest.raises(ConfigError, match="known-answer markets"):
        OracleForecaster().fit(history)
    other = prices.rename(columns=lambda c: c.lower())
    with pytest.raises(DataError, match="not those of the known-answer market"):
        OracleForecaster(market=market).fit(MarketHistory(other, other.pct_change()))


def _config(**data) -> dict:
    return {
        "name": "m",
        "data": {"dataset": "momentum", "market": {"n_assets": 6, "n_periods": 120}, **data},
        "n_seeds": 1,
        "strategies": [
            {"kind": "equal_weight"},
            {"kind": "forecast_topk", "name": "Oracle", "k": 2, "forecaster": {"model": "oracle"}},
        ],
    }


def test_a_config_selects_a_market_and_the_oracle_reads_it():
    config = validate_config(_config())
    prepared = load_prices(config)
    assert prepared.prices.shape == (120, 6) and prepared.market.kind == "momentum"
    assert "known-answer market momentum" in prepared.source
    plan = plan_strategies(config, prepared)
    assert plan[1].build(0).forecaster.market == prepared.market


def test_the_oracle_on_real_data_is_refused_before_anything_trains():
    settings = _config(dataset="multiasset")
    del settings["data"]["market"]
    config = validate_config(settings)
    with pytest.raises(ConfigError, match="strategies.1.*known-answer markets"):
        plan_strategies(config, load_prices(config))


def test_market_settings_need_a_market_and_are_checked():
    with pytest.raises(ConfigError, match="data: market settings apply to the known-answer"):
        validate_config(_config(dataset="multiasset"))
    settings = _config()
    settings["data"]["market"]["phi"] = 1.5
    with pytest.raises(ConfigError, match="data.market.phi"):
        validate_config(settings)


def test_cli_runs_a_market_with_settings_and_rejects_bad_ones(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(
        app, ["run", "--dataset", "momentum", "--market", "phi", "-o", str(tmp_path)]
    )
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.output
    bad = runner.invoke(
        app, ["run", "--dataset", "noise", "--market", "sigma=-1", "-o", str(tmp_path)]
    )
    assert bad.exit_code == 2 and "data.market.sigma" in bad.output
    assert not list(tmp_path.iterdir())
    config = tmp_path / "c.yaml"
    config.write_text(
        "name: m\nn_seeds: 1\nstrategies:\n  - {kind: equal_weight}\n"
        "  - {kind: forecast_topk, name: Oracle, k: 2, forecaster: {model: oracle}}\n"
        "  - {kind: random_topk, name: Random Top-2, k: 2}\n"
    )
    ok = runner.invoke(
        app,
        ["run", "-c", str(config), "--dataset", "foresight", "--market", "n_assets=5",
         "--market", "n_periods=60", "-o", str(tmp_path), "--executor", "serial"],
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    metrics = pd.read_csv(run / "metrics.csv", index_col=0)
    # Perfect foresight through the Top-K rule is far above chance.
    assert metrics.loc["Oracle", "sharpe"] > 10 > metrics.loc["Random Top-2", "sharpe"]
