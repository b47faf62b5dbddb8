"""Price cleaning, resampling and returns: the data pipeline shared by every experiment.

All functions take and return wide frames (rows = dates, columns = assets, NaN = no price) as
produced by :mod:`dynafolio.data`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from dynafolio.errors import DataError

__all__ = [
    "clean_prices",
    "listing_dates",
    "periods_per_year",
    "prepare_prices",
    "prices_to_returns",
    "resample_prices",
    "rolling_volatility",
    "rsi",
]

# Short names accepted by resample_prices -> pandas (>= 2.2) offset aliases.
_FREQUENCIES = {"W": "W-FRI", "M": "ME", "Q": "QE", "Y": "YE"}


def _check_frame(prices: pd.DataFrame, what: str) -> None:
    """Raise DataError unless ``prices`` is a frame with a sorted DatetimeIndex."""
    if not isinstance(prices, pd.DataFrame):
        raise DataError(f"{what} expects a DataFrame of prices, got {type(prices).__name__}")
    if not isinstance(prices.index, pd.DatetimeIndex):
        raise DataError(
            f"{what} needs dates as the index (DatetimeIndex), got {type(prices.index).__name__}; "
            "load prices with dynafolio.data.read_prices or set the index with pd.to_datetime"
        )
    if not prices.index.is_monotonic_increasing:
        raise DataError(f"{what} needs dates in ascending order; call prices.sort_index() first")


def clean_prices(prices: pd.DataFrame, max_gap: int = 5) -> pd.DataFrame:
    """Carry each asset's last price over short gaps — a causal rule, per asset.

    Rule, per column (rows are counted at the frequency of ``prices``):

    1. An asset is *listed* from its first valid price; nothing is filled before it.
    2. After a price, up to ``max_gap`` consecutive missing rows carry that price (a weekend or
       a holiday carries the previous close). Row ``max_gap + 1`` of a longer gap and the rows
       after it stay NaN: the asset is *not tradable* there. Trading resumes with the next
       real price.
    3. Whether a row is filled depends only on that row and the rows before it — never on the
       gap's total length, on the last price of the series or on anything later. Cleaning the
       prices up to any date therefore gives exactly the first rows of cleaning all of them,
       which is what makes a decision at ``t`` independent of the data after ``t`` (tested).

    A long gap thus does not erase an asset's earlier history (a halt, a vendor outage, a
    relisting); a position held through it is valued at the last price while it lasts and
    earns the move from that price once prices resume (the engine's carried returns, see
    :meth:`dynafolio.history.MarketHistory.carried_returns`). Isolated early quotes (AVAX in
    ``multiasset``: 2020-07-13/14, then 69 missing days) make the asset listed early; the
    estimators ignore it until it has enough returns (``min_coverage``), and the one-period
    returns across the gap are NaN, so no model learns from a return spanning it. A series
    that ends early (TON) is carried ``max_gap`` rows past its last price, then stops.

    Parameters
    ----------
    prices : pandas.DataFrame, shape (n_dates, n_assets)
        Wide prices with an ascending ``DatetimeIndex``; NaN = no price.
    max_gap : int, default 5
        Most consecutive missing rows that carry the last price (>= 0; 0 fills nothing). The
        default covers a long weekend plus a holiday on daily data, never weeks of stale prices.

    Returns
    -------
    pandas.DataFrame, shape (n_dates, n_assets)
        Cleaned float64 prices, same index and columns.

    Raises
    ------
    DataError
        If ``prices`` is not a date-indexed ascending frame or ``max_gap`` is not an int >= 0.
    """
    _check_frame(prices, "clean_prices")
    if isinstance(max_gap, bool) or not isinstance(max_gap, int | np.integer) or max_gap < 0:
        raise DataError(
            f"clean_prices: max_gap must be a whole number of rows >= 0, got {max_gap!r}; "
            "the default 5 fills a long weekend plus a holiday on daily data"
        )
    values = prices.astype(np.float64)
    if max_gap == 0:
        return values.copy()
    # ffill(limit=n) fills the first n rows of every gap and leaves the rest: exactly rule 2,
    # and causal by construction (a forward fill only looks back).
    return values.ffill(limit=int(max_gap))


def listing_dates(prices: pd.DataFrame) -> pd.Series:
    """First date with a price, per asset.

    Parameters
    ----------
    prices : pandas.DataFrame, shape (n_dates, n_assets)
        Wide prices with a ``DatetimeIndex``.

    Returns
    -------
    pandas.Series, shape (n_assets,)
        Index = the asset columns, values = first valid date (NaT for an asset with no price).
        With :func:`clean_prices` this is the listing date: an asset is listed from its
        first price.
    """
    if not isinstance(prices, pd.DataFrame) or not isinstance(prices.index, pd.DatetimeIndex):
        raise DataError("listing_dates expects a DataFrame of prices with a DatetimeIndex")
    firsts = [prices[col].first_valid_index() for col in prices.columns]
    values = pd.DatetimeIndex([pd.NaT if d is None else d for d in firsts]).as_unit(
        prices.index.unit
    )
    return pd.Series(values, index=prices.columns.copy(), name="listing_date")


def resample_prices(prices: pd.DataFrame, frequency: str) -> pd.DataFrame:
    """Sample prices at a lower frequency, taking the last available close of each period.

    Parameters
    ----------
    prices : pandas.DataFrame, shape (n_dates, n_assets)
        Wide prices with an ascending ``DatetimeIndex``.
    frequency : str
        ``"D"``: unchanged (a copy). ``"W"``: weeks ending Friday, labelled by the Friday
        (``"W-FRI"``). ``"M"``: month end (``"ME"``). ``"Q"``: quarter end (``"QE"``). ``"Y"``:
        year end (``"YE"``). Any other pandas offset alias (e.g. ``"W-WED"``, ``"2W-FRI"``,
        ``"BME"``) is passed to ``DataFrame.resample`` unchanged.

    Returns
    -------
    pandas.DataFrame, shape (n_periods, n_assets)
        Per column, the last non-NaN price within each period (so a Thursday close is used when
        the Friday is a holiday), labelled by the period end — except an incomplete last
        period, labelled by the last date of the data. Periods in which every column is NaN
        are dropped.

    Raises
    ------
    DataError
        If ``frequency`` is not a valid pandas frequency or ``prices`` is not date-indexed.
    """
    _check_frame(prices, "resample_prices")
    if not isinstance(frequency, str) or not frequency.strip():
        raise DataError(
            f"resample_prices: frequency must be a string such as 'D', 'W', 'M' or 'Q', "
            f"got {frequency!r}"
        )
    key = frequency.strip()
    if key.upper() == "D":
        return prices.copy()
    rule = _FREQUENCIES.get(key.upper(), key)
    try:
        resampled = prices.resample(rule).last()
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"resample_prices: unknown frequency {frequency!r}; use 'D', 'W', 'M', 'Q' "
            "or a pandas offset alias such as 'W-FRI', 'ME', 'QE'"
        ) from exc
    resampled = resampled.dropna(how="all")
    # The last period is usually incomplete (data ending on a Tuesday would otherwise be
    # labelled by the following Friday, a date with no data): label it by its last real date.
    labels = resampled.index.to_numpy().copy()
    if len(labels) and resampled.index[-1] > prices.index[-1]:
        labels[-1] = prices.index[-1].to_datetime64()
    # No ``freq`` on the result: whether the last label was moved depends on where the data
    # ends, and the index must not differ between a full and a truncated sample.
    resampled.index = pd.DatetimeIndex(labels, name=resampled.index.name)
    return resampled


def prices_to_returns(
    prices: pd.DataFrame, kind: Literal["simple", "log"] = "simple"
) -> pd.DataFrame:
    """Period returns from prices, without filling anything.

    Parameters
    ----------
    prices : pandas.DataFrame, shape (n_dates, n_assets)
        Wide prices, ascending dates; NaN = no price.
    kind : {"simple", "log"}, default "simple"
        ``"simple"``: ``P_t / P_{t-1} - 1``; ``"log"``: ``ln(P_t / P_{t-1})``.

    Returns
    -------
    pandas.DataFrame, shape (n_dates - 1, n_assets)
        Returns labelled by the end date ``t`` (the first row is dropped). NaN where either
        ``P_t`` or ``P_{t-1}`` is missing.
    """
    if kind not in ("simple", "log"):
        raise DataError(f"prices_to_returns: kind must be 'simple' or 'log', got {kind!r}")
    if not isinstance(prices, pd.DataFrame):
        raise DataError(
            f"prices_to_returns expects a DataFrame of prices, got {type(prices).__name__}"
        )
    prices = prices.astype(np.float64)
    # Division of aligned frames keeps NaN on either side: no implicit fill (unlike pct_change).
    ratio = prices / prices.shift(1)
    returns = np.log(ratio) if kind == "log" else ratio - 1.0
    return returns.iloc[1:]


def periods_per_year(index: pd.DatetimeIndex) -> int:
    """Number of periods per year implied by the median spacing of the dates.

    Parameters
    ----------
    index : pandas.DatetimeIndex, shape (n_dates,)
        Dates of a price or return series (a DataFrame/Series is accepted: its index is used).

    Returns
    -------
    int
        365 for daily data that includes weekends (crypto calendar), 252 for daily business
        days, 52 weekly, 12 monthly, 4 quarterly, 1 yearly; otherwise ``round(365.25 / d)`` for
        a median spacing of ``d`` days.

    Raises
    ------
    DataError
        If there are fewer than 2 distinct dates or the spacing is below one day.
    """
    if isinstance(index, pd.DataFrame | pd.Series):
        index = index.index
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(f"periods_per_year needs a DatetimeIndex, got {type(index).__name__}")
    dates = index.dropna().unique().sort_values()
    if len(dates) < 2:
        raise DataError(
            f"periods_per_year needs at least 2 distinct dates to measure the spacing, got "
            f"{len(dates)}; provide a longer series"
        )
    spacing = np.diff(dates.to_numpy()) / np.timedelta64(1, "D")
    days = float(np.median(spacing))
    if days < 0.99:
        raise DataError(
            f"periods_per_year: median spacing is {days * 24:.1f} hours; intraday data is not "
            "supported, resample to daily first with resample_prices(prices, '1D')"
        )
    if days <= 1.5:
        return 365 if bool((dates.day_of_week >= 5).any()) else 252
    for low, high, periods in ((4, 10, 52), (25, 35, 12), (80, 100, 4), (340, 390, 1)):
        if low <= days <= high:
            return periods
    return max(1, round(365.25 / days))


def prepare_prices(prices: pd.DataFrame, frequency: str = "W", max_gap: int = 5) -> pd.DataFrame:
    """Clean prices at their source frequency, then resample: the pipeline of the experiments.

    Parameters
    ----------
    prices : pandas.DataFrame, shape (n_dates, n_assets)
        Raw wide prices (e.g. from :func:`dynafolio.data.load_dataset`).
    frequency : str, default "W"
        Target frequency, see :func:`resample_prices`.
    max_gap : int, default 5
        Forward-fill limit in source rows, see :func:`clean_prices`.

    Returns
    -------
    pandas.DataFrame, shape (n_periods, n_assets)
        Cleaned, resampled prices.
    """
    return resample_prices(clean_prices(prices, max_gap=max_gap), frequency)


def _check_window(window: int, what: str) -> None:
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
        raise DataError(f"{what}: window must be a whole number of periods >= 1, got {window!r}")


def rsi(prices: pd.DataFrame, window: int = 14) -> pd.DataFrame:
    """Relative Strength Index with Wilder's smoothing, per asset.

    ``RSI = 100 − 100 / (1 + avg_gain / avg_loss)``. The first averages of gains and losses
    are the simple means of the first ``window`` price changes; after that each average is
    updated as ``avg_t = (avg_{t−1}·(window − 1) + x_t) / window`` (an exponential average
    with ``alpha = 1 / window``). Causal: the value at ``t`` uses prices up to ``t`` only.

    Parameters
    ----------
    prices : pandas.DataFrame, shape (n_dates, n_assets)
        Wide prices, ascending dates; NaN = no price.
    window : int, default 14
        Smoothing period in rows.

    Returns
    -------
    pandas.DataFrame, shape (n_dates, n_assets)
        Values in ``[0, 100]``; 100 when there was no loss in the average, 50 when prices did
        not move at all. NaN during the warm-up (until ``window`` changes have been seen, i.e.
        the first ``window`` rows after the first price) and wherever the price is NaN. After
        an interior gap the averages resume from their last values.
    """
    _check_window(window, "rsi")
    prices = prices.astype(np.float64)
    change = prices.diff()
    averages = []
    for moves in (change.clip(lower=0.0), -change.clip(upper=0.0)):
        seed = moves.rolling(window).mean()
        # Only the first full window seeds Wilder's recursion; rows before it stay NaN, so
        # the exponential average below starts exactly at that simple mean.
        first = seed.notna() & (seed.notna().cumsum() == 1)
        started = first.cumsum() > 0
        start_values = moves.where(started & ~first).mask(first, seed)
        smoothed = start_values.ewm(alpha=1.0 / window, adjust=False).mean()
        averages.append(smoothed.where(started))
    gain, loss = averages
    with np.errstate(divide="ignore", invalid="ignore"):
        values = 100.0 - 100.0 / (1.0 + gain / loss)
    # 0/0 (no movement at all over the average) is neither overbought nor oversold.
    values = values.mask(gain.eq(0.0) & loss.eq(0.0), 50.0)
    return values.where(prices.notna() & gain.notna())


def rolling_volatility(returns: pd.DataFrame, window: int = 20) -> pd.DataFrame:
    """Realised volatility: the rolling sample standard deviation of returns, per asset.

    Parameters
    ----------
    returns : pandas.DataFrame, shape (n_dates, n_assets)
        Per-period returns (simple or log), ascending dates; NaN = no return.
    window : int, default 20
        Rows per window; the value at ``t`` uses rows ``t − window + 1 .. t`` (causal).

    Returns
    -------
    pandas.DataFrame, shape (n_dates, n_assets)
        Standard deviation with ``ddof=1``, in return units **per period** (not annualised;
        multiply by ``sqrt(periods_per_year)`` for that). NaN when any return in the window
        is NaN, including the first ``window − 1`` rows.
    """
    _check_window(window, "rolling_volatility")
    if window < 2:
        raise DataError("rolling_volatility: window must be >= 2 for a sample std (ddof=1)")
    return returns.astype(np.float64).rolling(window, min_periods=window).std(ddof=1)
