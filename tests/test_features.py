"""Cleaning, resampling, returns and annualisation of price frames."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynafolio.data import load_dataset
from dynafolio.errors import DataError
from dynafolio.features import (
    clean_prices,
    listing_dates,
    periods_per_year,
    prepare_prices,
    prices_to_returns,
    resample_prices,
)

NAN = np.nan


def frame(columns: dict[str, list[float]], start: str = "2024-01-01", freq: str = "D"):
    n = len(next(iter(columns.values())))
    index = pd.date_range(start, periods=n, freq=freq, name="date")
    return pd.DataFrame(columns, index=index).rename_axis(columns="asset")


@pytest.fixture(scope="module")
def multiasset() -> pd.DataFrame:
    return load_dataset("multiasset")


# ---------------------------------------------------------------- clean_prices


def test_clean_fills_short_gap_keeps_leading_nan_carries_the_tail():
    # The tail is carried too: at a missing row nobody knows yet whether prices will resume.
    raw = frame({"A": [NAN, NAN, 1.0, NAN, NAN, NAN, 2.0, 3.0, NAN, NAN]})
    out = clean_prices(raw, max_gap=5)
    expected = [NAN, NAN, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0]
    np.testing.assert_array_equal(out["A"].to_numpy(), expected)
    assert raw["A"].isna().sum() == 7  # input untouched
    pd.testing.assert_index_equal(out.index, raw.index)
    pd.testing.assert_index_equal(out.columns, raw.columns)


def test_clean_long_gap_carries_max_gap_rows_then_stops_and_resumes():
    # 7 missing rows > max_gap 5: the first 5 carry the last price (a fill is decided without
    # knowing how long the gap will be), the last 2 are not tradable, prices then resume.
    values = [1.0, 2.0] + [NAN] * 7 + [3.0, NAN, 4.0]
    raw = frame({"A": values, "B": [float(i + 1) for i in range(len(values))]})
    out = clean_prices(raw, max_gap=5)
    np.testing.assert_array_equal(out["A"].iloc[:7].to_numpy(), [1.0, 2.0] + [2.0] * 5)
    assert out["A"].iloc[7:9].isna().all()
    np.testing.assert_array_equal(out["A"].iloc[9:].to_numpy(), [3.0, 3.0, 4.0])
    pd.testing.assert_series_equal(out["B"], raw["B"].astype(float))
    assert listing_dates(out)["A"] == raw.index[0]


def test_clean_a_long_gap_never_erases_earlier_history():
    values = [1.0, 2.0, 3.0] + [NAN] * 60 + [4.0, 5.0]
    out = clean_prices(frame({"A": values}), max_gap=5)
    np.testing.assert_array_equal(out["A"].iloc[:3].to_numpy(), [1.0, 2.0, 3.0])
    assert listing_dates(out)["A"] == out.index[0]


def test_clean_boundary_gap_equal_to_max_gap_is_filled():
    five = frame({"A": [1.0] + [NAN] * 5 + [2.0]})
    six = frame({"A": [1.0] + [NAN] * 6 + [2.0]})
    assert clean_prices(five, max_gap=5)["A"].notna().all()
    assert clean_prices(six, max_gap=5)["A"].isna().tolist() == [False] * 6 + [True, False]
    assert clean_prices(six, max_gap=6)["A"].notna().all()
    assert clean_prices(five, max_gap=0)["A"].isna().tolist() == [False] + [True] * 5 + [False]


@pytest.mark.parametrize("bad", [-1, 2.5, True, "5"])
def test_clean_rejects_bad_max_gap(bad):
    with pytest.raises(DataError, match="max_gap"):
        clean_prices(frame({"A": [1.0, 2.0]}), max_gap=bad)


def test_clean_rejects_unsorted_dates():
    raw = frame({"A": [1.0, 2.0, 3.0]}).iloc[::-1]
    with pytest.raises(DataError, match="sort_index"):
        clean_prices(raw)


def _reference_clean(values: list[float], max_gap: int) -> list[float]:
    """Slow, literal transcription of the documented rule, one row at a time."""
    out, last, missing = [], NAN, 0
    for v in values:
        if not math.isnan(v):
            out.append(v)
            last, missing = v, 0
        else:
            missing += 1
            out.append(last if missing <= max_gap else NAN)
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.just(NAN), st.floats(1.0, 100.0)), min_size=1, max_size=40),
    st.integers(0, 6),
)
def test_clean_matches_reference_rule(values, max_gap):
    out = clean_prices(frame({"A": values}), max_gap=max_gap)["A"]
    np.testing.assert_array_equal(out.to_numpy(), _reference_clean(values, max_gap))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.one_of(st.just(NAN), st.floats(1.0, 100.0)), min_size=2, max_size=60),
    st.integers(0, 6),
    st.data(),
)
def test_clean_is_causal_cleaning_a_prefix_gives_the_prefix(values, max_gap, data):
    """What cleaning the raw prices up to t gives is what a full clean shows up to t."""
    raw = frame({"A": values, "B": values[::-1]})
    cut = data.draw(st.integers(1, len(values)))
    full = clean_prices(raw, max_gap=max_gap)
    prefix = clean_prices(raw.iloc[:cut], max_gap=max_gap)
    pd.testing.assert_frame_equal(prefix, full.iloc[:cut])


@settings(max_examples=40, deadline=None)
@given(st.integers(60, 900), st.integers(0, 2**31), st.sampled_from(["W", "M"]))
def test_prepare_is_causal_on_the_embedded_data(cut, seed, frequency):
    """Daily raw data up to a period end, prepared, equals the full preparation up to it."""
    raw = load_dataset("multiasset").iloc[:1000]
    full = prepare_prices(raw, frequency=frequency)
    t = full.index[full.index.searchsorted(raw.index[cut])]
    if t == full.index[-1]:
        return
    # Perturb the raw future: new prices and a long gap in a random asset after t.
    rng = np.random.default_rng(seed)
    future = raw.copy()
    after = future.index > t
    future.loc[after] = future.loc[after] * rng.uniform(0.5, 2.0, (int(after.sum()), 34))
    future.loc[after, future.columns[seed % 34]] = np.nan
    prefix = prepare_prices(raw.loc[:t], frequency=frequency)
    pd.testing.assert_frame_equal(prefix, full.loc[:t])
    pd.testing.assert_frame_equal(prepare_prices(future, frequency=frequency).loc[:t], prefix)


def test_clean_multiasset_avax_listing_and_weekend_fill(multiasset):
    out = clean_prices(multiasset)
    listed = listing_dates(out)
    # AVAX's isolated quotes of 2020-07-13/14 list it early; 69 missing days follow, of which
    # the first 5 carry the last quote and the rest are not tradable.
    assert listed["AVAX"] == pd.Timestamp("2020-07-13")
    assert out.loc["2020-07-19", "AVAX"] == multiasset.loc["2020-07-14", "AVAX"]
    assert out.loc["2020-07-20":"2020-09-21", "AVAX"].isna().all()
    assert listed["SOL"] == pd.Timestamp("2020-04-10")
    assert listed["SPY"] == pd.Timestamp("2018-01-02")  # not filled back to 2018-01-01
    # Saturday carries Friday's close; TON is carried 5 days past 2024-12-07, then stops.
    assert out.loc["2018-01-06", "SPY"] == multiasset.loc["2018-01-05", "SPY"]
    assert out["TON"].last_valid_index() == pd.Timestamp("2024-12-12")
    assert out["SPY"].loc["2018-01-02":].notna().all()


def test_listing_dates_nat_for_empty_column():
    out = listing_dates(frame({"A": [NAN, 1.0], "B": [NAN, NAN]}))
    assert out["A"] == pd.Timestamp("2024-01-02") and pd.isna(out["B"])


# ---------------------------------------------------------------- resample_prices


def test_weekly_hand_example_with_good_friday():
    # 2024-03-25 (Mon) .. 2024-04-09 (Tue); Good Friday 2024-03-29: stock closed, crypto trades.
    index = pd.date_range("2024-03-25", "2024-04-09", freq="D", name="date")
    stock = pd.Series(np.arange(1.0, len(index) + 1), index=index)
    stock[stock.index.day_of_week >= 5] = NAN
    stock[pd.Timestamp("2024-03-29")] = NAN
    crypto = pd.Series(np.arange(101.0, 101.0 + len(index)), index=index)
    daily = pd.DataFrame({"STK": stock, "CRY": crypto}).rename_axis(columns="asset")
    weekly = resample_prices(daily, "W")
    # The last, incomplete week is labelled by its last real date, not the coming Friday.
    assert list(weekly.index.strftime("%Y-%m-%d")) == ["2024-03-29", "2024-04-05", "2024-04-09"]
    assert (weekly.index[:-1].day_of_week == 4).all()
    assert weekly.loc["2024-03-29", "STK"] == daily.loc["2024-03-28", "STK"] == 4.0
    assert weekly.loc["2024-03-29", "CRY"] == 105.0
    assert weekly.loc["2024-04-05", "STK"] == 12.0 and weekly.loc["2024-04-05", "CRY"] == 112.0
    # Partial last week (Sat..Tue): last valid value, labelled by the coming Friday.
    assert weekly.loc["2024-04-09", "STK"] == 16.0 and weekly.loc["2024-04-09", "CRY"] == 116.0


def test_weekly_multiasset_equals_last_valid_daily_value(multiasset):
    weekly = resample_prices(multiasset, "W")
    assert (weekly.index[:-1].day_of_week == 4).all()
    assert periods_per_year(weekly.index) == 52
    assert periods_per_year(multiasset.index) == 365
    for friday in pd.DatetimeIndex(["2018-03-30", "2020-04-10", "2024-03-29", "2022-06-10"]):
        week = multiasset.loc[friday - pd.Timedelta(days=6) : friday]
        for asset in ("SPY", "BTC", "GOLD"):
            assert weekly.loc[friday, asset] == week[asset].dropna().iloc[-1]
    # Good Friday 2024: SPY takes Thursday's close.
    assert weekly.loc["2024-03-29", "SPY"] == multiasset.loc["2024-03-28", "SPY"]


def test_month_quarter_labels_and_empty_periods_dropped():
    index = pd.DatetimeIndex(["2024-01-10", "2024-01-31", "2024-03-05", "2024-05-02"], name="d")
    daily = pd.DataFrame({"A": [1.0, 2.0, 3.0, NAN], "B": [5.0, NAN, 6.0, 7.0]}, index=index)
    monthly = resample_prices(daily, "M")
    # February has no row at all and is dropped; April too. May is incomplete (data ends on
    # the 2nd) and is labelled by its last real date.
    assert list(monthly.index.strftime("%Y-%m-%d")) == ["2024-01-31", "2024-03-31", "2024-05-02"]
    assert monthly.loc["2024-01-31"].tolist() == [2.0, 5.0]
    quarterly = resample_prices(daily, "Q")
    assert list(quarterly.index.strftime("%Y-%m-%d")) == ["2024-03-31", "2024-05-02"]
    assert quarterly.loc["2024-05-02", "A"] != quarterly.loc["2024-05-02", "A"]  # NaN
    pd.testing.assert_frame_equal(resample_prices(daily, "D"), daily)
    pd.testing.assert_frame_equal(resample_prices(daily, "ME"), monthly)


@pytest.mark.parametrize("bad", ["XYZ", "", 7])
def test_resample_bad_frequency(bad):
    with pytest.raises(DataError, match="frequency"):
        resample_prices(frame({"A": [1.0, 2.0]}), bad)


def test_resample_needs_datetime_index():
    with pytest.raises(DataError, match="DatetimeIndex"):
        resample_prices(pd.DataFrame({"A": [1.0, 2.0]}), "W")


# ---------------------------------------------------------------- returns


def test_simple_and_log_returns_by_hand():
    prices = frame({"A": [100.0, 110.0, 99.0, 99.0], "B": [50.0, NAN, 60.0, 30.0]})
    simple = prices_to_returns(prices)
    assert simple.index[0] == prices.index[1] and len(simple) == 3
    np.testing.assert_allclose(simple["A"], [0.10, -0.10, 0.0])
    # NaN on both sides of the missing price, no fill across it.
    assert simple["B"].isna().tolist() == [True, True, False]
    assert simple["B"].iloc[2] == pytest.approx(-0.5)
    log = prices_to_returns(prices, kind="log")
    np.testing.assert_allclose(log["A"], [math.log(1.1), math.log(0.9), 0.0])
    assert log["B"].iloc[2] == pytest.approx(math.log(0.5))
    with pytest.raises(DataError, match="'simple' or 'log'"):
        prices_to_returns(prices, kind="pct")


# ---------------------------------------------------------------- periods_per_year


@pytest.mark.parametrize(
    ("freq", "expected"),
    [("D", 365), ("B", 252), ("W-FRI", 52), ("ME", 12), ("QE", 4), ("YE", 1), ("2W-FRI", 26)],
)
def test_periods_per_year(freq, expected):
    assert periods_per_year(pd.date_range("2018-01-01", periods=40, freq=freq)) == expected


def test_periods_per_year_needs_two_dates():
    with pytest.raises(DataError, match="at least 2"):
        periods_per_year(pd.DatetimeIndex(["2024-01-01", "2024-01-01"]))
    with pytest.raises(DataError, match="intraday"):
        periods_per_year(pd.date_range("2024-01-01", periods=10, freq="h"))


def test_prepare_prices_is_clean_then_resample(multiasset):
    prepared = prepare_prices(multiasset)
    expected = resample_prices(clean_prices(multiasset, max_gap=5), "W")
    pd.testing.assert_frame_equal(prepared, expected)
    assert prepared.shape[1] == 34 and periods_per_year(prepared.index) == 52
    # AVAX's July 2020 quotes reach two weeks (the second carried from Sunday's fill); the
    # weeks of the gap are not tradable and no one-period return spans it.
    avax = prepared["AVAX"]
    assert avax.first_valid_index() == pd.Timestamp("2020-07-17")
    assert avax.loc["2020-07-31":"2020-09-18"].isna().all()
    assert avax.pct_change(fill_method=None).loc[:"2020-10-02"].notna().sum() == 2
