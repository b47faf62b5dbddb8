"""What an experiment run produces, before it is written to disk."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dynafolio import stats
from dynafolio.backtest.result import BacktestResult
from dynafolio.results.forecasts import ForecastEvaluation
from dynafolio.results.steps import AnalysisFailure
from dynafolio.splits import Split

if TYPE_CHECKING:  # annotations only: these modules import torch
    from dynafolio.rl.agent_file import TrainedAgent
    from dynafolio.rl.learnability import LearnabilityResult


def agent_run(seed: int, fold: int | None) -> str:
    """How the report names the run an agent was trained in: ``seed 0`` or ``seed 0, fold 3``."""
    return f"seed {seed}" + ("" if fold is None else f", fold {fold + 1}")


@dataclass(frozen=True)
class ControlComparison:
    """A learned Top-K strategy against the random control of the same K (paired test)."""

    strategy: str
    control: str
    test: stats.SharpeDifference


@dataclass(frozen=True)
class Inference:
    """The run-level statistics behind the findings (see :func:`infer`)."""

    level: float
    n_boot: int
    block_length: float
    n_tried: int
    spa_p_value: float
    survivors: tuple[str, ...]
    best: str
    best_dsr: float
    best_psr: float
    sharpe_variance: float
    controls: tuple[ControlComparison, ...] = ()

    def methods(self, periods: str) -> tuple[str, ...]:
        """Plain sentences on how the numbers were computed (for the report)."""
        return (
            f"Confidence intervals ({self.level:.0%}) of the Sharpe ratio come from a stationary "
            f"block bootstrap of the test {periods} (Politis & Romano 1994; expected block "
            f"length {self.block_length:.1f} {periods} by the Politis–White rule), "
            f"{self.n_boot} replicates. For learned strategies every replicate also redraws "
            "the seeds with replacement, so the interval covers both the luck of the dates "
            "and the luck of the training seed; the same blocks are used for every strategy, "
            "so comparisons stay paired.",
            "The p-value against the benchmark is two-sided, from the same replicates of the "
            "difference of Sharpe ratios (centred under the null of no difference). It tests "
            "one strategy at a time; it is not adjusted for how many strategies were compared.",
            f"'Does any strategy beat the benchmark?' is answered for all {self.n_tried} "
            "strategies at once by Hansen's SPA test and Romano–Wolf StepM (arch.bootstrap), "
            "on returns scaled to the benchmark's volatility so that a higher mean is a higher "
            "Sharpe ratio.",
            "The deflated Sharpe ratio (Bailey & López de Prado 2014) of the best strategy is "
            "the probability that its Sharpe ratio beats what the best of that many strategies "
            "would reach by luck alone, allowing for skewness, fat tails and the sample length.",
        )


@dataclass(frozen=True)
class StrategyRuns:
    """Backtests of one strategy configuration, one per seed (one for deterministic rules)."""

    name: str
    runs: tuple[BacktestResult, ...]
    seeds: tuple[int, ...]
    learned: bool = False
    #: What the strategy is, for analyses to select by (never parse ``name``): ``kind``,
    #: ``k`` and ``model`` where they apply, plus the config entry's own ``tags`` (``family``).
    tags: dict[str, str | int | float] = field(default_factory=dict)

    def has(self, **tags: str | int | float) -> bool:
        """Whether every given tag has the given value."""
        return all(self.tags.get(key) == value for key, value in tags.items())

    @property
    def first(self) -> BacktestResult:
        return self.runs[0]

    def net_return_matrix(self) -> np.ndarray:
        """Net returns of every seed, ``(n_periods, n_seeds)`` — what the paired tests of
        :mod:`dynafolio.stats` take."""
        return np.column_stack([run.net_returns.to_numpy(dtype=float) for run in self.runs])

    def mean_net_returns(self) -> pd.Series:
        """Per-period net return averaged across seeds (for plots; metrics use each seed)."""
        return pd.concat([r.net_returns for r in self.runs], axis=1).mean(axis=1).rename(self.name)

    def mean_weights(self) -> pd.DataFrame:
        """Held weights averaged across seeds, ``(n_periods, n_assets)``."""
        return sum(r.weights for r in self.runs) / len(self.runs)


@dataclass(frozen=True)
class ExperimentResult:
    """Everything a report needs about one experiment run.

    Attributes
    ----------
    experiment : str
        Experiment name (``s1`` ...).
    title : str
        One-line human description.
    strategies : tuple of StrategyRuns
        In display order.
    metrics : pd.DataFrame
        One row per (strategy, seed): index ``strategy``, columns ``seed`` + the keys of
        :func:`dynafolio.metrics.summary`.
    table : pd.DataFrame
        One row per strategy (index), columns ``<metric>`` (mean over seeds) and
        ``<metric>_std`` (standard deviation over seeds, NaN with one seed), ``n_seeds``, and
        ``sharpe_ci_low``, ``sharpe_ci_high``, ``sharpe_p_vs_benchmark`` (bootstrap over
        dates and seeds, :mod:`dynafolio.results.inference`).
    stress : pd.DataFrame
        Metrics over named stress windows that overlap the test period: columns
        ``strategy``, ``window``, ``start``, ``end`` + summary keys (means over seeds).
    prices : pd.DataFrame
        The prepared prices the experiment used (after cleaning and resampling).
    train_dates, test_dates : pd.DatetimeIndex
        The chronological split.
    periods_per_year : int
    asset_classes : dict
        Asset -> class, where known.
    benchmark : str
        Name of the strategy other strategies are compared with (equal weight by default).
    rolling : pd.DataFrame
        Rolling annualised alpha and beta of each strategy's net returns against the index
        asset; columns a MultiIndex ``(strategy, "alpha" | "beta")``. Empty without an index.
    tables : dict of str -> pd.DataFrame
        Experiment-specific analyses (ablations, parameter sweeps, sub-period alphas, final
        weights), keyed by title, shown in the report and written as CSV. Values are already
        as numbers (:func:`dynafolio.results.tables.analysis_table`; the report formats
        them); ``attrs["caption"]`` may hold one explanatory sentence.
    agents : dict of (str, int, int or None) -> TrainedAgent
        Trained RL agents by (strategy, seed, walk-forward fold or None), saved with the run
        so they can be reloaded (``agent_path``) and evaluated again.
    forecaster_files : dict of str -> bytes
        Every forecaster the run fitted, as a forecaster file (:mod:`dynafolio.forecast.
        state`; JSON header + safetensors), by file name; written under ``forecasters/``.
    model_files : dict of (str, int, int or None, str) -> bytes
        Networks strategies trained themselves (the end-to-end allocator), as model files by
        (strategy, seed, fold or None, fit date); written under ``models/``.
    forecaster_index : tuple of dict
        Which strategy, seed, fold (None without walk-forward) and stream used which file
        from which refit date on (``forecasters/index.json``).
    folds : tuple of Split
        The walk-forward folds (each block's training and test rows); empty for a single
        chronological split.
    groups : dict of str -> tuple of str
        Strategy names compared side by side in per-group charts (e.g. one panel per K).
    findings : tuple of str
        Plain-language statements for the report (who beats the benchmark, who does not).
    notes : tuple of str
        Caveats: fallbacks used, assets missing, windows not covered, source discrepancies.
    failures : tuple of AnalysisFailure
        Analysis steps that raised (:mod:`dynafolio.results.steps`); what they would have
        added is missing (without inference, ``table`` has no interval or p-value columns
        and there are no findings), the backtests are complete.
    """

    experiment: str
    title: str
    strategies: tuple[StrategyRuns, ...]
    metrics: pd.DataFrame
    table: pd.DataFrame
    stress: pd.DataFrame
    prices: pd.DataFrame
    train_dates: pd.DatetimeIndex
    test_dates: pd.DatetimeIndex
    periods_per_year: int
    asset_classes: dict[str, str] = field(default_factory=dict)
    benchmark: str = "Equal weight"
    rolling: pd.DataFrame = field(default_factory=pd.DataFrame)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    agents: dict[tuple[str, int, int | None], TrainedAgent] = field(default_factory=dict)
    forecaster_files: dict[str, bytes] = field(default_factory=dict)
    forecaster_index: tuple[dict, ...] = ()
    model_files: dict[tuple[str, int, int | None, str], bytes] = field(default_factory=dict)
    folds: tuple[Split, ...] = ()
    findings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: Run-level statistics: the multiple-testing result, the deflated Sharpe ratio of the
    #: best strategy, the methods (None when the inference step failed).
    inference: Inference | None = None
    #: Strategy name -> the known-answer check of its learner
    #: (:class:`dynafolio.rl.learnability.LearnabilityResult`), for the PPO allocators.
    learnability: dict[str, LearnabilityResult] = field(default_factory=dict)
    #: The forecasters' out-of-sample skill against the baselines
    #: (:mod:`dynafolio.results.forecasts`); None when no strategy forecasts.
    forecasts: ForecastEvaluation | None = None
    failures: tuple[AnalysisFailure, ...] = ()

    @property
    def confidence_level(self) -> float:
        return 0.95 if self.inference is None else self.inference.level

    @staticmethod
    def agent_label(seed: int, fold: int | None) -> str:
        """How an agent of ``agents`` is named in files and the report: ``seed0-fold3``."""
        return f"seed{seed}" + ("" if fold is None else f"-fold{fold + 1}")

    @staticmethod
    def model_file(stem: str, seed: int, fold: int | None, fit_date: str) -> str:
        """The file name of a strategy's own model under ``models/``."""
        return f"{stem}-{ExperimentResult.agent_label(seed, fold)}-{fit_date}.zip"

    def select(self, **tags: str | int | float) -> list[StrategyRuns]:
        """The strategies whose tags match, in display order (``select(family="hybrid")``)."""
        return [runs for runs in self.strategies if runs.has(**tags)]

    def metric_table(self, strategies: list[str], metrics: list[str]) -> pd.DataFrame:
        """Rows of :attr:`table` for ``strategies`` with ``metrics``, their ``_std`` and
        ``n_seeds`` — the shape the report formats as ``mean ± std``."""
        stds = [f"{m}_std" for m in metrics if f"{m}_std" in self.table.columns]
        return self.table.loc[strategies, [*metrics, *stds, "n_seeds"]].copy()
