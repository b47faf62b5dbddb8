"""Known-answer controls: does each S1 learner learn what it is supposed to learn?

Every S1 learner family — LSTM-only, PPO-only, the hybrid, with each PPO policy the project
ships (the per-asset policy and the source's MLP) — runs on each known-answer market
(:mod:`dynafolio.data.markets`) of S1's shape (20 assets, K = 5, 365 weekly prices, 70/30
split, lookback 30, 10 bp costs) over several seeds, next to:

* the oracle: the same Top-K rule on the market's best forecast (``forecast_topk`` with the
  ``oracle`` forecaster);
* its random control (``random_topk``, also the run's benchmark, so every p-value in the main
  table is the paired test against chance);
* equal weight; and the least-squares AR(1) forecaster through the same rule, the linear bar
  the LSTM must clear.

On ``foresight`` the hybrids read the oracle's scores (the true next return): the ceiling of
an allocator that reads forecasts. Elsewhere they read the LSTM's forecasts, as in S1.

The verdict rule (:func:`verdict`) is written in the table's caption and the README.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd

from dynafolio import stats
from dynafolio.experiments.config import ExperimentConfig, validate_config
from dynafolio.experiments.runner import AnalysisContext, run_experiments
from dynafolio.results.inference import LEVEL
from dynafolio.results.result import ExperimentResult
from dynafolio.results.tables import analysis_table

NAME = "controls"
TITLE = (
    "Known-answer controls — every S1 learner on markets whose best policy is known, against "
    "the oracle, its random control and equal weight"
)

K = 5
#: Paired p-value against the random control below which a learner "learns".
ALPHA = 0.01
#: Share of the oracle's Sharpe ratio a learner must reach on its ceiling market.
CEILING_SHARE = 0.5
#: φ of the strong momentum market (the ceiling test of learners that read only returns).
STRONG_PHI = 0.5

#: (label, kind, market settings beside the run's own): the markets after the main one.
#: The main run is ``momentum`` with the config's φ (0.2 by default).
OTHER_MARKETS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("noise", "noise", {}),
    ("strong momentum", "momentum", {"phi": STRONG_PHI}),
    ("foresight", "foresight", {}),
    ("static edge", "static_edge", {}),
)

_LSTM = {"model": "univariate_lstm", "params": {}}
_POLICIES = (("per_asset", ""), ("mlp", " (source MLP)"))


def _strategies(foresight: bool) -> list[dict[str, Any]]:
    scores = {"model": "oracle", "params": {}} if foresight else _LSTM
    entries: list[dict[str, Any]] = [
        {"kind": "equal_weight"},
        {
            "kind": "forecast_topk",
            "name": f"Oracle Top-{K}",
            "tags": {"family": "Oracle", "role": "oracle"},
            "k": K,
            "forecaster": {"model": "oracle", "params": {}},
        },
        {
            "kind": "random_topk",
            "name": f"Random Top-{K}",
            "tags": {"family": "Random", "role": "control"},
            "k": K,
        },
        {
            "kind": "forecast_topk",
            "name": f"AR(1)-only Top-{K}",
            "tags": {"family": "AR-only", "reads": "returns"},
            "k": K,
            "retrain_every": 26,
            "forecaster": {"model": "ar", "params": {"p": 1}},
        },
        {
            "kind": "forecast_topk",
            "name": f"LSTM-only Top-{K}",
            "tags": {"family": "LSTM-only", "reads": "returns"},
            "k": K,
            "retrain_every": 26,
            "forecaster": copy.deepcopy(_LSTM),
        },
    ]
    # PPO-only (reads returns) and the hybrid (reads forecasts too), with each policy.
    for family, reads, hybrid in (("PPO-only", "returns", False), ("Hybrid", "forecasts", True)):
        for policy, label in _POLICIES:
            entry = {
                "kind": "ppo_topk",
                "name": f"{family} Top-{K}{label}",
                "tags": {"family": family, "policy": policy, "reads": reads},
                "k": K,
                "ppo": {"policy": policy},
            }
            if hybrid:
                entry.update(forecaster=copy.deepcopy(scores), score_refit_every=26)
            entries.append(entry)
    return entries


def default_config() -> dict[str, Any]:
    """The main run: ``momentum`` (φ 0.2) of S1's shape; :func:`analyse` runs the others."""
    return {
        "name": NAME,
        "analyses": NAME,
        "title": TITLE,
        "data": {"dataset": "momentum", "market": {"n_assets": 20, "n_periods": 365, "phi": 0.2}},
        "split": {"train_fraction": 0.7},
        "strategies": _strategies(foresight=False),
        "benchmark": {"kind": "random_topk", "k": K},
        "index_asset": "A01",
        "plot_groups": {},
        "stress_windows": {},
    }


