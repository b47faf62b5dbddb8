"""Experiment composition: factory, universes, per-strategy constraints, quick settings."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import make_prices
from dynafolio.backtest import PortfolioConstraints
from dynafolio.cli import app
from dynafolio.errors import ConfigError
from dynafolio.experiments.config import validate_config
from dynafolio.strategies.registry import BuildContext
from dynafolio.studies import STUDIES as EXPERIMENTS
from dynafolio.studies import run_experiment


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_quick_settings_validate_and_use_one_seed(name):
    module = EXPERIMENTS[name]
    config = validate_config(module.quick(module.default_config()))
    assert config.seeds == (0,)
    assert len(config.strategies) >= 3


def test_unknown_forecaster_parameter_is_named_when_the_config_is_read():
    entries = [{"kind": "equal_weight"}] * 4 + [
        {"kind": "forecast_signal", "forecaster": {"model": "stacked_gru", "params": {"hiden": 8}}}
    ]
    with pytest.raises(ConfigError, match=r"strategies\.4\.forecaster\.params\.hiden: not a known"):
        validate_config({"name": "t", "strategies": entries})


def test_a_wrongly_typed_parameter_is_named():
    entry = {"kind": "ppo_topk", "ppo": {"total_timesteps": "many"}}
    with pytest.raises(ConfigError, match=r"strategies\.0\.ppo\.total_timesteps: Input should"):
        validate_config({"name": "t", "strategies": [entry]})


def test_factory_builds_each_learned_kind_with_its_seed():
    config = validate_config(
        {
            "name": "t",
            "strategies": [
                {"kind": "forecast_topk", "k": 3, "forecaster": {"model": "univariate_lstm"}},
                {
                    "kind": "forecast_signal",
                    "allocation": "hrp",
                    "forecaster": {"model": "transformer", "params": {"d_model": 8}},
                },
                {"kind": "price_rule"},
                {"kind": "e2e_drawdown", "lam": 20, "params": {"epochs": 2}},
            ],
        }
    )
    # The price rule sells short: it is built only under long-short limits.
    limits = PortfolioConstraints(long_only=False, max_position=1 / 3, fully_invested=False)
    built = [spec.build(BuildContext(seed=7, constraints=limits)) for spec in config.strategies]
    assert [type(s).__name__ for s in built] == [
        "TopKForecastStrategy",
        "ForecastHRPStrategy",
        "PriceRuleStrategy",
        "DrawdownLSTMAllocator",
    ]
    assert built[0].forecaster.seed == 7 and built[1].forecaster.d_model == 8
    assert built[3].lam == 20 and built[3].seed == 7
    assert built[2].max_position == 1 / 3  # the cap is the limits' max_position


def _config(tmp_path, strategies, **backtest):
    path = tmp_path / "p.csv"
    make_prices(n_periods=120, n_assets=4, late=0).to_csv(path, index_label="date")
    return validate_config(
        {
            "name": "t",
            "data": {"path": str(path)},
            "backtest": backtest,
            "strategies": strategies,
            "benchmark": "Equal weight",
        }
    )


def test_universe_and_constraint_overrides(tmp_path):
    config = _config(
        tmp_path,
        [
            {"kind": "equal_weight"},
            {"kind": "equal_weight", "name": "EW of two", "universe": ["A0", "A1"]},
            {"kind": "buy_and_hold", "asset": "A2", "constraints": {"max_position": 1.0}},
        ],
        max_position=0.5,
    )
    result = run_experiment(config)
    pair = next(r for r in result.strategies if r.name == "EW of two").first
    assert list(pair.weights.columns) == ["A0", "A1"]
    assert (pair.weights.to_numpy() == 0.5).all()
    assert set(result.table.index) == {"Equal weight", "EW of two", "A2 buy & hold"}


def test_experiment_limits_apply_without_an_override(tmp_path):
    config = _config(
        tmp_path,
        [{"kind": "equal_weight"}, {"kind": "buy_and_hold", "asset": "A2"}],
        max_position=0.5,
    )
    with pytest.raises(Exception, match="max_position=0.5"):
        run_experiment(config)


def test_unknown_universe_asset_is_named(tmp_path):
    config = _config(tmp_path, [{"kind": "equal_weight", "universe": ["A0", "ZZZ"]}])
    with pytest.raises(ConfigError, match=r"strategies\.0\.universe: \['ZZZ'\]"):
        run_experiment(config)


def test_learned_strategies_run_once_per_seed_and_report_spread(tmp_path):
    config = _config(
        tmp_path,
        [
            {"kind": "equal_weight"},
            {
                "kind": "e2e_drawdown",
                "lam": 10,
                "params": {"epochs": 2, "hidden": 8, "lookback": 10},
            },
        ],
    )
    config = config.model_copy(update={"n_seeds": 2})
    result = run_experiment(config)
    learned = next(r for r in result.strategies if r.learned)
    assert learned.seeds == (0, 1)
    assert result.table.loc[learned.name, "n_seeds"] == 2
    assert pd.notna(result.table.loc[learned.name, "sharpe_std"])
    assert result.table.loc["Equal weight", "n_seeds"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_experiment_runs_quick_end_to_end(tmp_path, name):
    result = CliRunner().invoke(app, ["run", name, "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    assert (run_dir / "report.html").is_file() and (run_dir / "manifest.json").is_file()
