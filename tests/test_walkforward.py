"""Walk-forward runs: folds from the config, blocks chained into one honest record, fold
tables, shared training-period streams, and the same result whatever executes it."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import TINY_LSTM, TINY_PPO, make_prices
from dynafolio.backtest import ProportionalCost, chain_backtests, run_backtest
from dynafolio.errors import ConfigError, DataError
from dynafolio.experiments.config import SplitConfig, validate_config
from dynafolio.experiments.plan import PreparedData
from dynafolio.experiments.tasks import RunContext, build_tasks
from dynafolio.parallel import ExecutorSettings
from dynafolio.strategies import EqualWeightStrategy
from dynafolio.strategies.classical import BuyAndHoldStrategy
from dynafolio.studies import run_experiment

INDEX = pd.date_range("2019-01-04", periods=100, freq="W-FRI", name="date")


def test_expanding_folds_start_at_first_test_and_cover_the_rest_in_blocks():
    split = SplitConfig(walk_forward={"first_test": INDEX[60].date(), "step": 15})
    folds = split.folds(INDEX)
    assert [f.test.start for f in folds] == [60, 75, 90]
    assert folds[-1].test.stop == 100
    assert all(f.train == slice(0, f.test.start) for f in folds)


def test_a_stub_of_a_last_block_joins_the_block_before_it():
    split = SplitConfig(walk_forward={"first_test": INDEX[64].date(), "step": 15})
    folds = split.folds(INDEX)
    assert [(f.test.start, f.test.stop) for f in folds] == [(64, 79), (79, 100)]
    assert folds[-1].train == slice(0, 79)


def test_rolling_folds_fit_on_a_fixed_window():
    split = SplitConfig(
        walk_forward={
            "first_test": INDEX[60].date(),
            "step": 20,
            "mode": "rolling",
            "train_window": 40,
        }  # fmt: skip
    )
    folds = split.folds(INDEX)
    assert [(f.train.start, f.train.stop) for f in folds] == [(20, 60), (40, 80)]


@pytest.mark.parametrize(
    ("split", "backtest", "message"),
    [
        ({"walk_forward": {"first_test": "2020-01-03"}, "test_start": "2020-01-03"}, {},
         "not both"),
        ({"walk_forward": {"first_test": "2020-01-03", "mode": "rolling"}}, {}, "train_window"),
        ({"walk_forward": {"first_test": "2020-01-03", "step": 0}}, {}, "step"),
        ({"walk_forward": {"first_test": "2020-01-03", "step": 26}}, {"rebalance_every": 4},
         "multiple of backtest.rebalance_every"),
    ],
)  # fmt: skip
def test_bad_walk_forward_settings_name_the_key(split, backtest, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(
            {
                "name": "x",
                "split": split,
                "backtest": backtest,
                "strategies": [{"kind": "equal_weight"}],
            }
        )


def test_a_rolling_window_longer_than_the_history_is_explained():
    split = SplitConfig(
        walk_forward={"first_test": INDEX[30].date(), "mode": "rolling", "train_window": 50}
    )
    with pytest.raises(DataError, match="train_window=50 is longer than the 30 periods"):
        split.folds(INDEX)


def test_a_first_test_date_outside_the_data_is_explained():
    split = SplitConfig(walk_forward={"first_test": "2030-01-04"})
    with pytest.raises(DataError, match="walk_forward.first_test"):
        split.folds(INDEX)


def _chain(strategy_class, prices, starts, **kwargs):
    cost = ProportionalCost(0.01)
    bounds = [*starts, None]
    parts = []
    for begin, end in zip(bounds[:-1], bounds[1:], strict=True):
        last = None if end is None else prices.index[prices.index.get_loc(end) - 1]
        parts.append(run_backtest(strategy_class(**kwargs), prices, begin, last, cost_model=cost))
    return parts, cost


def test_chained_blocks_of_a_stateless_rule_equal_one_backtest():
    """Equal weight decides the same whether refit or not, so chaining its blocks must give
    exactly the single backtest: the first trade of a block trades from drifted holdings."""
    prices = make_prices(n_periods=80, n_assets=4, late=0)
    starts = [prices.index[40], prices.index[55], prices.index[70]]
    parts, cost = _chain(EqualWeightStrategy, prices, starts)
    chained = chain_backtests(parts, prices, cost)
    whole = run_backtest(EqualWeightStrategy(), prices, starts[0], cost_model=cost)
    pd.testing.assert_frame_equal(chained.ledger, whole.ledger)
    pd.testing.assert_frame_equal(chained.weights, whole.weights)
    # A block alone buys in from cash; in the record it only trims the drift.
    second = prices.index[54]
    assert parts[1].ledger["turnover"].iloc[0] == pytest.approx(1.0)
    assert chained.ledger["turnover"].loc[prices.index[55]] < 0.2
    assert chained.weights.index[0] == prices.index[39] and second in chained.weights.index


def test_buy_and_hold_trades_once_over_the_whole_record():
    prices = make_prices(n_periods=80, n_assets=3, late=0)
    starts = [prices.index[40], prices.index[60]]
    parts, cost = _chain(BuyAndHoldStrategy, prices, starts, asset="A1")
    chained = chain_backtests(parts, prices, cost, rebalances=False)
    assert int(chained.rebalanced.sum()) == 1
    assert (chained.ledger["turnover"].iloc[1:] == 0).all()


def test_blocks_with_a_hole_between_them_are_refused():
    prices = make_prices(n_periods=80, n_assets=3, late=0)
    cost = ProportionalCost(0.0)
    first = run_backtest(EqualWeightStrategy(), prices, prices.index[40], prices.index[49])
    later = run_backtest(EqualWeightStrategy(), prices, prices.index[55], cost_model=cost)
    with pytest.raises(ValueError, match="follow each other"):
        chain_backtests([first, later], prices, cost)


STRATEGIES = [
    {"kind": "equal_weight"},
    {"kind": "hrp", "estimation": "static", "window": None, "min_periods": 10},
    {
        "kind": "forecast_topk",
        "name": "LSTM-only Top-2",
        "k": 2,
        "retrain_every": 14,
        "forecaster": {"model": "univariate_lstm", "params": TINY_LSTM},
    },
    {
        "kind": "ppo_topk",
        "name": "Hybrid Top-2",
        "k": 2,
        "lookback": 4,
        "ppo": TINY_PPO,
        "score_initial_window": 40,
        "score_refit_every": 14,
        "forecaster": {"model": "univariate_lstm", "params": TINY_LSTM},
    },
    {"kind": "random_topk", "name": "Random Top-2", "k": 2},
]


def _setup(split, strategies=STRATEGIES, n_seeds=1):
    prices = make_prices(n_periods=140, n_assets=4, late=20)
    config = validate_config(
        {"name": "wf", "split": split, "strategies": strategies, "n_seeds": n_seeds}
    )
    return config, PreparedData(prices, "synthetic", "0" * 64, {})


WALK = {"walk_forward": {"first_test": "2020-12-04", "step": 14}}


@pytest.fixture(scope="module")
def walk():
    config, prepared = _setup(WALK)
    return run_experiment(config, prepared=prepared)


def test_a_walk_forward_run_scores_one_record_and_tables_each_fold(walk):
    assert len(walk.folds) == 3
    assert walk.test_dates[0] == pd.Timestamp("2020-12-04")
    assert walk.test_dates[-1] == walk.prices.index[-1]
    for runs in walk.strategies:
        assert runs.first.ledger.index.equals(walk.test_dates)
    folds = walk.tables["Walk-forward folds"]
    assert len(folds) == 3
    by_fold = walk.tables["Sharpe ratio by fold"]
    assert list(by_fold.index) == [r.name for r in walk.strategies]
    ranks = walk.tables["Ranking of the learned strategies by fold"]
    assert set(ranks.index) == {"LSTM-only Top-2", "Hybrid Top-2", "Random Top-2"}
    # One agent per fold, each trained only on data before its block.
    agents = {key: a for key, a in walk.agents.items() if key[0] == "Hybrid Top-2"}
    assert sorted(fold for _, _, fold in agents) == [0, 1, 2]
    for (_, _, fold), agent in agents.items():
        opening = walk.folds[fold].index[walk.folds[fold].test.start - 1]
        assert pd.Timestamp(agent.validation_period[1]) <= opening


def test_the_random_control_draws_afresh_in_every_block(walk):
    control = next(r for r in walk.strategies if r.name == "Random Top-2").first.weights
    openings = [fold.index[fold.test.start - 1] for fold in walk.folds]
    seconds = [fold.index[fold.test.start] for fold in walk.folds]
    rows = [tuple(control.loc[d].round(12)) for d in openings + seconds]
    assert len(set(rows)) > 2  # not the same few draws repeated block after block


def test_the_hybrid_training_streams_of_all_folds_are_one_stream():
    config, prepared = _setup(WALK)
    context = RunContext.build(config, prepared)
    tasks = build_tasks(context)
    streams = [t for t in tasks if t.kind == "stream"]
    # One test-period piece per fold (LSTM-only and the hybrid share it; one refit per
    # block), and the training-period pieces of the last fold only: every earlier fold's
    # training stream is the beginning of the last one's.
    last = context.streams(3, context.plan[3].build(0), 2)["train"].segments()
    train = [t for t in streams if t.stream == "train"]
    computed = [
        context.streams(t.entry, context.plan[t.entry].build(t.seed), t.fold)["train"]
        .segments()[t.piece]
        .rows
        for t in train
    ]
    assert computed == [piece.rows for piece in last] and len(last) > 3
    assert sum(t.stream == "test" for t in streams) == 3
    hybrid = next(t for t in tasks if t.label.startswith("Hybrid Top-2 (seed 0, fold 1/3)"))
    assert len(hybrid.deps) == 1 + sum(r <= 99 for seg in last for r in seg.rows[:1])


def test_the_last_fold_equals_a_single_split_starting_there(walk):
    """Sharing one training-period stream between folds changes nothing: the last fold's
    decisions are those of a plain run whose test period is that fold (for the rules whose
    decisions do not read their own holdings; a PPO block starts from the previous block's,
    see the next test)."""
    start = walk.folds[-1].test_dates[0]
    stateless = [s for s in STRATEGIES if s["kind"] != "ppo_topk"]
    config, prepared = _setup({"train_fraction": None, "test_start": str(start.date())}, stateless)
    alone = run_experiment(config, prepared=prepared)
    kept = [runs for runs in walk.strategies if runs.name in {r.name for r in alone.strategies}]
    assert len(kept) == len(stateless)
    for runs, single in zip(kept, alone.strategies, strict=True):
        # Every row trades (weekly rebalancing), so the held weights are the decisions.
        decided = runs.first.weights.loc[single.first.weights.index]
        pd.testing.assert_frame_equal(decided, single.first.weights, obj=runs.name)


def test_a_ppo_block_starts_from_the_holdings_the_previous_block_left(monkeypatch):
    """At a block's first decision the agent's state holds what the joined record trades
    from (the previous block's holdings, drifted), not cash; a stateless rule's blocks do
    not wait for each other."""
    from dynafolio.strategies.rl import PPOAllocatorStrategy

    config, prepared = _setup(WALK)
    tasks = {t.id: t for t in build_tasks(RunContext.build(config, prepared))}
    assert "backtest-3-0-0" in tasks["backtest-3-0-1"].deps
    assert "backtest-3-0-1" in tasks["backtest-3-0-2"].deps
    assert not [d for d in tasks["backtest-1-0-1"].deps if d.startswith("backtest")]
    seen: dict[pd.Timestamp, pd.Series] = {}
    weights = PPOAllocatorStrategy.weights

    def spy(self, history):
        seen[history.date] = pd.Series(self._drifted(history), index=history.assets)
        return weights(self, history)

    monkeypatch.setattr(PPOAllocatorStrategy, "weights", spy)
    result = run_experiment(config, prepared=prepared)
    record = next(r for r in result.strategies if r.name == "Hybrid Top-2").first
    # A block's opening decision is at the close of the date before its first return.
    openings = [fold.index[fold.test.start - 1] for fold in result.folds]
    assert (seen[openings[0]] == 0).all()  # the first block starts in cash, as the record
    for opening in openings[1:]:
        held = record.drifted_weights.loc[opening]  # the period ending there, drifted
        assert held.sum() == pytest.approx(1.0)
        pd.testing.assert_series_equal(seen[opening], held, check_names=False, atol=1e-12)


def test_local_workers_give_the_serial_walk_forward_exactly(walk):
    config, prepared = _setup(WALK)
    local = run_experiment(
        config, prepared=prepared, executor=ExecutorSettings(kind="local", jobs=2)
    )
    assert local.table.to_csv() == walk.table.to_csv()
    for a, b in zip(walk.strategies, local.strategies, strict=True):
        pd.testing.assert_frame_equal(a.first.ledger, b.first.ledger)


def test_s2_style_refits_inside_a_strategy_equal_a_rolling_walk_forward_split():
    """S2's 504/63 walk-forward, written two ways: refits inside the strategy on a single
    split, or a rolling ``split.walk_forward`` whose every block refits once — same weights.
    (A rule that also estimates on a window longer than the training window would differ: a
    rolling fold sees only its window and its block so far.)"""
    rule = {
        "kind": "forecast_signal",
        "allocation": "clip",
        "forecaster": {
            "model": "stacked_lstm",
            "params": {"lookback": 6, "units": [4], "epochs": 1},
        },  # fmt: skip
    }
    strategies = [{"kind": "equal_weight"}, {"kind": "hrp", "window": 20, "min_periods": 10}]
    first = "2021-04-02"
    inside, _ = _setup(
        {"train_fraction": None, "test_start": first},
        [*strategies, {**rule, "retrain_every": 9, "train_window": 60}],
    )
    split, prepared = _setup(
        {"walk_forward": {"first_test": first, "step": 9, "mode": "rolling", "train_window": 60}},
        [*strategies, rule],
    )
    a = run_experiment(inside, prepared=prepared)
    b = run_experiment(split, prepared=prepared)
    assert len(b.folds) > 2
    for x, y in zip(a.strategies, b.strategies, strict=True):
        pd.testing.assert_frame_equal(x.first.weights, y.first.weights, obj=x.name)
        pd.testing.assert_frame_equal(x.first.ledger, y.first.ledger, obj=x.name)


def test_notes_of_every_block_are_said_once_and_others_name_their_block():
    from dynafolio.backtest.result import BacktestResult

    prices = make_prices(n_periods=80, n_assets=3, late=0)
    starts = [prices.index[40], prices.index[60]]
    parts, cost = _chain(EqualWeightStrategy, prices, starts)
    noted = [
        BacktestResult(**{**vars(part), "notes": ("always", f"{k} fallbacks")})
        for k, part in enumerate(parts)
    ]
    notes = chain_backtests(noted, prices, cost).notes
    assert notes[0] == "always" and len(notes) == 3
    assert notes[1].startswith(f"block 1 (from {prices.index[39].date()}): 0 fallbacks")


def test_the_s1_study_cost_replay_at_the_run_cost_is_the_main_table():
    """Replaying the decisions through the engine at the run's own cost gives back the run's
    Sharpe ratios, gaps and late listings included (the replay uses the engine's returns)."""
    from dynafolio.studies.s1_study import _cost_stress

    prices = make_prices(n_periods=140, n_assets=4, late=20)
    prices.iloc[112:118, 1] = float("nan")  # a halt inside the test period
    config = validate_config(
        {
            "name": "cost",
            "split": {"train_fraction": None, "test_start": str(prices.index[100].date())},
            "backtest": {"transaction_cost": 0.001},
            # Buy and hold keeps its position through the halt and books the move at resume.
            "strategies": [
                {"kind": "equal_weight"},
                {"kind": "buy_and_hold", "asset": "A1"},
                {"kind": "random_topk", "k": 2},
            ],
            "n_seeds": 1,
        }
    )
    result = run_experiment(config, prepared=PreparedData(prices, "synthetic", "0" * 64, {}))
    table = _cost_stress(result)
    for name in table.index:
        assert table.loc[name, "tc = 0.001"] == pytest.approx(result.table.loc[name, "sharpe"])
