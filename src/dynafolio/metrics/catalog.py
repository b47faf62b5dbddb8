"""The metrics a run reports: each one's key, label, unit, direction and meaning, in report
order (see :mod:`dynafolio.metrics`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MetricInfo:
    """How one metric of :func:`summary` is named, measured and read.

    ``unit`` is ``"fraction"`` (shown as a percentage: 0.123 → 12.3%) or ``"ratio"``;
    ``better`` is ``"higher"``, ``"lower"`` or ``None`` (no best value, e.g. a count).
    """

    key: str
    label: str
    short: str
    unit: Literal["fraction", "ratio", "count", "p"]
    decimals: int
    better: Literal["higher", "lower"] | None
    help: str
    #: "summary": a key of :func:`summary`; "inference": from :mod:`dynafolio.stats`;
    #: "learnability": the learner's known-answer check (:mod:`dynafolio.rl.learnability`).
    source: Literal["summary", "inference", "learnability"] = "summary"


#: The one table of metrics, in report order: the CLI, the CSV/JSON writers and the report
#: all read labels, units, formats and directions from here.
METRICS: tuple[MetricInfo, ...] = (
    MetricInfo(
        "ann_return", "Ann. return (mean×periods)", "Ann.ret (μ×P)", "fraction", 1, "higher",
        "Arithmetic mean per-period net return × periods per year",
    ),
    MetricInfo(
        "cagr", "CAGR", "CAGR", "fraction", 1, "higher",
        "Compound annual growth rate of net equity",
    ),
    MetricInfo(
        "ann_volatility", "Ann. vol.", "Ann.vol", "fraction", 1, "lower",
        "Standard deviation of per-period net returns, annualised",
    ),
    MetricInfo(
        "sharpe", "Sharpe", "Sharpe", "ratio", 2, "higher",
        "Annualised Sharpe ratio of net returns (excess of the risk-free rate)",
    ),
    MetricInfo(
        "sortino", "Sortino", "Sortino", "ratio", 2, "higher",
        "Annualised Sortino ratio of net returns",
    ),
    # Stored as a negative fraction: the best (shallowest) drawdown is the largest value.
    MetricInfo(
        "max_drawdown", "Max DD", "MaxDD", "fraction", 1, "higher",
        "Deepest peak-to-trough fall of net equity",
    ),
    MetricInfo(
        "calmar", "Calmar", "Calmar", "ratio", 2, "higher", "CAGR / |max drawdown|"
    ),
    MetricInfo(
        "total_return", "Total return", "Total", "fraction", 1, "higher",
        "Net equity at the end of the test period − 1",
    ),
    # Often well below 1% a period: two decimals, or most rules would read 0.0%.
    MetricInfo(
        "avg_turnover", "Avg turnover", "Turnover", "fraction", 2, "lower",
        "Mean one-way turnover per period (buys plus sells)",
    ),
    MetricInfo("n_periods", "Periods", "Periods", "count", 0, None, "Test periods scored"),
    MetricInfo(
        "sharpe_ci_low", "Sharpe CI low", "CI low", "ratio", 2, None,
        "Lower end of the Sharpe ratio's confidence interval (block bootstrap over dates and "
        "seeds)", "inference",
    ),
    MetricInfo(
        "sharpe_ci_high", "Sharpe CI high", "CI high", "ratio", 2, None,
        "Upper end of the Sharpe ratio's confidence interval", "inference",
    ),
    MetricInfo(
        "sharpe_p_vs_benchmark", "p vs benchmark", "p vs bench", "p", 3, None,
        "Two-sided p-value of a paired test of equal Sharpe ratios with the benchmark, on the "
        "same dates (not adjusted for the number of strategies)", "inference",
    ),
    MetricInfo(
        "learner_check", "Learner check (share of oracle)", "Learns?", "fraction", 0, None,
        "Sharpe ratio the strategy's learner reaches on a known-answer market of the same "
        "shape, as a share of the oracle's (foresight scores for learners that read forecasts, "
        "AR(1) momentum with phi 0.5 for the others); below 50% the row is not evidence about "
        "the method", "learnability",
    ),
)  # fmt: skip
METRIC_INFO: dict[str, MetricInfo] = {m.key: m for m in METRICS}
# The keys of summary(), in report order, and their labels.
METRIC_LABELS: dict[str, str] = {m.key: m.label for m in METRICS if m.source == "summary"}
SUMMARY_KEYS: tuple[str, ...] = tuple(METRIC_LABELS)
