"""Price cleaning, resampling and returns: the data pipeline shared by every experiment.

All functions take and return wide frames (rows = dates, columns = assets, NaN = no price) as
produced by :mod:`dynafolio.data`.
"""

from __future__ import annotations

import warnings
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
# clean_prices warns when its pre-listing mask drops more than this share of an asset's prices.
_MAX_SILENT_LOSS = 0.05


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


def _clean_column(values: np.ndarray, max_gap: int, listing_gap: int) -> np.ndarray:
    """Apply the listing-date mask and the gap forward-fill to one column (a copy)."""
    out = values.copy()
    valid_pos = np.flatnonzero(~np.isnan(out))
    if valid_pos.size == 0:
        return out
    gaps = np.diff(valid_pos) - 1  # missing rows between consecutive prices
    long_gaps = np.flatnonzero(gaps > max(listing_gap, max_gap))
    start = valid_pos[long_gaps[-1] + 1] if long_gaps.size else valid_pos[0]
    stop = valid_pos[-1] + 1
    out[:start] = np.nan
    # Forward-fill the segment [listing, last price], then undo the fill inside every gap
    # longer than max_gap: such a gap is never partially filled. Trailing NaNs stay outside.
    seg = out[start:stop]
    missing = np.isnan(seg)
    pos = np.where(~missing, np.arange(seg.size), 0)
    np.maximum.accumulate(pos, out=pos)
    filled = seg[pos]
    run_length = np.zeros(seg.size, dtype=int)
    if missing.any():
        # Length of the whole gap each missing row belongs to.
        gap_id = np.cumsum(~missing)
        lengths = np.bincount(gap_id[missing], minlength=gap_id.max() + 1)
        run_length[missing] = lengths[gap_id[missing]]
    filled[missing & (run_length > max_gap)] = np.nan
    out[start:stop] = filled
    return out


def clean_prices(prices: pd.DataFrame, max_gap: int = 5, listing_gap: int = 30) -> pd.DataFrame:
    """Mask pre-listing fragments and forward-fill short interior gaps, per asset.

    Rule, per column (rows are counted at the frequency of ``prices``):

    1. *Listing date* = the first price after the last interior gap longer than
       ``max(listing_gap, max_gap)`` missing rows, or the first price when there is no such gap.
       Prices before it are set to NaN. This drops isolated early quotes (e.g. AVAX in
       ``multiasset`` has two values on 2020-07-13/14, then 69 missing days; it is listed
       from 2020-09-22) and, more generally,
       any history separated from the recent series by a long gap, so that each asset is
       continuous from its listing to its last price. A ``UserWarning`` names the assets for
       which this drops more than 5 % of the prices (usually ``listing_gap`` is too small for
       the calendar, e.g. ``listing_gap < 3`` on calendar-daily data masks stocks before their
       last weekend).
    2. Interior gaps of at most ``max_gap`` consecutive missing rows are forward-filled with
       the last price (a weekend/holiday carries the previous close). A longer gap is never
       partially filled (unlike ``DataFrame.ffill(limit=...)``): it stays NaN entirely, and the
       engine neither buys the asset then nor invents returns for it.
    3. Nothing is filled before the first price or after the last price (a delisted asset or
       a series that ends early, like TON in ``multiasset``, stays NaN).

    The default ``max_gap=5`` is the documented forward-fill limit: on daily data it covers a
    long weekend plus a holiday, never weeks of stale prices.

    Parameters
    ----------
    prices : pandas.DataFrame, shape (n_dates, n_assets)
        Wide prices with an ascending ``DatetimeIndex``; NaN = no price.
    max_gap : int, default 5
        Longest run of consecutive missing rows that is filled (>= 0; 0 fills nothing).
    listing_gap : int, default 30
        A gap longer than this many rows separates pre-listing fragments from the listed
        series (30 rows: a month of daily data).

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
    data = {}
    dropped = {}
    for col in prices.columns:
        raw = prices[col].to_numpy(dtype=np.float64, na_value=np.nan)
        data[col] = _clean_column(raw, max_gap, listing_gap)
        n_raw = int((~np.isnan(raw)).sum())
        n_lost = int((~np.isnan(raw) & np.isnan(data[col])).sum())
        # Isolated early quotes (AVAX: 2 of 1564) are the intended case; losing a real share of
        # the history means max_gap is too small for the data's calendar (e.g. max_gap < 3 on
        # calendar-daily data masks every stock before its last weekend).
        if n_lost > _MAX_SILENT_LOSS * n_raw:
            dropped[col] = (n_lost, n_raw)
    if dropped:
        lost = ", ".join(f"{c} ({n} of {t})" for c, (n, t) in dropped.items())
        warnings.warn(
            f"clean_prices: listing_gap={max(listing_gap, max_gap)} treats prices before a longer "
            f"gap as pre-listing and drops them for {lost}; raise listing_gap (weekends are 2 "
            "missing rows on calendar-daily data) if these are not pre-listing quotes",
            UserWarning,
            stacklevel=2,
        )
    return pd.DataFrame(data, index=prices.index.copy(), columns=prices.columns.copy())


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
        Apply to ``clean_prices(prices)`` to get listing dates after the pre-listing mask.
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
    if len(resampled) and resampled.index[-1] > prices.index[-1]:
        labels = resampled.index.to_numpy().copy()
        labels[-1] = prices.index[-1].to_datetime64()
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
