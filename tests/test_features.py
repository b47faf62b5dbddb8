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


def test_clean_fills_short_gap_keeps_leading_and_trailing_nan():
    raw = frame({"A": [NAN, NAN, 1.0, NAN, NAN, NAN, 2.0, 3.0, NAN, NAN]})
    out = clean_prices(raw, max_gap=5)
    expected = [NAN, NAN, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0, NAN, NAN]
    np.testing.assert_array_equal(out["A"].to_numpy(), expected)
    assert raw["A"].isna().sum() == 7  # input untouched
    pd.testing.assert_index_equal(out.index, raw.index)
    pd.testing.assert_index_equal(out.columns, raw.columns)


def test_clean_long_gap_is_not_partially_filled():
    # 7 missing rows > max_gap 5: ffill(limit=5) would fill 5 of them; we fill none. The gap
    # is shorter than listing_gap, so the earlier prices are kept.
    values = [1.0, 2.0] + [NAN] * 7 + [3.0, NAN, 4.0]
    raw = frame({"A": values, "B": [float(i + 1) for i in range(len(values))]})
    out = clean_prices(raw, max_gap=5)
    np.testing.assert_array_equal(out["A"].iloc[:2].to_numpy(), [1.0, 2.0])
    assert out["A"].iloc[2:9].isna().all()
    np.testing.assert_array_equal(out["A"].iloc[9:].to_numpy(), [3.0, 3.0, 4.0])
    assert raw["A"].ffill(limit=5).iloc[2:9].notna().sum() == 5  # what we must not do
    pd.testing.assert_series_equal(out["B"], raw["B"].astype(float))
    assert listing_dates(out)["A"] == raw.index[0]


def test_clean_gap_longer_than_listing_gap_masks_the_earlier_fragment():
    values = [1.0, 2.0] + [NAN] * 7 + [3.0, NAN, 4.0]
    raw = frame({"A": values, "B": [float(i + 1) for i in range(len(values))]})
    with pytest.warns(UserWarning, match=r"A \(2 of 4\)"):
        out = clean_prices(raw, max_gap=5, listing_gap=6)
    assert out["A"].iloc[:9].isna().all()
    np.testing.assert_array_equal(out["A"].iloc[9:].to_numpy(), [3.0, 3.0, 4.0])
    assert listing_dates(out)["A"] == raw.index[9]
    assert listing_dates(raw)["A"] == raw.index[0]


def test_clean_boundary_gap_equal_to_max_gap_is_filled():
    five = frame({"A": [1.0] + [NAN] * 5 + [2.0]})
    six = frame({"A": [1.0] + [NAN] * 6 + [2.0]})
    assert clean_prices(five, max_gap=5)["A"].notna().all()
    assert clean_prices(six, max_gap=5)["A"].notna().sum() == 2
    assert clean_prices(six, max_gap=6)["A"].notna().all()
    assert clean_prices(five, max_gap=0)["A"].isna().tolist() == [False] + [True] * 5 + [False]


def test_clean_warns_when_listing_gap_too_small_for_calendar(multiasset):
    with pytest.warns(UserWarning, match=r"SPY \(1759 of 1761\)"):
        clean_prices(multiasset, max_gap=1, listing_gap=1)


@pytest.mark.parametrize("bad", [-1, 2.5, True, "5"])
def test_clean_rejects_bad_max_gap(bad):
    with pytest.raises(DataError, match="max_gap"):
        clean_prices(frame({"A": [1.0, 2.0]}), max_gap=bad)


def test_clean_rejects_unsorted_dates():
    raw = frame({"A": [1.0, 2.0, 3.0]}).iloc[::-1]
    with pytest.raises(DataError, match="sort_index"):
        clean_prices(raw)


def _reference_clean(values: list[float], max_gap: int, listing_gap: int) -> list[float]:
    """Slow, literal transcription of the documented rule."""
    valid = [i for i, v in enumerate(values) if not math.isnan(v)]
    out = [NAN] * len(values)
    if not valid:
        return out
    start = valid[0]
    for a, b in zip(valid, valid[1:], strict=False):
        if b - a - 1 > max(listing_gap, max_gap):
            start = b
    for a, b in zip(valid, valid[1:], strict=False):
        if a < start:
            continue
        out[a] = values[a]
        if b - a - 1 <= max_gap:
            for i in range(a + 1, b):
                out[i] = values[a]
    out[valid[-1]] = values[valid[-1]]
    return out


@pytest.mark.filterwarnings("ignore:clean_prices")
@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.just(NAN), st.floats(1.0, 100.0)), min_size=1, max_size=40),
    st.integers(0, 6),
    st.integers(0, 10),
)
def test_clean_matches_reference_rule(values, max_gap, listing_gap):
    out = clean_prices(frame({"A": values}), max_gap=max_gap, listing_gap=listing_gap)["A"]
    np.testing.assert_array_equal(out.to_numpy(), _reference_clean(values, max_gap, listing_gap))


def test_clean_multiasset_avax_listing_and_weekend_fill(multiasset):
    out = clean_prices(multiasset)
    listed = listing_dates(out)
    assert listed["AVAX"] == pd.Timestamp("2020-09-22")
    assert pd.isna(out.loc["2020-07-13", "AVAX"]) and pd.isna(out.loc["2020-07-14", "AVAX"])
    assert listed["SOL"] == pd.Timestamp("2020-04-10")
    assert listed["SPY"] == pd.Timestamp("2018-01-02")  # not filled back to 2018-01-01
    # Saturday carries Friday's close; TON is not extended past 2024-12-07.
    assert out.loc["2018-01-06", "SPY"] == multiasset.loc["2018-01-05", "SPY"]
    assert out["TON"].last_valid_index() == pd.Timestamp("2024-12-07")
    assert out["SPY"].loc["2018-01-02":].notna().all()
    assert listing_dates(multiasset)["AVAX"] == pd.Timestamp("2020-07-13")


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
    # The pre-listing AVAX quotes of July 2020 do not reach the weekly frame.
    assert prepared["AVAX"].first_valid_index() == pd.Timestamp("2020-09-25")
