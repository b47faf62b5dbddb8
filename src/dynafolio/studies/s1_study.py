"""S1 study: the further experiments the hybrid LSTM+PPO source names.

* **Ablation** — hybrid vs PPO-only per K: the Sharpe difference, its interval and a paired
  p-value (time and seeds, :func:`dynafolio.stats.sharpe_difference_test`).
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

from dynafolio import metrics, stats
from dynafolio.backtest import ProportionalCost, simulate
from dynafolio.experiments.config import ExperimentConfig, validate_config
from dynafolio.experiments.plan import load_prices
from dynafolio.experiments.runner import AnalysisContext, run_experiment
from dynafolio.history import carried_returns
from dynafolio.results.result import ExperimentResult, StrategyRuns
from dynafolio.results.tables import analysis_table
from dynafolio.studies import s1_hybrid

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
    """S1's Top-K family at ``k``, its PPO rows tagged as the default variant."""
    entries = s1_hybrid.family(k)
    for entry in entries:
        if entry["kind"] == "ppo_topk":
            entry["tags"] = {**entry["tags"], "variant": "default"}
    return entries


#: K of the PPO variants (training budget, policy, reward, sparsity).
VARIANT_K = 10
#: Training budgets of the ladder beside the default 40,960 timesteps.
BUDGETS = (163_840, 655_360)
#: --quick budgets of the same ladder (the default becomes 8,192).
QUICK_BUDGETS = {163_840: 16_384, 655_360: 32_768}


def _variants() -> list[dict[str, Any]]:
    """PPO-only and the hybrid at K = 10, changing one thing at a time from the default."""
    # The longest budget also switches early stopping off (the best validation checkpoint
    # is still kept): does training longer find a better policy at all?
    short, long = (f"{b // 1024}k" for b in BUDGETS)
    changes: list[tuple[str, str, dict[str, Any]]] = [
        (f"{short} steps", f"budget {short}", {"ppo": {"total_timesteps": BUDGETS[0]}}),
        (
            f"{long} steps, no early stop",
            f"budget {long}, no early stop",
            {"ppo": {"total_timesteps": BUDGETS[1], "patience": None}},
        ),
    ]
    changes += [
        ("the source's MLP policy", "source MLP policy", {"ppo": {"policy": "mlp"}}),
        (
            "differential Sharpe reward",
            "differential Sharpe reward",
            {"reward": {"kind": "differential_sharpe"}},
        ),
        ("downside reward", "downside reward", {"reward": {"kind": "downside"}}),
        ("sparsity 0.01, τ 0.02", "sparsity and tau", {"lambda_sparse": 0.01, "tau": 0.02}),
    ]
    entries = []
    for label, variant, change in changes:
        for family, base in (
            ("PPO-only", {}),
            (
                "Hybrid",
                {
                    "score_refit_every": 26,
                    "forecaster": {"model": "univariate_lstm", "params": {}},
                },
            ),
        ):
            name = "PPO-only" if family == "PPO-only" else "Hybrid LSTM+PPO"
            entries.append(
                {
                    "kind": "ppo_topk",
                    "name": f"{name} Top-{VARIANT_K} ({label})",
                    "tags": {"family": family, "variant": variant},
                    "k": VARIANT_K,
                    **base,
                    **copy.deepcopy(change),
                }
            )
    return entries


def default_config() -> dict[str, Any]:
    base = s1_hybrid.default_config()
    strategies = [{"kind": "equal_weight"}, {"kind": "buy_and_hold", "asset": "SPY"}]
    for k in K_SWEEP:
        strategies += _family(k)
    strategies += _variants()
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
    """One seed, small budgets (as ``s1 --quick``); the budget ladder keeps its ratios."""
    budgets = {
        i: entry["ppo"]["total_timesteps"]
        for i, entry in enumerate(settings["strategies"])
        if entry.get("ppo", {}).get("total_timesteps") in QUICK_BUDGETS
    }
    settings = s1_hybrid.quick(settings)
    for i, budget in budgets.items():
        settings["strategies"][i]["ppo"]["total_timesteps"] = QUICK_BUDGETS[budget]
    return settings


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
        f"PPO variants at K = {VARIANT_K}: budget, policy, reward, sparsity": _variant_table(
            result
        ),
        "K sensitivity (Sharpe, 95% CI, p vs benchmark)": _k_sweep(result),
        "Cost stress: the same decisions at higher costs (Sharpe)": _cost_stress(result),
        **crisis_tables(context),
    }


def _one(result: ExperimentResult, **tags) -> StrategyRuns | None:
    found = result.select(**tags)
    return found[0] if found else None


