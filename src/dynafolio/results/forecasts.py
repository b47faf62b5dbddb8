"""The forecasts of a run judged as forecasts: every forecaster's out-of-sample forecasts
against what happened next, and against simple baselines on the same dates.

A :class:`ForecastRecord` is what one backtest's forecaster predicted; the runner joins a
forecaster's records over walk-forward folds into one :class:`ForecastRun` per forecaster
(one frame per seed), adds the baselines (:mod:`dynafolio.forecast.baselines` and the AR(1))
computed on the same decisions, and :func:`evaluate_forecasts` measures each with
:mod:`dynafolio.stats.forecasts`: IC, rank IC, ICIR, out-of-sample R² against the historical
mean and against zero, the Diebold–Mariano test against the historical mean, hit rate and
the top-minus-bottom spread, per seed, per fold and pooled, with block-bootstrap intervals.

Everything is measured on next-period **log returns**: a price forecaster's forecast ``F``
of ``P_{t+1}`` counts as the log-return forecast ``ln(F / P_t)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dynafolio import stats
from dynafolio.results.tables import analysis_table

__all__ = [
    "BENCHMARK",
    "FORECAST_MEASURES",
    "ForecastEvaluation",
    "ForecastRecord",
    "ForecastRun",
    "evaluate_forecasts",
    "next_log_returns",
]

#: The baseline every forecaster is measured against (out-of-sample R², Diebold–Mariano).
BENCHMARK = "Historical mean"

#: What each column of the forecast table measures (written into ``forecasts.json``).
FORECAST_MEASURES = {
    "IC": "mean over dates of the cross-sectional Pearson correlation of forecast and outcome",
    "ICIR": "mean IC / standard deviation of the per-date IC (per period, as Qlib)",
    "Rank IC": "as IC with Spearman's rank correlation",
    "Rank ICIR": "mean rank IC / its standard deviation",
    "IC positive share": "share of dates with a positive IC",
    "oos_r2_vs_mean": "1 − SSE(forecast)/SSE(historical mean), pooled over cells (Campbell & "
    "Thompson 2008)",
    "oos_r2_vs_zero": "1 − SSE(forecast)/SSE(zero)",
    "dm_statistic": "Diebold–Mariano statistic of the per-date squared error against the "
    "historical mean (HAC variance, Harvey–Leybourne–Newbold correction); negative: the "
    "forecast is the more accurate",
    "dm_p_value": "its two-sided p-value (Student's t, n − 1 degrees of freedom)",
    "hit_rate": "share of cells whose forecast has the outcome's sign",
    "top_bottom_spread": "mean next-period log return of the top k assets by forecast minus "
    "the bottom k, per period",
    "IC_ci_low/high, oos_r2_ci_low/high": "95% intervals from a stationary block bootstrap "
    "over dates that also redraws the seeds",
}


@dataclass(frozen=True)
class ForecastRecord:
    """The out-of-sample forecasts one strategy's forecaster made in one backtest.

    ``stream`` identifies the forecaster's model, parameters (seed aside) and refit schedule:
    records with equal ``stream`` and seed hold the same forecasts.
    """

    stream: str
    label: str
    target: str
    forecasts: pd.DataFrame
    schedule: Any = None  # the RefitSchedule the forecaster followed


@dataclass(frozen=True)
class ForecastRun:
    """One forecaster's out-of-sample record: per seed, its forecasts of the next log return
    on every decision date of the test record (walk-forward folds joined)."""

    name: str
    label: str
    learned: bool
    seeds: tuple[int, ...]
    forecasts: tuple[pd.DataFrame, ...]
    strategies: tuple[str, ...] = ()
    #: Price forecasts at or below zero, which have no log return and are left out.
    unreadable: int = 0


@dataclass(frozen=True)
class ForecastEvaluation:
    """The forecast tables of a run.

    ``table``: one row per forecaster and ``seed`` (``"all"``: the seeds pooled) and ``fold``
    (``"all"``: the whole record), the measures of :func:`dynafolio.stats.forecast_skill`;
    ``ic``: the per-decision IC of each forecaster, seeds averaged, dates × forecaster.
    """

    table: pd.DataFrame
    ic: pd.DataFrame
    findings: tuple[str, ...] = ()
    #: The forecasts measured (learned forecasters and baselines), as log-return forecasts.
    runs: tuple[ForecastRun, ...] = field(default_factory=tuple)

    def pooled(self) -> pd.DataFrame:
        """The rows of the whole record with the seeds pooled, indexed by forecaster."""
        rows = self.table[(self.table["seed"] == "all") & (self.table["fold"] == "all")]
        return rows.set_index("forecaster")

    def tables(self) -> dict[str, pd.DataFrame]:
        """The report's forecast tables: the skill of each forecaster over the whole record
        (seeds pooled), and, for a walk-forward run, its IC fold by fold."""
        pooled = self.pooled()
        rows = {
            name: {
                "IC": row["IC"], "IC low": row["IC_ci_low"], "IC high": row["IC_ci_high"],
                "Rank IC": row["Rank IC"], "ICIR": row["ICIR"], "Rank ICIR": row["Rank ICIR"],
                "IC > 0": row["IC positive share"],
                f"R² vs {BENCHMARK.lower()}": row["oos_r2_vs_mean"],
                "R² low": row["oos_r2_ci_low"], "R² high": row["oos_r2_ci_high"],
                "R² vs zero": row["oos_r2_vs_zero"],
                "DM statistic": row["dm_statistic"], "DM p": row["dm_p_value"],
                "hit rate": row["hit_rate"], "top − bottom": row["top_bottom_spread"],
                "dates": row["n_dates"], "seeds": row["n_seeds"],
            }
            for name, row in pooled.iterrows()
        }  # fmt: skip
        r2 = f"R² vs {BENCHMARK.lower()}"
        skill = analysis_table(
            rows,
            index_name="forecaster",
            formats={
                "IC": "signed3",
                "IC low": "signed3",
                "IC high": "signed3",
                "Rank IC": "signed3",
                "IC > 0": "percent",
                r2: "signed4",
                "R² low": "signed4",
                "R² high": "signed4",
                "R² vs zero": "signed4",
                "DM statistic": "signed",
                "DM p": "p",
                "hit rate": "percent",
                "top − bottom": "signed4",
                "dates": "count",
                "seeds": "count",
            },  # fmt: skip
            intervals={"IC 95% CI": ("IC low", "IC high"), "R² 95% CI": ("R² low", "R² high")},
            caption=(
                "Every forecaster's out-of-sample forecasts of the next period's log return, "
                "on the decision dates its strategies traded, against what happened; the "
                "baselines (not learned) on the same dates. IC: mean cross-sectional "
                "correlation (Qlib's IC; ICIR = mean/sd per date). R²: 1 − squared error over "
                f"that of the {BENCHMARK.lower()} (Campbell & Thompson), or of zero. DM: "
                f"Diebold–Mariano test of equal squared error against the {BENCHMARK.lower()} "
                "(negative: more accurate). Intervals: block bootstrap over dates and seeds."
            ),
        )
        out = {"Forecast skill (out of sample, seeds pooled)": skill}
        by_fold = self.table[(self.table["seed"] == "all") & (self.table["fold"] != "all")]
        if not by_fold.empty:
            ic = by_fold.pivot(index="forecaster", columns="fold", values="IC")
            ic = ic.reindex(index=list(pooled.index), columns=sorted(ic.columns, key=int))
            ic.columns = [f"F{c}" for c in ic.columns]
            out["Forecast IC by walk-forward fold"] = analysis_table(
                ic.to_dict(orient="index"),
                index_name="forecaster",
                formats=dict.fromkeys(ic.columns, "signed3"),
                caption="Mean IC of each forecaster within each test block (seeds pooled).",
            )
        return out


def as_log_return_forecast(record: ForecastRecord, prices: pd.DataFrame) -> pd.DataFrame:
    """A record's forecasts as next-period log-return forecasts."""
    frame = record.forecasts
    if record.target != "price":
        return frame
    current = prices.reindex(index=frame.index, columns=frame.columns)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(frame / current)


