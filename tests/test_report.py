"""Tests of the report layer on a small hand-built ExperimentResult."""

from __future__ import annotations

import base64
import importlib.resources
import re
import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from dynafolio.backtest.result import BacktestResult
from dynafolio.report import format_table, plots, style, weight_plots, write_report
from dynafolio.report.tables import best_by_column
from dynafolio.results.result import ExperimentResult, StrategyRuns

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ASSETS = ["SPY", "TLT", "GLD", "EFA", "VNQ"]
KEYS = (
    "ann_return",
    "cagr",
    "ann_volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "total_return",
    "avg_turnover",
    "n_periods",
)
FINDING = "Mean-variance beats equal weight on Sharpe in this synthetic run."
NOTE = "Synthetic data: nothing here is a real market result."


def _backtest(
    name: str,
    rng: np.random.Generator,
    dates: pd.DatetimeIndex,
    assets: list[str],
    drift: float = 0.001,
) -> BacktestResult:
    n = len(dates) - 1  # decisions at dates[:-1], each earning the return up to the next date
    raw = rng.random((n, len(assets)))
    weights = pd.DataFrame(raw / raw.sum(axis=1, keepdims=True), index=dates[:-1], columns=assets)
    gross = rng.normal(drift, 0.02, n)
    turnover = np.abs(rng.normal(0.1, 0.05, n))
    cost = 0.001 * turnover
    ledger = pd.DataFrame(
        {"gross": gross, "cost": cost, "net": gross - cost, "turnover": turnover}, index=dates[1:]
    )
    return BacktestResult(
        name=name,
        ledger=ledger,
        weights=weights,
        drifted_weights=weights.set_axis(dates[1:]),
        rebalanced=pd.Series(True, index=dates[:-1]),
        periods_per_year=52,
    )


def _summary(result: BacktestResult) -> dict[str, float]:
    # Simple stand-ins for dynafolio.metrics.summary: the report only formats these numbers.
    net = result.net_returns.to_numpy()
    equity = np.cumprod(1 + net)
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    mdd = float((equity / peak - 1).min())
    years = len(net) / 52
    cagr = float(equity[-1] ** (1 / years) - 1)
    vol = float(net.std(ddof=1) * np.sqrt(52))
    downside = float(np.sqrt(np.mean(np.minimum(net, 0) ** 2)) * np.sqrt(52))
    return {
        "ann_return": float(net.mean() * 52),
        "cagr": cagr,
        "ann_volatility": vol,
        "sharpe": float(net.mean() * 52 / vol),
        "sortino": float(net.mean() * 52 / downside),
        "max_drawdown": mdd,
        "calmar": cagr / abs(mdd),
        "total_return": float(equity[-1] - 1),
        "avg_turnover": float(result.ledger["turnover"].mean()),
        "n_periods": float(len(net)),
    }


def make_result(
    n_strategies: int = 3, n_assets: int = 5, n_periods: int = 60, with_stress: bool = True
) -> ExperimentResult:
    """Equal weight (benchmark), buy & hold, one learned strategy with 2 seeds, then fillers."""
    rng = np.random.default_rng(7)
    assets = ASSETS[:n_assets] + [f"A{i:02d}" for i in range(max(0, n_assets - len(ASSETS)))]
    all_dates = pd.date_range("2015-01-02", periods=n_periods + 1 + 150, freq="W-FRI")
    train_dates, test_dates = all_dates[:150], all_dates[150:]
    prices = pd.DataFrame(
        100 * np.exp(np.cumsum(rng.normal(0, 0.02, (len(all_dates), n_assets)), axis=0)),
        index=all_dates,
        columns=assets,
    )
    specs = [("Equal weight", 1, False), ("SPY buy & hold", 1, False), ("PPO learned", 2, True)]
    specs += [(f"Rule {i}", 1, False) for i in range(n_strategies - len(specs))]
    strategies = []
    for i, (name, n_seeds, learned) in enumerate(specs[:n_strategies]):
        runs = tuple(
            _backtest(name, rng, test_dates, assets, drift=0.0005 * i) for _ in range(n_seeds)
        )
        strategies.append(
            StrategyRuns(name=name, runs=runs, seeds=tuple(range(n_seeds)), learned=learned)
        )
    rows = [
        {"strategy": s.name, "seed": seed, **_summary(run)}
        for s in strategies
        for seed, run in zip(s.seeds, s.runs, strict=True)
    ]
    metrics = pd.DataFrame(rows).set_index("strategy")
    grouped = metrics.groupby(level=0, sort=False)
    table = grouped[list(KEYS)].mean()
    std = grouped[list(KEYS)].std(ddof=1).add_suffix("_std")
    table = pd.concat([table, std], axis=1)
    table["n_seeds"] = grouped.size()
    stress = pd.DataFrame(columns=["strategy", "window", "start", "end", *KEYS])
    if with_stress:
        stress = pd.DataFrame(
            [
                {
                    "strategy": s.name,
                    "window": w,
                    "start": test_dates[a],
                    "end": test_dates[b],
                    **_summary(replace(s.first, ledger=s.first.ledger.iloc[a:b])),
                }
                for w, a, b in (("Synthetic crash", 5, 20), ("Rate shock", 30, 50))
                for s in strategies
            ]
        )
    return ExperimentResult(
        experiment="t1",
        title="Synthetic report test",
        strategies=tuple(strategies),
        metrics=metrics,
        table=table,
        stress=stress,
        prices=prices,
        train_dates=train_dates,
        test_dates=test_dates,
        periods_per_year=52,
        benchmark="Equal weight",
        findings=(FINDING,),
        notes=(NOTE,),
    )


