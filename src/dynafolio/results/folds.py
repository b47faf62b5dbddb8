"""Tables of a walk-forward run: its folds, each strategy's Sharpe ratio per fold, and how the
learned strategies' ranking moves from fold to fold.

A walk-forward run (``split.walk_forward``) scores the concatenated out-of-sample record like
any test period; these tables show what the one record hides — whether a strategy's result
comes from one lucky block or holds up block after block.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dynafolio import metrics
from dynafolio.results.result import ExperimentResult
from dynafolio.results.tables import analysis_table


def _span(dates: pd.DatetimeIndex) -> str:
    return f"{dates[0].date()}..{dates[-1].date()}"


def fold_labels(result: ExperimentResult) -> list[str]:
    """``F1 2020-01`` …: the fold number and the month its test block starts."""
    return [f"F{i + 1} {fold.test_dates[0]:%Y-%m}" for i, fold in enumerate(result.folds)]


def fold_sharpes(result: ExperimentResult, risk_free_rate: float | pd.Series = 0.0) -> pd.DataFrame:
    """Annualised Sharpe ratio of each strategy in each fold's test block, averaged over seeds,
    ``(n_strategies, n_folds)``; ``risk_free_rate`` annual."""
    ppy, rf = result.periods_per_year, risk_free_rate
    rows = {}
    for runs in result.strategies:
        row = []
        for fold in result.folds:
            per_seed = [
                metrics.sharpe_ratio(
                    run.net_returns.loc[fold.test_dates].to_numpy(),
                    ppy,
                    metrics.risk_free_on(rf, fold.test_dates),
                )
                for run in runs.runs
            ]
            row.append(float(np.mean(per_seed)))
        rows[runs.name] = row
    return pd.DataFrame.from_dict(rows, orient="index", columns=fold_labels(result))


def fold_tables(
    result: ExperimentResult, risk_free_rate: float | pd.Series = 0.0
) -> dict[str, pd.DataFrame]:
    """The walk-forward tables of ``result`` (none for a single chronological split);
    ``risk_free_rate`` annual, as in the config."""
    if len(result.folds) < 2:
        return {}
    sharpe = fold_sharpes(result, risk_free_rate)
    return {
        "Walk-forward folds": _fold_summary(result, sharpe),
        "Sharpe ratio by fold": _by_fold(result, sharpe),
        "Ranking of the learned strategies by fold": _ranks(result, sharpe),
    }


def _fold_summary(result: ExperimentResult, sharpe: pd.DataFrame) -> pd.DataFrame:
    rows = {}
    benchmark = result.benchmark
    for label, fold in zip(sharpe.columns, result.folds, strict=True):
        column = sharpe[label].dropna()
        best = column.idxmax() if len(column) else "—"
        bench_runs = next(r for r in result.strategies if r.name == benchmark)
        bench_return = float(
            np.mean([(1 + r.net_returns.loc[fold.test_dates]).prod() - 1 for r in bench_runs.runs])
        )
        rows[label] = {
            "models fitted on": _span(fold.train_dates),
            "training periods": len(fold.train_dates),
            "test block": _span(fold.test_dates),
            "test periods": len(fold.test_dates),
            f"{benchmark} return": bench_return,
            f"{benchmark} Sharpe": float(sharpe.loc[benchmark, label]),
            "highest Sharpe": float(column.max()) if len(column) else np.nan,
            "strategy with the highest Sharpe": best,
        }
    return analysis_table(
        rows,
        index_name="fold",
        formats={
            "training periods": "count",
            "test periods": "count",
            f"{benchmark} return": "signed_percent",
        },
        caption=(
            "One row per walk-forward fold: every model, scaler and optimiser is refit on the "
            "data before its test block; the blocks join into the out-of-sample record scored "
            "in the main table. The first trade of a block starts from the holdings the "
            "previous block left, and pays for the change; a PPO agent's state at that first "
            "decision holds those drifted holdings too."
        ),
    )


def _by_fold(result: ExperimentResult, sharpe: pd.DataFrame) -> pd.DataFrame:
    wins = (sharpe.gt(sharpe.loc[result.benchmark], axis=1)).sum(axis=1)
    above = f"blocks above {result.benchmark} (of {sharpe.shape[1]})"
    rows = {
        name: {
            **sharpe.loc[name].to_dict(),
            above: np.nan if name == result.benchmark else int(wins[name]),
        }
        for name in sharpe.index
    }
    return analysis_table(
        rows,
        index_name=sharpe.index.name,
        formats={above: "count"},
        caption=(
            "Annualised Sharpe ratio within each test block (mean over seeds). A block is "
            f"{len(result.folds[0].test_dates)} periods: each number alone is noisy (a Sharpe "
            "ratio over half a year has a standard error near 1.4), so read the pattern, and "
            "the main table for the record as a whole."
        ),
    )


def _ranks(result: ExperimentResult, sharpe: pd.DataFrame) -> pd.DataFrame:
    """Rank (1 = best Sharpe) of each learned strategy and random control among all
    strategies, per fold, with the spread and the rank correlation of consecutive folds."""
    ranks = sharpe.rank(ascending=False, method="min")
    n = sharpe.shape[0]
    chosen = [r.name for r in result.strategies if r.learned or r.tags.get("kind") == "random_topk"]
    if not chosen:
        return pd.DataFrame()
    rows = {
        name: {
            **ranks.loc[name].to_dict(),
            "median rank": float(ranks.loc[name].median()),
            "best rank": float(ranks.loc[name].min()),
            "worst rank": float(ranks.loc[name].max()),
        }
        for name in chosen
    }
    # Does a strategy that ranks high in one block rank high in the next? Spearman correlation
    # of consecutive blocks' ranks over all strategies, averaged.
    consecutive = [
        ranks.iloc[:, i].corr(ranks.iloc[:, i + 1], method="spearman")
        for i in range(ranks.shape[1] - 1)
    ]
    persistence = float(np.nanmean(consecutive)) if consecutive else float("nan")
    return analysis_table(
        rows,
        index_name=ranks.index.name,
        formats={
            **dict.fromkeys(ranks.columns, "count"),
            "best rank": "count",
            "worst rank": "count",
        },
        caption=(
            f"Rank by Sharpe ratio among all {n} strategies in each block (1 = best). The mean "
            f"rank correlation between consecutive blocks is {persistence:+.2f}: near 0, this "
            "block's ranking says little about the next one's."
        ),
    )
