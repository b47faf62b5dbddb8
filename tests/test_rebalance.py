"""`dynafolio rebalance`: the decision as of a date of a finished run is the run's decision,
for every strategy kind; trades, lots, costs; hostile holdings get a clear error."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dynafolio.cli import app
from dynafolio.errors import DataError
from dynafolio.experiments.config import validate_config
from dynafolio.experiments.holdings import Holdings, read_holdings
from dynafolio.experiments.plan import load_prices
from dynafolio.experiments.rebalance import plan_rebalance
from dynafolio.experiments.tasks import RunContext
from dynafolio.experiments.walk import select_entry, walk_to
from dynafolio.strategies.classical import EqualWeightStrategy
from dynafolio.studies import run_experiment
from test_causal_pipeline import CLASSES, STRATEGIES, TEST_START, raw_daily_prices

AS_OF = pd.Timestamp("2021-06-25")  # inside the test period, after refits


@pytest.fixture(scope="module")
def run_and_context(tmp_path_factory):
    path = tmp_path_factory.mktemp("rebalance") / "prices.csv"
    raw_daily_prices().to_csv(path, index_label="date")
    config = validate_config(
        {
            "name": "probe",
            "data": {"path": str(path), "frequency": "W"},
            "split": {"test_start": TEST_START, "train_fraction": None},
            "strategies": STRATEGIES,
            "n_seeds": 1,
        }
    )
    prepared = dataclasses.replace(load_prices(config), asset_classes=CLASSES)
    context = RunContext.build(config, prepared)
    return run_experiment(context), context


def test_the_decision_as_of_a_run_date_is_the_runs_decision_for_every_kind(run_and_context):
    result, context = run_and_context
    kinds = set()
    for entry, item in enumerate(context.plan):
        run = result.strategies[entry].first
        walked = walk_to(context, entry, item.seeds[0], AS_OF)
        strategy, history, due = walked.strategy, walked.history, walked.due
        assert history.date == AS_OF
        drifted = run.drifted_weights.loc[AS_OF]  # held at the close of AS_OF, before trading
        np.testing.assert_allclose(walked.held.to_numpy(), drifted.to_numpy(), atol=1e-12)
        plan = plan_rebalance(
            strategy, history, Holdings(drifted, "weights", 1.0 - drifted.sum()),
            constraints=item.constraints, due=due,
        )  # fmt: skip
        expected = run.weights.loc[AS_OF]
        np.testing.assert_allclose(
            plan.target.reindex(expected.index).to_numpy(), expected.to_numpy(), atol=1e-10,
            err_msg=item.name,
        )  # fmt: skip
        kinds.add(item.spec.kind)
    from dynafolio.strategies.kinds import STRATEGY_SPECS

    assert kinds == set(STRATEGY_SPECS)  # every registered kind is checked


def test_select_by_name_or_tags(run_and_context):
    _, context = run_and_context
    assert context.plan[select_entry(context.plan, "Equal weight")].name == "Equal weight"
    entry = select_entry(context.plan, "kind=momentum")
    assert context.plan[entry].spec.kind == "momentum"
    with pytest.raises(Exception, match="match"):
        select_entry(context.plan, "kind=ppo_topk")  # two PPO entries: ambiguous


def _history(n=60):
    dates = pd.date_range("2024-01-05", periods=n, freq="W-FRI")
    rng = np.random.default_rng(0)
    prices = pd.DataFrame(
        100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, 3)), axis=0)), index=dates,
        columns=["A", "B", "C"],
    )  # fmt: skip
    return prices


def test_trades_in_units_rounded_to_lots_with_the_cost():
    prices = _history()
    last = prices.iloc[-1]
    holdings = Holdings(pd.Series({"A": 10.0}), "units", cash=5000.0)
    lots = pd.Series({"A": 1.0, "B": 1.0, "C": 5.0})
    plan = plan_rebalance(EqualWeightStrategy(), prices, holdings, lots=lots)
    value = 10 * last["A"] + 5000.0
    assert plan.value == pytest.approx(value)
    units = plan.trades["units_target"]
    investable = value * (1 - 0.001 * plan.turnover)  # about: the cost is paid first
    assert units["A"] == pytest.approx(np.trunc(investable / 3 / last["A"]), abs=1)
    assert units["C"] % 5 == 0
    assert (plan.trades["target_weight"] <= 1 / 3 + 1e-12).all()
    spent = (units * last).sum()
    assert plan.cash_after == pytest.approx(value - spent - plan.cost * value)
    assert plan.cost == pytest.approx(0.001 * plan.turnover)


def test_a_value_too_small_for_one_lot_is_refused():
    prices = _history()
    with pytest.raises(DataError, match="too small to buy one lot"):
        plan_rebalance(
            EqualWeightStrategy(), prices, Holdings(pd.Series(dtype=float), "units", 50.0),
            lots=pd.Series({"A": 100.0, "B": 100.0, "C": 100.0}),
        )  # fmt: skip


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("asset,units\nA,10\nZZZ,3\n", ".csv", "not in the data"),
        ("asset,units\nA,-4\n", ".csv", "negative positions"),
        ("asset,units\nA,ten\n", ".csv", "is not a number"),
        ("asset,units\nA,nan\n", ".csv", "not a finite number"),
        ("asset,units\nA,1\nA,2\n", ".csv", "appears twice"),
        ("asset,shares\nA,1\n", ".csv", "expected two columns"),
        ('{"units": {"A": "x"}}', ".json", "is not a number"),
        ('{"units": {"A": 1}, "leverage": 2}', ".json", "unknown keys"),
        ('{"units": {"A": NaN}}', ".json", "not a finite number"),
        ("asset,weight\nA,0.7\nB,0.5\n", ".csv", "sum to 1.200000, not 1"),
        ("asset,units\nA,3\nCASH,-500\n", ".csv", "cannot borrow"),
    ],
)
def test_hostile_holdings_get_a_clear_error(tmp_path, content, suffix, message):
    path = tmp_path / f"holdings{suffix}"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        plan_rebalance(EqualWeightStrategy(), _history(), read_holdings(path))


def test_a_held_asset_without_a_price_on_the_decision_date_is_refused():
    prices = _history()
    prices.iloc[-1, 1] = np.nan
    with pytest.raises(DataError, match="no price on .* for held \\['B'\\].*last price"):
        plan_rebalance(EqualWeightStrategy(), prices, Holdings(pd.Series({"B": 3.0}), "units"))


def _cli(tmp_path, *args):
    return CliRunner().invoke(app, ["rebalance", *args, "--out", str(tmp_path / "out")])


def test_the_cli_plans_writes_and_refuses_stale_prices(tmp_path):
    holdings = tmp_path / "holdings.csv"
    holdings.write_text("asset,units\nSPY,20\nGLD,10\nCASH,3000\n")
    config = tmp_path / "ew.yaml"
    config.write_text("name: ew\nstrategies:\n  - kind: equal_weight\n  - kind: hrp\n")
    result = _cli(
        tmp_path, "--config", str(config), "--strategy", "kind=hrp", "--holdings", str(holdings),
        "--today", "2025-01-02",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "out").iterdir()
    trades = pd.read_csv(folder / "trades.csv", index_col="asset")
    saved = json.loads((folder / "rebalance.json").read_text())
    assert saved["decision_date"] == "2024-12-31"
    assert saved["data_sha256"] and saved["strategy"].startswith("HRP")
    invested = (trades["units_target"] * trades["price"]).sum()
    cost = saved["estimated_cost_value"]
    assert invested + saved["cash_after"] + cost == pytest.approx(saved["value"])
    assert 0 <= saved["cash_after"] < 0.001 * saved["value"]  # the cost is paid, little idles
    assert "Trades" in result.output
    stale = _cli(
        tmp_path, "--config", str(config), "--strategy", "Equal weight", "--holdings",
        str(holdings), "--today", "2026-12-03",
    )  # fmt: skip
    assert stale.exit_code == 2 and "days" in stale.output and "--as-of" in stale.output
    assert len(list((tmp_path / "out").iterdir())) == 1  # nothing written for the refusal


@pytest.mark.slow  # the same check as the API test of every kind, through the CLI (45 s)
def test_the_cli_as_of_a_finished_runs_date_gives_the_runs_weights(tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text(
        "name: small\nn_seeds: 1\nsplit: {train_fraction: 0.6}\nstrategies:\n"
        "  - kind: equal_weight\n  - {kind: random_topk, k: 3, hold: 2}\n"
        "  - {kind: forecast_topk, k: 3, retrain_every: 10, forecaster: {model: ar}}\n"
    )
    market = ["--dataset", "momentum", "--market", "n_assets=8", "--market", "n_periods=200"]
    ran = CliRunner().invoke(
        app, ["run", "--config", str(config), *market, "--out", str(tmp_path / "runs")]
    )
    assert ran.exit_code == 0, ran.output
    (run,) = (tmp_path / "runs").iterdir()
    holdings = tmp_path / "h.csv"
    holdings.write_text("asset,weight\nCASH,1\n")
    for name, stem in (("Random Top-3 (hold 2)", "random-top-3-hold-2"), ("AR Top-3", "ar-top-3")):
        weights = pd.read_csv(run / "weights" / f"{stem}.csv", index_col="date", parse_dates=True)
        for date in weights.index[[3, 20, -1]]:
            out = tmp_path / f"plan-{stem}-{date.date()}"
            planned = CliRunner().invoke(
                app,
                ["rebalance", "--config", str(config), *market, "--strategy", name,
                 "--holdings", str(holdings), "--as-of", str(date.date()), "--out", str(out)],
            )  # fmt: skip
            assert planned.exit_code == 0, planned.output
            (folder,) = out.iterdir()
            target = pd.read_csv(folder / "targets.csv", index_col="asset")["mean"]
            np.testing.assert_allclose(
                target.reindex(weights.columns).to_numpy(), weights.loc[date].to_numpy(),
                atol=1e-6,  # the weights file is written with 6 significant digits
            )  # fmt: skip


def test_a_decision_from_a_finished_runs_directory_loads_its_agents(tmp_path, monkeypatch):
    from conftest import TINY_PPO

    ppo = ", ".join(f"{k}: {v}" for k, v in TINY_PPO.items())
    config = tmp_path / "ppo.yaml"
    config.write_text(
        "name: ppo\nn_seeds: 1\nsplit: {train_fraction: 0.6}\nstrategies:\n"
        "  - kind: equal_weight\n"
        f"  - {{kind: ppo_topk, k: 2, lookback: 4, score_initial_window: 40, ppo: {{{ppo}}}}}\n"
    )
    market = ["--dataset", "momentum", "--market", "n_assets=6", "--market", "n_periods=160"]
    ran = CliRunner().invoke(
        app, ["run", "--config", str(config), *market, "--out", str(tmp_path / "runs")]
    )
    assert ran.exit_code == 0, ran.output
    (run,) = (tmp_path / "runs").iterdir()
    weights = pd.read_csv(
        run / "weights" / "ppo-only-top-2.csv", index_col="date", parse_dates=True
    )
    import dynafolio.strategies.rl as rl

    def no_training(*args, **kwargs):
        raise AssertionError("the saved agent should be loaded, not trained")

    monkeypatch.setattr(rl, "train_agent", no_training)
    for date in weights.index[[5, -1]]:
        out = tmp_path / f"plan-{date.date()}"
        planned = CliRunner().invoke(
            app,
            ["rebalance", "--run", str(run), "--strategy", "kind=ppo_topk",
             "--as-of", str(date.date()), "--out", str(out)],
        )  # fmt: skip
        assert planned.exit_code == 0, planned.output
        (folder,) = out.iterdir()
        target = pd.read_csv(folder / "targets.csv", index_col="asset")["mean"]
        np.testing.assert_allclose(
            target.reindex(weights.columns).to_numpy(), weights.loc[date].to_numpy(), atol=1e-6
        )


def test_a_run_whose_data_changed_is_refused(tmp_path):
    config = tmp_path / "ew.yaml"
    data = tmp_path / "prices.csv"
    _history(80).to_csv(data, index_label="date")
    config.write_text(f"name: ew\ndata: {{path: {data}}}\nstrategies:\n  - kind: equal_weight\n")
    ran = CliRunner().invoke(app, ["run", "--config", str(config), "--out", str(tmp_path / "r")])
    assert ran.exit_code == 0, ran.output
    (run,) = (tmp_path / "r").iterdir()
    _history(81).to_csv(data, index_label="date")  # the file changed after the run
    refused = _cli(tmp_path, "--run", str(run), "--strategy", "Equal weight")
    assert refused.exit_code == 2 and "the data changed since the run" in refused.output


def test_a_bad_date_is_refused(tmp_path):
    holdings = tmp_path / "h.csv"
    holdings.write_text("asset,weight\nCASH,1\n")
    result = _cli(tmp_path, "--strategy", "Equal weight", "--holdings", str(holdings),
                  "--as-of", "2024-13-45")  # fmt: skip
    assert result.exit_code == 2 and "is not a date" in result.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_decision_from_a_finished_run_uses_its_saved_forecasters(tmp_path, monkeypatch):
    """With ``--run``, the forecasters in force at the date under the run's refit schedule are
    loaded from its forecasters/ folder, never fitted again, and the decision is the run's."""
    from conftest import TINY_LSTM

    lstm = ", ".join(f"{k}: {v}" for k, v in TINY_LSTM.items())
    config = tmp_path / "fc.yaml"
    config.write_text(
        "name: fc\nn_seeds: 2\n"
        "split: {walk_forward: {first_test: 2020-06-05, step: 20}}\nstrategies:\n"
        "  - kind: equal_weight\n"
        "  - {kind: forecast_topk, k: 2, retrain_every: 8, forecaster: {model: ar}}\n"
        "  - {kind: forecast_topk, k: 2, retrain_every: 8, "
        f"forecaster: {{model: univariate_lstm, params: {{{lstm}}}}}}}\n"
    )
    market = ["--dataset", "momentum", "--market", "n_assets=6", "--market", "n_periods=160"]
    ran = CliRunner().invoke(
        app, ["run", "--config", str(config), *market, "--out", str(tmp_path / "runs")]
    )
    assert ran.exit_code == 0, ran.output
    (run,) = (tmp_path / "runs").iterdir()
    index = json.loads((run / "forecasters" / "index.json").read_text())["fits"]
    assert {row["stream"] for row in index} == {"test"}
    assert len({(row["strategy"], row["seed"], row["fold"]) for row in index}) == 2 * 2 * 2

    import dynafolio.strategies.forecast as forecast

    def no_fit(*args, **kwargs):
        raise AssertionError("the run's saved forecaster should be loaded, not fitted")

    monkeypatch.setattr(forecast, "fit_shared", no_fit)
    for stem, model in (("ar-top-2", "ar"), ("lstm-top-2", "univariate_lstm")):
        weights = pd.read_csv(
            run / "weights" / f"{stem}-seed0.csv", index_col="date", parse_dates=True
        )
        for date in weights.index[[3, 12, -1]]:  # fold 1 after a refit, fold 2, the last
            out = tmp_path / f"plan-{stem}-{date.date()}"
            planned = CliRunner().invoke(
                app,
                ["rebalance", "--run", str(run), "--strategy", f"model={model}",
                 "--as-of", str(date.date()), "--seeds", "1", "--out", str(out)],
            )  # fmt: skip
            assert planned.exit_code == 0, planned.output
            (folder,) = out.iterdir()
            per_seed = pd.read_csv(folder / "targets.csv", index_col="asset")
            np.testing.assert_allclose(
                per_seed.iloc[:, 0].reindex(weights.columns).to_numpy(),
                weights.loc[date].to_numpy(),
                atol=1e-6,
            )

    # A forecaster file of another universe put in place of the run's own is refused.
    monkeypatch.undo()
    other = tmp_path / "other.yaml"
    other.write_text(config.read_text().replace("name: fc", "name: other"))
    market7 = [*market[:3], "n_assets=7", *market[4:]]
    ran = CliRunner().invoke(
        app, ["run", "--config", str(other), *market7, "--out", str(tmp_path / "runs7")]
    )
    assert ran.exit_code == 0, ran.output
    (run7,) = (tmp_path / "runs7").iterdir()
    fits = json.loads((run7 / "forecasters" / "index.json").read_text())["fits"]
    ar_file = next(row["file"] for row in fits if row["strategy"] == "AR Top-2")
    foreign = (run7 / "forecasters" / ar_file).read_bytes()
    for path in (run / "forecasters").glob("*.zip"):
        path.write_bytes(foreign)
    out = tmp_path / "refused"
    refused = CliRunner().invoke(
        app,
        ["rebalance", "--run", str(run), "--strategy", "model=ar", "--as-of",
         str(weights.index[-1].date()), "--out", str(out)],
    )  # fmt: skip
    assert refused.exit_code == 2, refused.output
    assert "was fitted on another universe of assets (7 assets" in " ".join(refused.output.split())
    assert not out.exists() or not list(out.iterdir())


