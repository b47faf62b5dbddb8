"""Data layer: file readers, validation messages, built-in datasets."""

from __future__ import annotations

import gzip
import sys

import numpy as np
import pandas as pd
import pytest

from dynafolio.data import (
    DatasetInfo,
    dataset_info,
    describe_prices,
    download_prices,
    list_datasets,
    load_dataset,
    read_prices,
)
from dynafolio.data.validate import check_history, check_n_assets, validate_prices
from dynafolio.errors import DataError

WIDE = """date,SPY,BTC
2024-01-03,470.5,42800.0
2024-01-02,472.0,44900.5
2024-01-04,,44100.0
2024-01-05,467.9,NaN
2024-01-06,NA,44000.25
2024-01-07,null,43950.0
"""


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def expected_wide() -> pd.DataFrame:
    index = pd.DatetimeIndex(
        ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-06", "2024-01-07"],
        name="date",
    ).as_unit("us")
    return pd.DataFrame(
        {
            "SPY": [472.0, 470.5, np.nan, 467.9, np.nan, np.nan],
            "BTC": [44900.5, 42800.0, 44100.0, np.nan, 44000.25, 43950.0],
        },
        index=index,
        columns=pd.Index(["SPY", "BTC"], name="asset"),
    )


def to_long(wide: pd.DataFrame) -> pd.DataFrame:
    long = wide.reset_index().melt(id_vars="date", var_name="ticker", value_name="Adj Close")
    return long.dropna(subset=["Adj Close"])


# ---------------------------------------------------------------- reading: shape and layouts


def test_wide_csv_shape_sorting_and_na_markers(tmp_path):
    prices = read_prices(write(tmp_path, "prices.csv", WIDE))
    pd.testing.assert_frame_equal(prices, expected_wide())
    assert prices.index.is_monotonic_increasing
    assert prices.index.tz is None
    assert prices.columns.name == "asset" and prices.index.name == "date"
    assert (prices.dtypes == np.float64).all()


def test_wide_long_csv_gz_and_parquet_round_trip_identical(tmp_path):
    expected = expected_wide()
    wide_csv = read_prices(write(tmp_path, "wide.csv", WIDE))
    long_path = tmp_path / "long.csv"
    to_long(expected).to_csv(long_path, index=False)
    gz_path = tmp_path / "wide.csv.gz"
    with gzip.open(gz_path, "wt") as fh:
        fh.write(WIDE)
    wide_pq = tmp_path / "wide.parquet"
    expected.to_parquet(wide_pq)  # date stored as the (ns or us) index
    long_pq = tmp_path / "long.parquet"
    to_long(expected).to_parquet(long_pq, index=False)
    for path in (long_path, gz_path, wide_pq, long_pq):
        pd.testing.assert_frame_equal(read_prices(path), wide_csv, check_freq=False)
    pd.testing.assert_frame_equal(wide_csv, expected)


def test_long_layout_autodetected_case_insensitive_and_explicit(tmp_path):
    text = "Date,Symbol,Close\n2024-01-02,AAA,10\n2024-01-02,BBB,20\n2024-01-03,AAA,11\n"
    path = write(tmp_path, "long.csv", text)
    prices = read_prices(path)
    assert list(prices.columns) == ["AAA", "BBB"]
    assert prices.loc["2024-01-03", "AAA"] == 11.0
    assert np.isnan(prices.loc["2024-01-03", "BBB"])
    # Explicit long with an extra column is accepted; forcing wide would make 'Symbol' an asset.
    extra = "date,ticker,volume,value\n2024-01-02,AAA,5,10\n2024-01-03,AAA,6,12\n"
    prices = read_prices(write(tmp_path, "extra.csv", extra), layout="long")
    assert list(prices["AAA"]) == [10.0, 12.0]
    with pytest.raises(DataError, match=r"column 'Symbol', line 2: 'AAA' is not a number"):
        read_prices(path, layout="wide")