def quick(settings: dict[str, Any]) -> dict[str, Any]:
    """``--quick``: one seed and 10 LSTM epochs; the PPO budget stays S1's (a learner check
    on a smaller budget would test another learner)."""
    settings = copy.deepcopy(settings)
    for entry in settings["strategies"]:
        if (entry.get("forecaster") or {}).get("model") == "univariate_lstm":
            entry["forecaster"]["params"] = {**entry["forecaster"]["params"], "epochs": 10}
    return {**settings, "n_seeds": 1}


def market_config(
    config: ExperimentConfig, label: str, kind: str, change: dict
) -> ExperimentConfig:
    """The controls' strategies on another known-answer market of ``config``'s shape, with
    its LSTM and PPO settings (the hybrids read the oracle's scores on ``foresight``)."""
    settings = config.model_dump(mode="json")
    settings["data"] = {**settings["data"], "dataset": kind}
    settings["data"]["market"] = {**settings["data"]["market"], **change}
    strategies = _strategies(foresight=kind == "foresight")
    lstm_params = _lstm_params(config)
    for entry in strategies:
        if (entry.get("forecaster") or {}).get("model") == "univariate_lstm":
            entry["forecaster"]["params"] = dict(lstm_params)
    settings.update(
        strategies=_keep_user_ppo(strategies, config),
        name=f"{config.name} ({label})",
        analyses=None,
    )
    return validate_config(settings, f"controls market {label}")


def _lstm_params(config: ExperimentConfig) -> dict[str, Any]:
    for spec in config.strategies:
        forecaster = getattr(spec, "forecaster", None)
        if forecaster is not None and forecaster.model == "univariate_lstm":
            return forecaster.params.model_dump()
    return {}


def _keep_user_ppo(strategies: list[dict], config: ExperimentConfig) -> list[dict]:
    """The main run's PPO settings (a user's budget, say) carried to every market."""
    ppo = {
        spec.name: spec.ppo.model_dump(mode="json")
        for spec in config.strategies
        if spec.kind == "ppo_topk" and spec.name
    }
    for entry in strategies:
        if entry["kind"] == "ppo_topk" and entry["name"] in ppo:
            entry["ppo"] = ppo[entry["name"]]
    return strategies


def has_edge(market: str, reads: str) -> bool:
    """Whether ``market`` holds an edge a learner reading ``reads`` can find: none on noise,
    and on foresight only in the forecasts (its returns are noise)."""
    return market != "noise" and not (market == "foresight" and reads != "forecasts")


def verdict(market: str, reads: str, share: float, difference: float, p: float) -> str:
    """The verdict of one learner on one market (the rule of the table caption)."""
    beats = difference > 0 and p < ALPHA
    if not has_edge(market, reads):
        return "false edge" if beats else "no edge to find (right)"
    ceiling = (market == "foresight" and reads == "forecasts") or (
        market == "strong momentum" and reads == "returns"
    )
    if ceiling and not share >= CEILING_SHARE:
        return "does not learn"
    return "learns" if beats else "does not learn"


