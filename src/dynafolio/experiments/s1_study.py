"""S1 study: the further experiments the hybrid LSTM+PPO source names.

* **Ablation** — hybrid vs PPO-only per K, the Sharpe difference and whether it exceeds the
  seed noise (|Δ| > 2 standard errors of the difference of seed means).
* **K sensitivity** — K ∈ {3, 5, 10, 20, 30} for LSTM-only, PPO-only and hybrid.
* **Cost stress** — the same decisions re-costed at tc ∈ {0.001, 0.002, 0.005} (agents are
  trained once at 0.001, as in the source; the weights are replayed through the engine).
* **Crisis windows** — the 2020 COVID crash and the 2022 crypto winter, each evaluated
  out-of-sample by a walk-forward run whose models are trained only on data before the window.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd

from dynafolio import metrics
from dynafolio.backtest import ProportionalCost, simulate
from dynafolio.experiments import s1_hybrid
from dynafolio.experiments.config import ExperimentConfig, validate_config
from dynafolio.experiments.result import AnalysisContext, ExperimentResult, StrategyRuns
from dynafolio.experiments.runner import load_prices, run_experiment

NAME = "s1-study"
TITLE = "S1 study — ablation, K sensitivity, cost stress and crisis windows (out-of-sample)"

K_SWEEP = (3, 5, 10, 20, 30)
COSTS = (0.001, 0.002, 0.005)
CRISES = {
    "2020 COVID crash": ("2020-02-15", "2020-04-30"),
    "2022 crypto winter": ("2022-01-01", "2022-12-30"),
}
CRISIS_K = 10


def _family(k: int) -> list[dict[str, Any]]:
    return [
        {
            "kind": "forecast_topk",
            "name": f"LSTM-only Top-{k}",
            "tags": {"family": "LSTM-only"},
            "k": k,
            "retrain_every": 26,
            "forecaster": {"model": "univariate_lstm", "params": {}},
        },
        {"kind": "ppo_topk", "name": f"PPO-only Top-{k}", "tags": {"family": "PPO-only"}, "k": k},
        {
            "kind": "ppo_topk",
            "name": f"Hybrid LSTM+PPO Top-{k}",
            "tags": {"family": "Hybrid"},
            "k": k,
            "score_refit_every": 26,
            "forecaster": {"model": "univariate_lstm", "params": {}},
        },
    ]


def default_config() -> dict[str, Any]:
    base = s1_hybrid.default_config()
    strategies = [{"kind": "equal_weight"}, {"kind": "buy_and_hold", "asset": "SPY"}]
    for k in K_SWEEP:
        strategies += _family(k)
    return {
        **base,
        "name": NAME,
        "analyses": NAME,
        "title": TITLE,
        "strategies": strategies,
        "plot_groups": {f"K = {k}": tuple(entry["name"] for entry in _family(k)) for k in K_SWEEP},
        "stress_windows": {},
    }


def quick(settings: dict[str, Any]) -> dict[str, Any]:
    """One seed, small budgets (as ``s1 --quick``)."""
    return s1_hybrid.quick(settings)


def crisis_tables(context: AnalysisContext) -> dict[str, pd.DataFrame]:
    """One walk-forward run per crisis window, its models trained only on data before it."""
    tables = {}
    for title, (start, end) in CRISES.items():
        sub = _crisis_config(context.config, start, end)
        crisis = run_experiment(
            sub, prepared=load_prices(sub), progress=context.progress, executor=context.executor
        )
        table = crisis.metric_table(
            list(crisis.table.index), ["total_return", "max_drawdown", "sharpe", "avg_turnover"]
        )
        table.attrs["caption"] = (
            f"Out-of-sample: every model trained only on data up to "
            f"{crisis.train_dates[-1].date()}, evaluated {crisis.test_dates[0].date()}.."
            f"{crisis.test_dates[-1].date()} ({len(crisis.test_dates)} weeks); mean over seeds."
        )
        tables[f"Crisis window: {title}"] = table
    return tables


def _crisis_config(config: ExperimentConfig, start: str, end: str) -> ExperimentConfig:
    settings = config.model_dump(mode="json")
    settings["data"]["end"] = end
    settings["split"] = {"train_fraction": None, "test_start": start}
    strategies = [{"kind": "equal_weight"}, {"kind": "buy_and_hold", "asset": "SPY"}]
    for entry in _family(CRISIS_K):
        entry = copy.deepcopy(entry)
        if entry["kind"] == "ppo_topk":
            # Two years of weekly data before 2020: shorter episodes and forecaster warm-up.
            ppo = {**_ppo_settings(config), "episode_length": 20}
            entry["ppo"] = ppo
            entry["score_initial_window"] = 60
        if entry.get("forecaster"):
            entry["forecaster"]["params"] = _forecaster_params_of(config)
        strategies.append(entry)
    settings.update(
        strategies=strategies,
        plot_groups={},
        stress_windows={},
        name=f"{NAME}-crisis",
        analyses=None,
    )
    return validate_config(settings, "s1-study crisis window")


def _ppo_settings(config: ExperimentConfig) -> dict[str, Any]:
    for spec in config.strategies:
        if spec.kind == "ppo_topk":
            return dict(spec.ppo)
    return {}


def _forecaster_params_of(config: ExperimentConfig) -> dict[str, Any]:
    for spec in config.strategies:
        forecaster = getattr(spec, "forecaster", None)
        if forecaster is not None:
            return dict(forecaster.params)
    return {}


def analyse(result: ExperimentResult, context: AnalysisContext) -> dict[str, pd.DataFrame]:
    return {
        "Ablation: hybrid vs PPO-only": _ablation(result),
        "K sensitivity (Sharpe, mean ± std over seeds)": _k_sweep(result),
        "Cost stress: the same decisions at higher costs (Sharpe)": _cost_stress(result),
        **crisis_tables(context),
    }


def _sharpes(runs: StrategyRuns, ppy: int) -> np.ndarray:
    """Sharpe ratio of each seed of one strategy."""
    return np.array([metrics.sharpe_ratio(run.net_returns, ppy) for run in runs.runs])


def _one(result: ExperimentResult, **tags) -> StrategyRuns | None:
    found = result.select(**tags)
    return found[0] if found else None


def _ablation(result: ExperimentResult) -> pd.DataFrame:
    rows = {}
    for k in K_SWEEP:
        hybrid, ppo = _one(result, family="Hybrid", k=k), _one(result, family="PPO-only", k=k)
        if hybrid is None or ppo is None:
            continue
        a = _sharpes(hybrid, result.periods_per_year)
        b = _sharpes(ppo, result.periods_per_year)
        diff = a.mean() - b.mean()
        se = (
            np.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
            if min(len(a), len(b)) > 1
            else np.nan
        )
        verdict = (
            "n/a (one seed)" if not np.isfinite(se) else ("yes" if abs(diff) > 2 * se else "no")
        )
        rows[f"K = {k}"] = {
            "Hybrid Sharpe": f"{a.mean():.2f}",
            "PPO-only Sharpe": f"{b.mean():.2f}",
            "Δ (hybrid − PPO)": f"{diff:+.2f}",
            "2·SE of Δ": "–" if not np.isfinite(se) else f"{2 * se:.2f}",
            "exceeds seed noise": verdict,
        }
    table = pd.DataFrame(rows).T
    table.attrs["caption"] = (
        "SE from the seed-to-seed spread of each strategy's Sharpe ratio (Welch); with few "
        "seeds this is a coarse check, not a significance test of the Sharpe ratios themselves."
    )
    return table


def _k_sweep(result: ExperimentResult) -> pd.DataFrame:
    table = {}
    for family in ("LSTM-only", "PPO-only", "Hybrid"):
        column = {}
        for k in K_SWEEP:
            runs = _one(result, family=family, k=k)
            if runs is not None:
                row = result.table.loc[runs.name]
                spread = f" ± {row['sharpe_std']:.2f}" if row["n_seeds"] > 1 else ""
                column[f"K = {k}"] = f"{row['sharpe']:.2f}{spread}"
        table[family] = column
    frame = pd.DataFrame(table)
    frame.attrs["caption"] = (
        f"Benchmark {result.benchmark}: Sharpe {result.table.loc[result.benchmark, 'sharpe']:.2f}."
    )
    return frame


def _cost_stress(result: ExperimentResult) -> pd.DataFrame:
    rows = {}
    prices = result.prices
    for runs in result.strategies:
        row = {}
        for tc in COSTS:
            sharpes = []
            for run in runs.runs:
                forward = prices[run.weights.columns].pct_change(fill_method=None)
                forward = forward.shift(-1).loc[run.weights.index].to_numpy()
                sim = simulate(
                    forward, run.weights.to_numpy(), run.rebalanced.to_numpy(), ProportionalCost(tc)
                )
                sharpes.append(metrics.sharpe_ratio(sim.net, result.periods_per_year))
            row[f"tc = {tc:.3f}"] = f"{np.mean(sharpes):.2f}"
        rows[runs.name] = row
    table = pd.DataFrame(rows).T
    table.attrs["caption"] = (
        "Each strategy's target weights replayed through the engine with a higher cost per unit "
        "of turnover; high-turnover policies lose most."
    )
    return table