def test_date_column_detection_and_timezone_suffix(tmp_path):
    text = "when,X\n2020-08-31 00:00:00-04:00,1\n2020-09-01 00:00:00+00:00,2\n"
    path = write(tmp_path, "tz.csv", text)
    prices = read_prices(path)  # first column used: no column is named like a date
    assert list(prices.index.strftime("%Y-%m-%d")) == ["2020-08-31", "2020-09-01"]
    assert prices.index.tz is None
    assert read_prices(path, date_column="WHEN").equals(prices)


def test_blank_lines_keep_line_numbers(tmp_path):
    text = "date,SPY\n2024-01-02,1\n\n2024-01-03,2\n2024-01-04,oops\n"
    with pytest.raises(DataError, match=r"column 'SPY', line 5: 'oops' is not a number"):
        read_prices(write(tmp_path, "blank.csv", text))


# ---------------------------------------------------------------- reading: errors


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (
            "date,SPY\n2024-01-02,1\n2024-01-03,2\n2024-01-04,abc\n",
            ["prices.csv", "column 'SPY'", "line 4", "'abc' is not a number"],
        ),
        (
            "date,SPY\n2024-01-02,1\n2024-13-45,2\n",
            ["prices.csv", "column 'date'", "line 3", "'2024-13-45' is not a date"],
        ),
        (
            "date,SPY\n2024-01-02,1\n2024-01-03,2\n2024-01-02,3\n",
            ["prices.csv", "2024-01-02", "line 2 and line 4", "one row per date"],
        ),
        (
            "date,SPY,TLT\n2024-01-02,1,5\n2024-01-03,2,-1.5\n",
            ["prices.csv", "column 'TLT'", "line 3", "2024-01-03", "-1.5", "> 0"],
        ),
        (
            "date,SPY,TLT\n2024-01-02,1,0\n2024-01-03,2,1\n",
            ["column 'TLT'", "line 2", "price 0.0 is not a positive number"],
        ),
        (
            "date,SPY,TLT\n2024-01-02,1,\n2024-01-03,2,NaN\n",
            ["prices.csv", "column 'TLT'", "no prices at all"],
        ),
        ("date,SPY\n2024-01-02,1\n", ["prices.csv", "only 1 date", "at least 2"]),
        ("date\n2024-01-02\n2024-01-03\n", ["prices.csv", "no asset columns"]),
        (
            "date,SPY,SPY\n2024-01-02,1,2\n2024-01-03,2,3\n",
            ["'SPY' appears twice in the header", "columns 2 and 3"],
        ),
        ("date,SPY\n2024-01-02,1\n,2\n", ["column 'date', line 3", "the date is empty"]),
        ("date,SPY\n2024-01-02,1\n2024-01-03,inf\n", ["line 3", "'inf' is not a finite"]),
    ],
)
def test_wide_csv_errors_name_file_column_line_and_value(tmp_path, text, fragments):
    with pytest.raises(DataError) as info:
        read_prices(write(tmp_path, "prices.csv", text))
    for fragment in fragments:
        assert fragment in str(info.value)


def test_long_duplicate_pair_and_bad_price_name_lines(tmp_path):
    text = "date,asset,price\n2024-01-02,A,1\n2024-01-02,B,2\n2024-01-03,A,3\n2024-01-02,B,4\n"
    with pytest.raises(DataError, match=r"long\.csv.*'B'.*2024-01-02 \(line 3 and line 5\)"):
        read_prices(write(tmp_path, "long.csv", text))
    text = "date,asset,price\n2024-01-02,A,1\n2024-01-03,A,-2\n"
    with pytest.raises(DataError, match=r"column 'price', line 3 \(A on 2024-01-03\): price -2"):
        read_prices(write(tmp_path, "neg.csv", text))
    with pytest.raises(DataError, match=r"candidates.*rename"):
        read_prices(write(tmp_path, "x.csv", "date,a,b\n2024-01-02,1,2\n"), layout="long")