MANIFEST = {
    "config": {
        "data": {"dataset": "synthetic", "frequency": "weekly"},
        "backtest": {"transaction_cost": 0.001, "rebalance_every": 4},
    },
    "seeds": [0, 1],
    "data": {"sha256": "ab" * 32},
    "created": "2025-01-01T00:00:00Z",
    "versions": {"python": "3.11", "numpy": np.__version__, "pandas": pd.__version__},
}


@pytest.fixture(scope="module")
def result() -> ExperimentResult:
    return make_result()


def test_write_report_is_self_contained(result: ExperimentResult, tmp_path) -> None:
    path = write_report(result, tmp_path, MANIFEST)
    assert path == tmp_path / "report.html" and path.is_file()
    html = path.read_text(encoding="utf-8")
    for runs in result.strategies:
        assert runs.name.replace("&", "&amp;") in html
    assert FINDING in html and NOTE in html
    assert "synthetic" in html and "ab" * 32 in html
    assert "Synthetic crash" in html and "Rate shock" in html
    # Scripts are inline (plotly.js included): none is fetched.
    assert not re.search(r"<script[^>]*\bsrc=", html, flags=re.IGNORECASE)
    assert "Plotly.newPlot" in html and html.count('<div id="chart-') == 3
    # Outside the scripts (plotly.js holds URLs in strings it never fetches), no reference out.
    page = re.sub(r"<script\b[^>]*>.*?</script>", "", html, flags=re.S | re.IGNORECASE)
    for pattern in (r'src="http', r'href="http', r"<link", r"@import", r"url\(\s*['\"]?http"):
        assert not re.search(pattern, page, flags=re.IGNORECASE), pattern
    imgs = re.findall(r"<img\b[^>]*>", html)
    # one weights chart per strategy (+ average-weight bars); equity, drawdowns and Sharpe
    # are interactive charts, their PNGs stay in plots/.
    learned = sum(runs.learned for runs in result.strategies)
    assert len(imgs) == len(result.strategies) + learned
    assert {"equity.png", "drawdowns.png", "sharpe.png"} <= {
        p.name for p in (tmp_path / "plots").iterdir()
    }
    for tag in imgs:
        match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', tag)
        assert match, tag[:80]
        assert base64.b64decode(match.group(1)).startswith(PNG_SIGNATURE)
    assert (tmp_path / "plots" / "equity.png").is_file()


def test_a_run_on_the_users_file_names_the_file_not_the_default_dataset(result, tmp_path):
    # data.path replaces the embedded dataset, whose default name stays in the config.
    config = {**MANIFEST["config"], "data": {"dataset": "multiasset", "path": "/home/me/p.csv"}}
    html = write_report(result, tmp_path, {**MANIFEST, "config": config}).read_text("utf-8")
    assert "file p.csv" in html
    assert "multiasset" not in html and "/home/me" not in html


def test_report_without_stress_and_with_empty_manifest(tmp_path) -> None:
    path = write_report(make_result(with_stress=False), tmp_path, {})
    html = path.read_text(encoding="utf-8")
    assert "No stress window overlaps the test period" in html


def test_format_table(result: ExperimentResult) -> None:
    formatted = format_table(result.table)
    assert list(formatted.index) == list(result.table.index)
    assert "Sharpe" in formatted.columns and "Max DD" in formatted.columns
    assert re.fullmatch(r"-?\d+\.\d{2} ± \d+\.\d{2}", formatted.at["PPO learned", "Sharpe"])
    assert re.fullmatch(r"-?\d+\.\d% ± \d+\.\d%", formatted.at["PPO learned", "CAGR"])
    for name in ("Equal weight", "SPY buy & hold"):
        assert re.fullmatch(r"-?\d+\.\d{2}", formatted.at[name, "Sharpe"])
        assert re.fullmatch(r"-?\d+\.\d%", formatted.at[name, "CAGR"])
        assert formatted.at[name, "Avg turnover"].endswith("%")
        assert "±" not in formatted.at[name, "Max DD"]
    assert formatted.at["Equal weight", "Max DD"].startswith("-")


def test_best_by_column_directions() -> None:
    table = pd.DataFrame(
        {
            "max_drawdown": [-0.3, -0.1, np.nan],
            "ann_volatility": [0.1, 0.2, 0.3],
            "sharpe": [1.0, 1.0, 1.0],
        },
        index=["a", "b", "c"],
    )
    best = best_by_column(table)
    assert best["max_drawdown"] == {"b"}  # shallowest drawdown
    assert best["ann_volatility"] == {"a"}
    assert best["sharpe"] == set()  # all tied: nothing to single out


