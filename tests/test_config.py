"""Experiment configuration: defaults validate, bad keys are named, files load."""

from __future__ import annotations

import pytest

from dynafolio.errors import ConfigError
from dynafolio.experiments.config import load_config_file, merge, validate_config
from dynafolio.studies import STUDIES as EXPERIMENTS


def test_every_default_experiment_validates():
    for name, module in EXPERIMENTS.items():
        config = validate_config(module.default_config())
        assert config.name == name
        assert config.seeds == (0, 1, 2)


def test_errors_name_the_bad_key_and_value():
    bad = merge(
        EXPERIMENTS["s1"].default_config(),
        {"backtest": {"transaction_cost": "ten bp", "rebalance_evry": 2}},
    )
    with pytest.raises(ConfigError) as info:
        validate_config(bad, "my.yaml")
    message = str(info.value)
    assert "my.yaml" in message
    assert "backtest.transaction_cost" in message and "ten bp" in message
    assert "backtest.rebalance_evry" in message


def test_unknown_strategy_kind_is_named():
    bad = merge(EXPERIMENTS["s1"].default_config(), {"strategies": [{"kind": "magic"}]})
    with pytest.raises(ConfigError, match="strategies.0"):
        validate_config(bad)


def test_config_is_frozen():
    config = validate_config(EXPERIMENTS["s1"].default_config())
    with pytest.raises(Exception, match="frozen"):
        config.backtest.transaction_cost = 0.5  # type: ignore[misc]


def test_yaml_and_toml_files(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("backtest:\n  transaction_cost: 0.002\nn_seeds: 2\n")
    toml_file = tmp_path / "c.toml"
    toml_file.write_text("n_seeds = 2\n[backtest]\ntransaction_cost = 0.002\n")
    for path in (yaml_file, toml_file):
        config = validate_config(merge(EXPERIMENTS["s1"].default_config(), load_config_file(path)))
        assert config.backtest.transaction_cost == 0.002 and config.seeds == (0, 1)


def test_unreadable_config_files_are_explained(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("backtest: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config_file(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"\.yaml, \.yml or \.toml"):
        load_config_file(broken.rename(tmp_path / "broken.json"))


@pytest.mark.parametrize(
    ("benchmark", "selected"),
    [
        (None, "Equal weight"),  # the default: {kind: equal_weight}
        ({"kind": "random_topk", "k": 2}, "Random Top-2"),
        ({"family": "control"}, "Random Top-2"),  # the entry's own tag
        ("A1 buy & hold", "A1 buy & hold"),  # a name still works
    ],
)
def test_the_benchmark_is_selected_by_tags_or_by_name(benchmark, selected):
    from conftest import make_prices
    from dynafolio.experiments.plan import PreparedData, benchmark_name, plan_strategies

    settings = {
        "name": "b",
        "strategies": [
            {"kind": "equal_weight"},
            {"kind": "random_topk", "k": 2, "tags": {"family": "control"}},
            {"kind": "random_topk", "k": 3},
            {"kind": "buy_and_hold", "asset": "A1"},
        ],
    }
    if benchmark is not None:
        settings["benchmark"] = benchmark
    config = validate_config(settings)
    prepared = PreparedData(make_prices(n_periods=40, n_assets=4), "synthetic", "0" * 64, {})
    assert benchmark_name(config, plan_strategies(config, prepared)) == selected


@pytest.mark.parametrize(
    ("benchmark", "problem"),
    [
        ({"kind": "random_topk"}, "matches \\['Random Top-2', 'Random Top-3'\\]"),
        ({"kind": "hrp"}, "matches none of the strategies"),
        ("Nope", "matches none of the strategies"),
    ],
)
def test_a_benchmark_that_selects_not_exactly_one_entry_is_refused(benchmark, problem):
    from conftest import make_prices
    from dynafolio.experiments.plan import PreparedData, plan_strategies

    config = validate_config(
        {
            "name": "b",
            "benchmark": benchmark,
            "strategies": [
                {"kind": "equal_weight"},
                {"kind": "random_topk", "k": 2},
                {"kind": "random_topk", "k": 3},
            ],
        }
    )
    prepared = PreparedData(make_prices(n_periods=40, n_assets=4), "synthetic", "0" * 64, {})
    with pytest.raises(ConfigError, match=f"benchmark: .*{problem}"):
        plan_strategies(config, prepared)