def test_parquet_errors_use_zero_based_row(tmp_path):
    frame = pd.DataFrame(
        {"date": ["2024-01-02", "2024-01-03", "2024-01-04"], "SPY": ["1.0", "2.0", "x"]}
    )
    path = tmp_path / "p.parquet"
    frame.to_parquet(path, index=False)
    with pytest.raises(DataError, match=r"p\.parquet, column 'SPY', row 2: 'x' is not a number"):
        read_prices(path)
    frame = pd.DataFrame({"date": pd.to_datetime(["2024-01-02", "2024-01-03"]), "A": [1.0, -3.0]})
    frame.to_parquet(path, index=False)
    with pytest.raises(DataError, match=r"column 'A', row 1 \(2024-01-03\): price -3.0"):
        read_prices(path)


def test_missing_file_extension_and_date_column(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        read_prices(tmp_path / "nope.csv")
    xlsx = write(tmp_path, "prices.xlsx", "x")
    with pytest.raises(DataError, match=r"prices\.xlsx: unsupported file type.*\.parquet"):
        read_prices(xlsx)
    path = write(tmp_path, "prices.csv", "day,SPY\n2024-01-02,1\n2024-01-03,2\n")
    with pytest.raises(DataError, match=r"date column 'date' not found.*\['day', 'SPY'\]"):
        read_prices(path, date_column="date")
    bad_first = write(tmp_path, "nodate.csv", "SPY,TLT\n1,2\n3,4\n")
    with pytest.raises(DataError, match=r"line 2: '1' is a number, not a date.*pass date_column="):
        read_prices(bad_first)


# ---------------------------------------------------------------- validate


def test_validate_prices_on_frames():
    index = pd.DatetimeIndex(["2024-01-03", "2024-01-02", "2024-01-04"])
    good = pd.DataFrame({"A": [1.0, 2.0, np.nan]}, index=index)
    validate_prices(good, "mine")  # unsorted and NaN are fine
    dup = good.set_axis(pd.DatetimeIndex(["2024-01-02", "2024-01-03", "2024-01-02"]))
    with pytest.raises(DataError, match=r"mine: date 2024-01-02 appears 2 times \(L1 and L3\)"):
        validate_prices(dup, "mine", row_labels=["L1", "L2", "L3"])
    with pytest.raises(DataError, match=r"mine, column 'A', line 9 \(2024-01-02\): price -2.0"):
        validate_prices(good.assign(A=[1.0, -2.0, 3.0]), "mine", row_labels={1: "line 9"})
    with pytest.raises(DataError, match=r"column 'B': the column has no prices"):
        validate_prices(good.assign(B=np.nan), "mine")
    with pytest.raises(DataError, match="no asset columns"):
        validate_prices(good[[]], "mine")
    with pytest.raises(DataError, match="only 1 date"):
        validate_prices(good.iloc[:1], "mine")
    with pytest.raises(DataError, match="must be numbers"):
        validate_prices(good.assign(A=["a", "b", "c"]), "mine")


def test_check_history_and_n_assets_messages():
    frame = pd.DataFrame({"A": np.arange(1.0, 11.0)})
    check_history(frame, 9, "weekly prices")
    with pytest.raises(DataError) as info:
        check_history(frame, 10, "weekly prices")
    message = str(info.value)
    for fragment in (
        "weekly prices",
        "at least 11 rows",
        "has 10",
        "shorter lookback",
        "more data",
    ):
        assert fragment in message
    check_n_assets(5, 5, "strategy 'Top-K'")
    with pytest.raises(
        DataError,
        match=r"^strategy 'Top-K' needs at least 5 assets but the data has 3; lower K or add",
    ):
        check_n_assets(3, 5, "strategy 'Top-K'", hint="lower K or add assets")


def test_download_prices_without_yfinance(monkeypatch):
    monkeypatch.setitem(sys.modules, "yfinance", None)
    with pytest.raises(DataError, match=r"pip install 'dynafolio\[online\]'"):
        download_prices(["SPY"], "2020-01-01", "2020-02-01")


# ---------------------------------------------------------------- datasets


def test_list_and_info():
    infos = list_datasets()
    assert [i.name for i in infos] == [
        "multiasset",
        "sp500",
        "ff_industries",
        "ff25",
        "noise",
        "momentum",
        "foresight",
        "static_edge",
    ]
    assert all(isinstance(i, DatasetInfo) for i in infos)
    info = dataset_info("multiasset")
    assert info.frequency == "daily (crypto every calendar day, others NYSE days)"
    with pytest.raises(DataError, match=r"unknown dataset 'nasdaq'.*multiasset, sp500"):
        dataset_info("nasdaq")
    with pytest.raises(DataError, match="multiasset, sp500"):
        load_dataset("nasdaq")


def test_load_multiasset_matches_provenance():
    prices = load_dataset("multiasset")
    assert prices.shape == (2557, 34)
    assert prices.index[0] == pd.Timestamp("2018-01-01")
    assert prices.index[-1] == pd.Timestamp("2024-12-31")
    assert prices["SOL"].first_valid_index() == pd.Timestamp("2020-04-10")
    assert prices["TON"].last_valid_index() == pd.Timestamp("2024-12-07")
    assert prices["SPY"].notna().sum() == 1761 and prices["GOLD"].notna().sum() == 1760
    assert prices["BTC"].notna().all()
    avax = prices["AVAX"].dropna().index
    assert list(avax[:3].strftime("%Y-%m-%d")) == ["2020-07-13", "2020-07-14", "2020-09-22"]
    assert set(dataset_info("multiasset").asset_classes) == set(prices.columns)
    # A copy each time: mutating one result must not leak into the cache.
    prices.iloc[0, 0] = -1.0
    assert np.isnan(load_dataset("multiasset").iloc[0, 0])


def test_load_sp500_stocks_plus_index():
    prices = load_dataset("sp500")
    info = dataset_info("sp500")
    assert prices.shape == (8313, 21)
    assert prices.columns[-1] == "SP500" and info.asset_classes["SP500"] == "Index"
    assert sum(c == "US equities" for c in info.asset_classes.values()) == 20
    assert set(info.asset_classes) == set(prices.columns)
    assert prices.index.name == "date" and prices.columns.name == "asset"
    assert prices.loc["1990-01-02", "SP500"] == pytest.approx(359.69)


def test_describe_prices():
    index = pd.date_range("2024-01-01", periods=4, name="date")
    prices = pd.DataFrame(
        {"A": [np.nan, 2.0, np.nan, 4.0], "B": [1.0, 1.5, 3.0, np.nan], "C": np.nan},
        index=index,
    )
    out = describe_prices(prices, asset_classes={"A": "Bonds"})
    assert list(out.columns) == [
        "class",
        "first_date",
        "last_date",
        "n_prices",
        "first_price",
        "last_price",
    ]
    assert out.loc["A", "class"] == "Bonds" and pd.isna(out.loc["B", "class"])
    assert out.loc["A", "first_date"] == pd.Timestamp("2024-01-02")
    assert out.loc["B", "last_date"] == pd.Timestamp("2024-01-03")
    assert out["n_prices"].tolist() == [2, 3, 0]
    assert out.loc["A", "first_price"] == 2.0 and out.loc["B", "last_price"] == 3.0
    assert pd.isna(out.loc["C", "first_date"]) and np.isnan(out.loc["C", "last_price"])
    real = describe_prices(load_dataset("multiasset"), dataset_info("multiasset").asset_classes)
    assert real.loc["SOL", "first_date"] == pd.Timestamp("2020-04-10")
    assert real.loc["BTC", "class"] == "Crypto" and real.loc["TLT", "class"] == "Bonds"
    assert real.loc["BTC", "n_prices"] == 2557


@pytest.mark.parametrize(
    ("name", "n_assets", "first", "last", "rows"),
    [
        ("ff_industries", 47, "1960-01-04", "2018-12-31", 14850),
        ("ff25", 25, "1964-01-02", "2015-12-31", 13091),
    ],
)
def test_the_french_portfolios_are_embedded(name, n_assets, first, last, rows):
    from dynafolio.data.datasets import dataset_info, load_dataset

    prices = load_dataset(name)
    assert prices.shape == (rows, n_assets)
    assert (prices.index[0], prices.index[-1]) == (pd.Timestamp(first), pd.Timestamp(last))
    assert set(prices.columns) == set(dataset_info(name).asset_classes)
    assert "French" in dataset_info(name).source


def test_the_french_factors_and_the_1987_crash():
    from dynafolio.data.datasets import load_dataset, load_french_factors

    factors = load_french_factors()
    assert list(factors.columns) == ["Mkt-RF", "SMB", "HML", "MOM", "RF"]
    crash = pd.Timestamp("1987-10-19")
    assert factors.loc[crash, "Mkt-RF"] == pytest.approx(-0.1744)  # the file is in percent
    industries = load_dataset("ff_industries")
    moves = industries.pct_change(fill_method=None).loc[crash]
    assert moves.min() == pytest.approx(-0.241, abs=1e-3)
    assert moves.max() == pytest.approx(0.015, abs=1e-3)
    assert moves.mean() == pytest.approx(-0.165, abs=1e-3)


def test_a_run_on_french_data_uses_the_fama_french_risk_free_rate_in_its_sharpe_ratios():
    from dynafolio import metrics
    from dynafolio.data.datasets import french_factors_per_period
    from dynafolio.experiments.config import validate_config
    from dynafolio.studies import run_experiment

    base = {
        "name": "ff",
        "data": {"dataset": "ff_industries", "assets": ["Food", "Beer", "Smoke", "Toys"],
                 "start": "1979-01-01", "end": "1982-12-31"},
        "split": {"train_fraction": 0.5},
        "strategies": [{"kind": "equal_weight"}, {"kind": "inverse_volatility"}],
    }  # fmt: skip
    constant = run_experiment(validate_config(base))
    french = run_experiment(validate_config({**base, "backtest": {"risk_free": "ff_factors"}}))
    net = french.strategies[0].runs[0].net_returns
    rf = french_factors_per_period(french.prices.index)["RF"].reindex(net.index)
    excess = net - rf
    expected = excess.mean() / excess.std(ddof=1) * np.sqrt(52)
    assert french.metrics["sharpe"].iloc[0] == pytest.approx(expected, rel=1e-9)
    # T-bills paid 10–15% a year then: far below the Sharpe ratio against a zero rate.
    assert french.metrics["sharpe"].iloc[0] < constant.metrics["sharpe"].iloc[0] - 0.3
    assert any("Fama–French daily risk-free rate" in note for note in french.notes)
    assert metrics.risk_free_on(0.02, net.index) == 0.02


def test_the_fama_french_risk_free_rate_is_refused_outside_its_dates():
    from dynafolio.experiments.config import validate_config
    from dynafolio.studies import run_experiment

    config = validate_config({
        "name": "x", "backtest": {"risk_free": "ff_factors"},
        "strategies": [{"kind": "equal_weight"}],
    })  # fmt: skip
    with pytest.raises(DataError, match="factors cover 1960-01-04..2018-12-31, the data 2018"):
        run_experiment(config)


def test_french_provenance_ships_beside_the_data_in_the_package() -> None:
    from importlib.resources import files

    provenance = files("dynafolio.data") / "PROVENANCE-french.md"
    text = provenance.read_text(encoding="utf-8")
    assert "French" in text and "industr" in text.lower()
    assert (files("dynafolio.data") / "ff_industries_daily.csv.gz").is_file()