def test_plot_functions_write_png(result: ExperimentResult, tmp_path) -> None:
    runs = result.strategies[2]
    paths = [
        plots.plot_equity_curves(result, tmp_path / "eq.png"),
        plots.plot_drawdowns(result, tmp_path / "dd.png"),
        weight_plots.plot_weights_over_time(
            runs, tmp_path / "w.png", max_assets=3, asset_order=ASSETS
        ),
        weight_plots.plot_average_weights(runs, tmp_path / "avg.png"),
        plots.plot_metric_bars(result, tmp_path / "cagr.png", metric="cagr"),
    ]
    for path in paths:
        assert path.read_bytes().startswith(PNG_SIGNATURE)


def _png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[16:24]  # the IHDR chunk's width and height, big-endian
    return int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")


def test_average_weights_chart_is_capped_on_large_universes(tmp_path) -> None:
    # A learned Top-K on a large universe holds most assets at some point: one bar per held
    # asset drew a chart hundreds of inches tall; the largest 30 are drawn, the rest noted.
    small = make_result(n_assets=5).strategies[2]
    large = make_result(n_assets=400).strategies[2]
    assert (large.mean_weights().mean() > 1e-6).sum() == 400
    capped = weight_plots.plot_average_weights(large, tmp_path / "large.png")
    same = weight_plots.plot_average_weights(large, tmp_path / "all.png", max_assets=400)
    five = weight_plots.plot_average_weights(small, tmp_path / "small.png")
    assert _png_size(capped)[1] < _png_size(same)[1] / 8
    assert _png_size(capped)[1] < 2_000
    assert _png_size(five)[1] < _png_size(capped)[1]


def test_asset_colours_do_not_depend_on_subset() -> None:
    full = style.asset_colors(ASSETS, asset_order=ASSETS)
    subset = style.asset_colors(["VNQ", "TLT"], asset_order=ASSETS)
    assert subset["VNQ"] == full["VNQ"] and subset["TLT"] == full["TLT"]
    assert len({full[a] for a in ASSETS}) == len(ASSETS)


def test_strategy_styles_mark_benchmark_and_buy_and_hold() -> None:
    names = ["Equal weight", "SPY buy & hold"] + [f"S{i}" for i in range(18)]
    styles = style.strategy_styles(names, "Equal weight", {"SPY buy & hold"})
    assert styles["Equal weight"]["color"] == "black"
    assert styles["SPY buy & hold"]["linestyle"] == "--"
    looks = {
        (tuple(s["color"]) if not isinstance(s["color"], str) else s["color"], s["linestyle"])
        for s in styles.values()
    }
    assert len(looks) == len(names)


def test_template_ships_as_package_data() -> None:
    template = importlib.resources.files("dynafolio.report") / "templates" / "report.html"
    assert template.is_file()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_interactive_charts_render_in_headless_chromium_without_a_network(result, tmp_path):
    path = write_report(result, tmp_path, MANIFEST)
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--proxy-server=http://127.0.0.1:9",  # every network request fails
        "--virtual-time-budget=10000", "--dump-dom",
    ]  # fmt: skip
    dom = subprocess.run(
        ["chromium", *flags, path.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    # plotly.js drew an SVG in each of the three charts (equity, drawdowns, Sharpe).
    for chart in ("chart-equity", "chart-drawdowns", "chart-sharpe"):
        block = dom.split(f'id="{chart}"', 1)[1][:20000]
        assert 'class="main-svg"' in block, chart


def test_analysis_tables_hold_numbers_until_the_report_formats_them(tmp_path):
    from dynafolio.report.tables import format_analysis
    from dynafolio.results.tables import analysis_table

    frame = analysis_table(
        {
            ("noise", "A"): {"Sharpe": 1.234, "Sharpe sd": 0.1, "Δ": 0.5, "Δ low": -0.1,
                             "Δ high": 1.2, "p": 0.0004, "verdict": "learns"},
            ("noise", "B"): {"Sharpe": -0.5, "Sharpe sd": np.nan, "Δ": np.nan, "Δ low": np.nan,
                             "Δ high": np.nan, "p": 0.2, "verdict": "reference"},
        },
        index_name=("market", "strategy"),
        formats={"Δ": "signed", "Δ low": "signed", "Δ high": "signed", "p": "p"},
        intervals={"95% CI of Δ": ("Δ low", "Δ high")},
        spreads={"Sharpe": "Sharpe sd"},
    )  # fmt: skip
    frame.to_csv(tmp_path / "t.csv")
    back = pd.read_csv(tmp_path / "t.csv", index_col=[0, 1])
    assert back["p"].tolist() == [0.0004, 0.2]  # the file keeps the numbers
    shown = format_analysis(frame)
    assert list(shown.columns) == ["Sharpe", "Δ", "95% CI of Δ", "p", "verdict"]
    assert shown.iloc[0].tolist() == ["1.23 ± 0.10", "+0.50", "[-0.10, +1.20]", "<0.001", "learns"]
    assert shown.iloc[1].tolist() == ["-0.50", "–", "–", "0.200", "reference"]