def next_log_returns(prices: pd.DataFrame) -> pd.DataFrame:
    """Row ``t``: ``ln(P_{t+1} / P_t)``, what a forecast made at the close of ``t`` predicts
    (NaN on the last row and across gaps)."""
    log_prices = np.log(prices.astype(float))
    return log_prices.shift(-1) - log_prices


def _fold_of(dates: pd.DatetimeIndex, fold_starts: list[pd.Timestamp]) -> np.ndarray:
    return np.searchsorted(np.asarray(fold_starts, dtype="datetime64[ns]"),
                           np.asarray(dates, dtype="datetime64[ns]"), side="right") - 1  # fmt: skip


def evaluate_forecasts(
    runs: list[ForecastRun],
    prices: pd.DataFrame,
    fold_starts: list[pd.Timestamp],
    k: int = 5,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> ForecastEvaluation:
    """Measure every run against the next log returns of ``prices`` and against the
    :data:`BENCHMARK` run (the historical mean, which must be among ``runs``).

    Each run is measured on its own decision dates; the benchmark is read on the same dates.
    """
    realised = next_log_returns(prices)
    benchmark = next(run for run in runs if run.name == BENCHMARK and not run.learned).forecasts[0]
    rows: list[dict[str, Any]] = []
    ic_columns = {}
    for run in runs:
        dates = run.forecasts[0].index
        bench = benchmark.reindex(index=dates, columns=run.forecasts[0].columns)
        truth = realised.reindex(index=dates, columns=run.forecasts[0].columns)
        base = {"forecaster": run.name, "learned": run.learned,
                "strategies": "; ".join(run.strategies)}  # fmt: skip
        pooled = stats.forecast_skill(list(run.forecasts), truth, bench, k, level, n_boot, seed)
        rows.append({**base, "seed": "all", "fold": "all", **pooled})
        if len(run.forecasts) > 1:
            for s, frame in zip(run.seeds, run.forecasts, strict=True):
                one = stats.forecast_skill([frame], truth, bench, k, level, n_boot, seed)
                rows.append({**base, "seed": str(s), "fold": "all", **one})
        folds = _fold_of(dates, fold_starts)
        if len(fold_starts) > 1:
            for f in np.unique(folds):
                mask = folds == f
                part = [frame.loc[mask] for frame in run.forecasts]
                one = stats.forecast_skill(part, truth.loc[mask], bench.loc[mask], k, level,
                                           n_boot=0, seed=seed)  # fmt: skip
                rows.append({**base, "seed": "all", "fold": str(int(f) + 1), **one})
        ic = np.column_stack([stats.ic_series(frame, truth).to_numpy() for frame in run.forecasts])
        with warnings.catch_warnings():  # a date without an IC in any seed stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            ic = np.nanmean(ic, axis=1)
        ic_columns[run.name] = pd.Series(ic, index=dates)
    table = pd.DataFrame(rows)
    return ForecastEvaluation(table, pd.DataFrame(ic_columns), _findings(table, level), tuple(runs))


def _findings(table: pd.DataFrame, level: float) -> tuple[str, ...]:
    """One sentence per learned forecaster: does it beat the historical mean out of sample?"""
    pooled = table[(table["seed"] == "all") & (table["fold"] == "all")]
    alpha = 1.0 - level
    lines = []
    for _, row in pooled[pooled["learned"]].iterrows():
        r2, p = row["oos_r2_vs_mean"], row["dm_p_value"]
        beats = np.isfinite(p) and p < alpha and row["dm_statistic"] < 0
        worse = np.isfinite(p) and p < alpha and row["dm_statistic"] > 0
        verdict = (
            "beats the historical mean out of sample"
            if beats
            else "is less accurate than the historical mean out of sample"
            if worse
            else "does not beat the historical mean out of sample"
        )
        shown_p = "< 0.001" if p < 0.001 else f"= {p:.3f}"
        lines.append(
            f"Forecaster {row['forecaster']} {verdict}: R² against the historical mean "
            f"{r2:+.4f} [{row['oos_r2_ci_low']:+.4f}, {row['oos_r2_ci_high']:+.4f}], "
            f"Diebold–Mariano p {shown_p}; IC {row['IC']:+.3f} "
            f"[{row['IC_ci_low']:+.3f}, {row['IC_ci_high']:+.3f}], rank IC {row['Rank IC']:+.3f}."
        )
    return tuple(lines)