def controls_table(markets: list[tuple[str, ExperimentResult]]) -> pd.DataFrame:
    """One row per (market, strategy): Sharpe, share of the oracle, the paired test against
    the random control, and the verdict for learners."""
    rows = {}
    for market, result in markets:
        table = result.table
        oracle = float(table.loc[result.select(role="oracle")[0].name, "sharpe"])
        random_name = result.select(role="control")[0].name
        tests = {
            c.strategy: c.test for c in (result.inference.controls if result.inference else ())
        }
        for runs in result.strategies:
            row = table.loc[runs.name]
            sharpe = float(row["sharpe"])
            entry = {
                "Sharpe": sharpe,
                "Sharpe sd": float(row.get("sharpe_std", np.nan)),
                "oracle Sharpe": oracle,
                "share of oracle": sharpe / oracle if oracle > 0 and market != "noise" else np.nan,
                "random Sharpe": float(table.loc[random_name, "sharpe"]),
                "Δ vs random": np.nan,
                "Δ low": np.nan,
                "Δ high": np.nan,
                "p vs random": np.nan,
                "verdict": "reference",
            }
            test = tests.get(runs.name)
            reads = runs.tags.get("reads")
            if test is not None and runs.tags.get("role") != "oracle":
                entry.update({
                    "Δ vs random": test.difference,
                    "Δ low": test.ci_low,
                    "Δ high": test.ci_high,
                    "p vs random": test.p_value,
                })  # fmt: skip
                if reads is not None:
                    share = sharpe / oracle if oracle > 0 else float("nan")
                    entry["verdict"] = verdict(market, str(reads), share, test.difference,
                                               test.p_value)  # fmt: skip
            rows[(market, runs.name)] = entry
    caption = (
        f"Every learner against the oracle (the Top-{K} rule on the market's best forecast), "
        f"its random control (paired test over dates and seeds) and equal weight; Sharpe mean ± "
        f"sd over seeds, net of costs. Verdict: a learner LEARNS a market with an edge when it "
        f"beats its random control (higher Sharpe, paired p < {ALPHA}) and, on its ceiling "
        f"market — foresight for learners that read forecasts (the hybrids), strong momentum "
        f"(φ = {STRONG_PHI}) for learners that read only returns — also reaches "
        f"{CEILING_SHARE:.0%} of the oracle's Sharpe ratio. On noise nothing can be learnt, "
        "and on foresight nothing from returns alone (its edge is in the forecasts): a "
        f"learner that beats chance there at p < {ALPHA} shows a false edge."
    )
    return analysis_table(
        rows,
        index_name=("market", "strategy"),
        caption=caption,
        formats={
            "share of oracle": "percent",
            "Δ vs random": "signed",
            "Δ low": "signed",
            "Δ high": "signed",
            "p vs random": "p",
        },
        spreads={"Sharpe": "Sharpe sd"},
        intervals={"95% CI of Δ": ("Δ low", "Δ high")},
    )


def pair_table(
    markets: list[tuple[str, ExperimentResult]], pairs: list[tuple[dict, dict]], caption: str
) -> pd.DataFrame:
    """Paired Sharpe differences (over dates and seeds) between tagged strategies per market."""
    rows = {}
    for market, result in markets:
        for a_tags, b_tags in pairs:
            a, b = result.select(**a_tags), result.select(**b_tags)
            if not a or not b:
                continue
            a, b = a[0], b[0]
            test = stats.sharpe_difference_test(
                a.net_return_matrix(), b.net_return_matrix(), result.periods_per_year, level=LEVEL
            )
            sa = float(result.table.loc[a.name, "sharpe"])
            sb = float(result.table.loc[b.name, "sharpe"])
            rows[(market, f"{a.name} − {b.name}")] = {
                "first Sharpe": sa,
                "second Sharpe": sb,
                "ratio": sa / sb if sb > 0 else np.nan,
                "Δ Sharpe": test.difference,
                "Δ low": test.ci_low,
                "Δ high": test.ci_high,
                "p": test.p_value,
            }
    return analysis_table(
        rows,
        index_name=("market", "comparison"),
        caption=caption,
        formats={
            "ratio": "percent",
            "Δ Sharpe": "signed",
            "Δ low": "signed",
            "Δ high": "signed",
            "p": "p",
        },
        intervals={"95% CI of Δ": ("Δ low", "Δ high")},
    )


def analyse(result: ExperimentResult, context: AnalysisContext) -> dict[str, pd.DataFrame]:
    """Run the other markets (as one task graph) and tabulate every market's controls."""

    config = context.config
    others = [market_config(config, *market) for market in OTHER_MARKETS]
    results = run_experiments(others, progress=context.progress, executor=context.executor)
    markets = [("momentum", result)]
    markets += [(label, r) for (label, *_), r in zip(OTHER_MARKETS, results, strict=True)]
    return {
        f"Known-answer controls (K = {K})": controls_table(markets),
        "The hybrid against LSTM-only (the same forecasts in its state)": pair_table(
            markets,
            [({"family": "Hybrid", "policy": "per_asset"}, {"family": "LSTM-only"})],
            "Paired Sharpe difference over dates and seeds; the hybrid reads the LSTM's "
            "forecasts (the oracle's on foresight), so it should do at least as well.",
        ),
        "LSTM-only against the least-squares AR(1) rule": pair_table(
            markets,
            [({"family": "LSTM-only"}, {"family": "AR-only"})],
            "The same Top-K rule on the LSTM's and on a least-squares AR(1) fit's forecasts, "
            "refit on the same rows; the LSTM should reach at least 80% of the AR rule's "
            "Sharpe ratio on momentum.",
        ),
    }
