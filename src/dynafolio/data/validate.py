"""Checks on price frames that raise :class:`~dynafolio.errors.DataError` with actionable messages.

Every message says *what* is wrong, *where* (source, column, date and, when known, the row as the
user sees it in the file) and *how to fix it*.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from dynafolio.errors import DataError

__all__ = [
    "MAX_PRICE",
    "MAX_MOVE",
    "check_history",
    "check_n_assets",
    "format_date",
    "validate_prices",
]

#: Largest price accepted (a unit or typing error above it; prices near 1e308 overflow).
MAX_PRICE = 1e15
#: Largest factor between two consecutive prices of an asset (up or down): a millionfold
#: move from one row to the next is a data error (a missing decimal point, a unit change).
MAX_MOVE = 1e6


def format_date(ts: pd.Timestamp) -> str:
    """Format a timestamp as ``YYYY-MM-DD`` (with the time only when it is not midnight).

    Parameters
    ----------
    ts : pandas.Timestamp
        The timestamp to show in an error message.

    Returns
    -------
    str
        The formatted date.
    """
    if pd.isna(ts):
        return "NaT"
    ts = pd.Timestamp(ts)
    if ts == ts.normalize():
        return ts.strftime("%Y-%m-%d")
    return ts.isoformat()


def _where(source: str, column: str | None, label: str | None) -> str:
    """Build the "source, column 'X', line 17" prefix used by every message."""
    parts = [source]
    if column is not None:
        parts.append(f"column {column!r}")
    if label is not None:
        parts.append(label)
    return ", ".join(parts)


def validate_prices(
    prices: pd.DataFrame,
    source: str,
    *,
    row_labels: Mapping[int, str] | Sequence[str] | None = None,
) -> None:
    """Check that a wide price frame is usable; raise ``DataError`` otherwise.

    Unsorted dates are accepted (loaders sort afterwards); missing prices (NaN) are accepted.

    Parameters
    ----------
    prices : pandas.DataFrame, shape (n_dates, n_assets)
        Prices with a ``DatetimeIndex`` and one numeric column per asset; NaN means no price.
    source : str
        Where the prices come from (file name, dataset name); starts every message.
    row_labels : mapping or sequence of str, optional
        Position (0-based row of ``prices``) -> how the user finds that row, e.g. ``"line 17"``
        for a CSV file. When given, messages about a single cell name it.

    Raises
    ------
    DataError
        If the frame has no asset columns, fewer than 2 rows, a non-datetime index, duplicated
        dates or asset names, non-numeric columns, non-positive or infinite prices, or a column
        without any price.
    """
    if not isinstance(prices, pd.DataFrame):
        raise DataError(
            f"{source}: prices must be a pandas DataFrame (dates x assets), "
            f"got {type(prices).__name__}; build one with dynafolio.data.read_prices"
        )
    if prices.shape[1] == 0:
        raise DataError(
            f"{source}: no asset columns; add one price column per asset next to the date column"
        )
    if not isinstance(prices.index, pd.DatetimeIndex):
        raise DataError(
            f"{source}: the index must be dates (DatetimeIndex), got "
            f"{type(prices.index).__name__}; set it with df.set_index(pd.to_datetime(df['date']))"
        )
    if len(prices) < 2:
        raise DataError(
            f"{source}: only {len(prices)} date(s) with prices; at least 2 are needed to compute "
            "a return; provide a longer history"
        )
    dup_cols = prices.columns[prices.columns.duplicated()]
    if len(dup_cols) > 0:
        raise DataError(
            f"{source}: asset column {dup_cols[0]!r} appears more than once; "
            "rename or remove the duplicate"
        )

    def label(pos: int) -> str | None:
        return None if row_labels is None else row_labels[pos]

    if prices.index.hasnans:
        pos = int(np.flatnonzero(prices.index.isna())[0])
        where = label(pos) or f"row {pos}"
        raise DataError(f"{source}, {where}: the date is missing; give every row a date")
    dup_mask = prices.index.duplicated(keep=False)
    if dup_mask.any():
        positions = np.flatnonzero(dup_mask)
        first = prices.index[positions[0]]
        same = positions[prices.index[positions] == first]
        if row_labels is not None:
            rows = " and ".join(str(row_labels[int(p)]) for p in same)
            at = f" ({rows})"
        else:
            at = ""
        raise DataError(
            f"{source}: date {format_date(first)} appears {len(same)} times{at}; "
            "keep exactly one row per date"
        )

    for column in prices.columns:
        series = prices[column]
        if not (pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)):
            raise DataError(
                f"{_where(source, str(column), None)}: prices must be numbers, got dtype "
                f"{series.dtype}; convert with pd.to_numeric"
            )
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        valid = ~np.isnan(values)
        if not valid.any():
            raise DataError(
                f"{_where(source, str(column), None)}: the column has no prices at all; "
                "remove the column or fill in its prices"
            )
        bad = valid & ~(np.isfinite(values) & (values > 0))
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            date = format_date(prices.index[pos])
            row = label(pos)
            where = _where(source, str(column), row)
            raise DataError(
                f"{where} ({date}): price {float(values[pos])!r} is not a positive number; "
                "prices must be > 0 (leave the cell empty for a missing price)"
            )
        huge = valid & (values > MAX_PRICE)
        if huge.any():
            pos = int(np.flatnonzero(huge)[0])
            where = _where(source, str(column), label(pos))
            raise DataError(
                f"{where} ({format_date(prices.index[pos])}): price {float(values[pos])!r} is "
                f"above {MAX_PRICE:.0e}, beyond any traded price and too large for the engine's "
                "arithmetic; check the cell (a unit or decimal-point error?) or rescale the column"
            )
        _check_moves(values, valid, source, str(column), prices.index, label)


def _check_moves(values, valid, source, column, index, label) -> None:
    """Refuse a column whose prices never change, or that jumps a millionfold between rows."""
    prices = values[valid]
    if prices.size >= 2 and np.all(prices == prices[0]):
        raise DataError(
            f"{_where(source, column, None)}: every price is {float(prices[0])!r}; a constant "
            "price has no returns to estimate risk from; remove the column (uninvested weight "
            "is cash in a long-short portfolio) or supply its real prices"
        )
    if prices.size >= 2:
        factor = prices[1:] / prices[:-1]
        jump = np.flatnonzero((factor > MAX_MOVE) | (factor < 1.0 / MAX_MOVE))
        if jump.size:
            pos = int(np.flatnonzero(valid)[jump[0] + 1])
            where = _where(source, column, label(pos))
            raise DataError(
                f"{where} ({format_date(index[pos])}): the price moves from "
                f"{float(prices[jump[0]]):.6g} to {float(prices[jump[0] + 1]):.6g}, a factor of "
                f"{factor[jump[0]]:.3g} in one row; check the cell for a unit or "
                "decimal-point error"
            )


def check_history(prices: pd.DataFrame, lookback: int, source: str) -> None:
    """Check that there are enough rows for a lookback window plus one step.

    Parameters
    ----------
    prices : pandas.DataFrame, shape (n_dates, n_assets)
        Prices (or returns) at the frequency the lookback is counted in.
    lookback : int
        Number of past periods a strategy needs before its first decision.
    source : str
        What the data is (dataset/file name), used in the message.

    Raises
    ------
    DataError
        If ``len(prices) < lookback + 1``.
    """
    needed = int(lookback) + 1
    have = len(prices)
    if have < needed:
        raise DataError(
            f"{source}: a lookback of {lookback} periods needs at least {needed} rows but the "
            f"data has {have}; use a shorter lookback or more data (an earlier start date or a "
            "higher frequency)"
        )


def check_n_assets(
    n_available: int, n_required: int, what: str, *, hint: str | None = None
) -> None:
    """Check that enough assets are available for a strategy or step.

    Parameters
    ----------
    n_available : int
        Number of assets in the data.
    n_required : int
        Minimum number of assets ``what`` needs.
    what : str
        Who needs them, e.g. ``"strategy 'Top-K'"``.
    hint : str, optional
        How to fix it, e.g. ``"lower K or add assets"``; a generic hint is used when omitted.

    Raises
    ------
    DataError
        If ``n_available < n_required``.
    """
    if n_available < n_required:
        fix = hint or "lower the number of assets required or add assets"
        raise DataError(
            f"{what} needs at least {n_required} assets but the data has {n_available}; {fix}"
        )