def _ablation(result: ExperimentResult) -> pd.DataFrame:
    rows = {}
    for k in K_SWEEP:
        hybrid = _one(result, family="Hybrid", k=k, variant="default")
        ppo = _one(result, family="PPO-only", k=k, variant="default")
        if hybrid is None or ppo is None:
            continue
        test = stats.sharpe_difference_test(
            hybrid.net_return_matrix(), ppo.net_return_matrix(), result.periods_per_year, seed=k
        )
        rows[k] = {
            "Hybrid Sharpe": float(result.table.loc[hybrid.name, "sharpe"]),
            "PPO-only Sharpe": float(result.table.loc[ppo.name, "sharpe"]),
            "Δ (hybrid − PPO)": test.difference,
            "Δ low": test.ci_low,
            "Δ high": test.ci_high,
            "p-value": test.p_value,
            "different at 5%": "yes" if test.p_value < 0.05 else "no",
        }
    return analysis_table(
        rows,
        index_name="K",
        formats={
            "Δ (hybrid − PPO)": "signed",
            "Δ low": "signed",
            "Δ high": "signed",
            "p-value": "p",
        },  # fmt: skip
        intervals={"95% CI of Δ": ("Δ low", "Δ high")},
        caption=(
            "Paired test of equal Sharpe ratios on the same dates (dynafolio.stats."
            "sharpe_difference_test): a block bootstrap over the test dates that also redraws "
            "each strategy's seeds, so the interval and p-value cover both sources of luck. "
            "Not adjusted for testing several K."
        ),
    )


def _variant_table(result: ExperimentResult) -> pd.DataFrame:
    """Each variant's PPO-only and hybrid against each other and against the random control."""
    control = _one(result, kind="random_topk", k=VARIANT_K)
    variants = dict.fromkeys(
        str(r.tags["variant"]) for r in result.strategies if "variant" in r.tags
    )
    rows = {}
    ppy = result.periods_per_year

    def test(label: str, a: StrategyRuns, b: StrategyRuns) -> dict[str, float]:
        t = stats.sharpe_difference_test(
            a.net_return_matrix(), b.net_return_matrix(), ppy, seed=VARIANT_K
        )
        return {label: t.difference, f"p ({label})": t.p_value}

    for variant in variants:
        ppo = _one(result, family="PPO-only", k=VARIANT_K, variant=variant)
        hybrid = _one(result, family="Hybrid", k=VARIANT_K, variant=variant)
        if ppo is None or hybrid is None:
            continue
        row = {
            "PPO-only Sharpe": float(result.table.loc[ppo.name, "sharpe"]),
            "Hybrid Sharpe": float(result.table.loc[hybrid.name, "sharpe"]),
            **test("hybrid − PPO-only", hybrid, ppo),
        }
        if control is not None:
            row.update(test("PPO-only − random", ppo, control))
            row.update(test("hybrid − random", hybrid, control))
        rows[variant] = row
    differences = ("hybrid − PPO-only", "PPO-only − random", "hybrid − random")
    control_text = (
        f"{control.name}, Sharpe {result.table.loc[control.name, 'sharpe']:.2f}"
        if control
        else "none"
    )
    return analysis_table(
        rows,
        index_name="variant",
        formats={
            **dict.fromkeys(differences, "signed"),
            **dict.fromkeys((f"p ({label})" for label in differences), "p"),
        },
        caption=(
            "One change at a time from the default (40,960 timesteps, per-asset policy, "
            "log-return reward, no sparsity penalty); Sharpe differences with paired p-values "
            f"over dates and seeds. Random control: {control_text}. Not adjusted for the number "
            "of variants."
        ),
    )


def _k_sweep(result: ExperimentResult) -> pd.DataFrame:
    rows = {}
    for family in ("LSTM-only", "PPO-only", "Hybrid", "Random"):
        for k in K_SWEEP:
            tags = {} if family in ("LSTM-only", "Random") else {"variant": "default"}
            runs = _one(result, family=family, k=k, **tags)
            if runs is not None:
                row = result.table.loc[runs.name]
                rows[(family, k)] = {
                    "Sharpe": float(row["sharpe"]),
                    "CI low": float(row["sharpe_ci_low"]),
                    "CI high": float(row["sharpe_ci_high"]),
                    f"p vs {result.benchmark}": float(row["sharpe_p_vs_benchmark"]),
                }
    base = result.table.loc[result.benchmark]
    return analysis_table(
        rows,
        index_name=("family", "K"),
        formats={f"p vs {result.benchmark}": "p"},
        intervals={"95% CI": ("CI low", "CI high")},
        caption=(
            f"Sharpe ratio [95% CI over dates and seeds] and the paired p-value against "
            f"{result.benchmark} (Sharpe {base['sharpe']:.2f}), per family and K."
        ),
    )


def _cost_stress(result: ExperimentResult) -> pd.DataFrame:
    rows = {}
    prices = result.prices
    for runs in result.strategies:
        row = {}
        for tc in COSTS:
            sharpes = []
            for run in runs.runs:
                # The engine's returns (carried over gaps), so tc = 0.001 is the main table.
                forward = carried_returns(prices[run.weights.columns])
                forward = forward.shift(-1).loc[run.weights.index].to_numpy()
                sim = simulate(
                    forward, run.weights.to_numpy(), run.rebalanced.to_numpy(), ProportionalCost(tc)
                )
                sharpes.append(metrics.sharpe_ratio(sim.net, result.periods_per_year))
            row[f"tc = {tc:.3f}"] = float(np.mean(sharpes))
        rows[runs.name] = row
    return analysis_table(
        rows,
        index_name="strategy",
        caption=(
            "Each strategy's target weights replayed through the engine with a higher cost per "
            "unit of turnover; high-turnover policies lose most."
        ),
    )