def test_a_decision_from_a_finished_run_loads_the_end_to_end_allocators_networks(
    tmp_path, monkeypatch
):
    """S3's allocator trains its own network (no forecast stream): a run saves each fit under
    models/, and ``--run`` loads the one in force at the date instead of training."""
    config = tmp_path / "e2e.yaml"
    config.write_text(
        "name: e2e\nn_seeds: 1\nsplit: {walk_forward: {first_test: 2020-06-05, step: 20}}\n"
        "strategies:\n  - kind: equal_weight\n"
        "  - {kind: e2e_drawdown, lam: 10, retrain_every: 8, "
        "params: {lookback: 6, hidden: 4, epochs: 2}}\n"
    )
    market = ["--dataset", "momentum", "--market", "n_assets=5", "--market", "n_periods=160"]
    ran = CliRunner().invoke(
        app, ["run", "--config", str(config), *market, "--out", str(tmp_path / "runs")]
    )
    assert ran.exit_code == 0, ran.output
    (run,) = (tmp_path / "runs").iterdir()
    saved = sorted(p.name for p in (run / "models").iterdir())
    # Two folds (20 weeks, then the 15 left), a fit every 8 decisions: 3 + 2.
    assert [name.split("-")[-4] for name in saved] == ["fold1"] * 3 + ["fold2"] * 2
    (weights_file,) = (run / "weights").glob("e2e-drawdown*.csv")
    weights = pd.read_csv(weights_file, index_col="date", parse_dates=True)

    import dynafolio.strategies.e2e as e2e

    def no_training(*args, **kwargs):
        raise AssertionError("the run's saved network should be loaded, not trained")

    monkeypatch.setattr(e2e.DrawdownLSTMAllocator, "_fit_network", no_training)
    for date in weights.index[[0, 9, 25, -1]]:
        out = tmp_path / f"plan-{date.date()}"
        planned = CliRunner().invoke(
            app,
            ["rebalance", "--run", str(run), "--strategy", "kind=e2e_drawdown",
             "--as-of", str(date.date()), "--out", str(out)],
        )  # fmt: skip
        assert planned.exit_code == 0, planned.output
        (folder,) = out.iterdir()
        target = pd.read_csv(folder / "targets.csv", index_col="asset")["mean"]
        np.testing.assert_allclose(
            target.reindex(weights.columns).to_numpy(), weights.loc[date].to_numpy(), atol=1e-6
        )
