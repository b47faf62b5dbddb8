"""Read price files (CSV, gzipped CSV, Parquet; wide or long layout) into one wide frame.

The returned frame always has the same shape: a tz-naive ``DatetimeIndex`` named ``"date"``
(sorted ascending, unique), one ``float64`` column per asset (column index named ``"asset"``) and
NaN where there is no price. Rows without any price are dropped.

Errors name the file, the column and the row *as the user sees it*: for CSV the 1-based line
number in the file (the header is line 1), for Parquet the 0-based row index.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from dynafolio.data.parsing import (
    DATE_UNIT,
    missing_cells,
    normalise_header,
    parse_dates,
    parse_numbers,
)
from dynafolio.data.validate import format_date, validate_prices
from dynafolio.errors import DataError

__all__ = ["download_prices", "read_prices"]


_DATE_NAMES = ("date", "datetime", "timestamp")
_ASSET_NAMES = ("asset", "ticker", "symbol")
_PRICE_NAMES = ("price", "adj close", "close", "value")
_SUFFIXES = (".csv", ".csv.gz", ".parquet")


def _read_csv(path: Path, source: str) -> tuple[pd.DataFrame, list[str]]:
    """Read a CSV as text; return the body (header applied) and one 'line N' label per row."""
    try:
        # header=None keeps the header as row 0 so duplicated names are not silently mangled;
        # na_filter=False keeps the text so bad cells can be shown exactly as written;
        # skip_blank_lines=False keeps row positions equal to file lines.
        raw = pd.read_csv(
            path,
            header=None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            index_col=False,
            encoding="utf-8-sig",
        )
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{source}: the file is empty; write a header line and data rows") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{source}: cannot be read as CSV ({exc}); check the separator (',') and that every "
            "line has as many fields as the header"
        ) from exc
    if raw.empty:
        raise DataError(f"{source}: the file is empty; write a header line and data rows")
    header = ["" if pd.isna(h) else str(h).strip() for h in raw.iloc[0]]
    body = raw.iloc[1:].reset_index(drop=True)
    labels = [f"line {i + 2}" for i in range(len(body))]
    keep = []
    for i, name in enumerate(header):
        if name:
            keep.append(i)
        elif not missing_cells(body.iloc[:, i]).all():
            raise DataError(
                f"{source}, line 1: column {i + 1} has no name but holds values; "
                "give it a name (the asset ticker) in the header"
            )
        # An unnamed, empty column is a trailing-comma artefact: dropped.
    body = body.iloc[:, keep]
    body.columns = [header[i] for i in keep]
    return body, labels


def _read_parquet(path: Path, source: str) -> tuple[pd.DataFrame, list[str]]:
    """Read a Parquet file; a stored date (or text) index becomes a column, row numbers are
    dropped."""
    try:
        body = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(
            f"{source}: cannot be read as Parquet ({exc}); check that the file is a valid "
            "Parquet file"
        ) from exc
    index = body.index
    if isinstance(index, pd.MultiIndex):
        raise DataError(
            f"{source}: the Parquet index has {index.nlevels} levels; store one date column "
            "(wide) or date, asset and price columns (long), e.g. df.reset_index().to_parquet()"
        )
    if pd.api.types.is_numeric_dtype(index.dtype) or pd.api.types.is_bool_dtype(index.dtype):
        # Row numbers (a RangeIndex, or integers kept after filtering rows), never dates.
        names = [normalise_header(c) for c in body.columns]
        if not any(n in _DATE_NAMES for n in names):
            shown = f"{index.min()}..{index.max()}" if len(index) else "empty"
            raise DataError(
                f"{source}: no date column — the Parquet index holds numbers ({shown}), not "
                "dates, and no column is named date/datetime/timestamp; write the file with "
                "dates as the index or in a 'date' column"
            )
        body = body.reset_index(drop=True)
    else:
        body = body.reset_index(names=index.name or "date")
    body.columns = [str(c) for c in body.columns]
    labels = [f"row {i}" for i in range(len(body))]
    return body, labels


def _check_header(columns: list[str], source: str) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(columns):
        if name in seen:
            raise DataError(
                f"{source}: column {name!r} appears twice in the header (columns {seen[name] + 1} "
                f"and {i + 1}); rename or remove one"
            )
        seen[name] = i


def _find(columns: list[str], names: tuple[str, ...]) -> list[str]:
    return [c for c in columns if normalise_header(c) in names]


def _date_column(columns: list[str], date_column: str | None, source: str) -> tuple[str, str]:
    """Pick the date column; return it and a hint appended to date parse errors."""
    if date_column is not None:
        if date_column in columns:
            return date_column, ""
        matches = [c for c in columns if c.lower() == date_column.lower()]
        if len(matches) == 1:
            return matches[0], ""
        raise DataError(
            f"{source}: date column {date_column!r} not found; columns are {columns}; "
            "pass date_column= one of them"
        )
    named = _find(columns, _DATE_NAMES)
    if named:
        return named[0], ""
    return columns[0], (
        f" (no column is named date/datetime/timestamp, so the first column {columns[0]!r} was "
        "used as dates; pass date_column= to choose another)"
    )


def _dup_message(keys: pd.Series, labels: list[str]) -> tuple[int, str]:
    """Return the first duplicated position and 'line 5 and line 9' for all its occurrences."""
    dup = keys.duplicated(keep=False).to_numpy()
    first = int(np.flatnonzero(dup)[0])
    same = np.flatnonzero(dup & (keys == keys.iloc[first]).to_numpy())
    return first, " and ".join(labels[int(p)] for p in same)


def _wide(
    body: pd.DataFrame,
    labels: list[str],
    source: str,
    date_col: str,
    hint: str,
    date_format: str | None,
) -> pd.DataFrame:
    assets = [c for c in body.columns if c != date_col]
    if not assets:
        raise DataError(
            f"{source}: no asset columns next to the date column {date_col!r}; add one price "
            "column per asset (wide layout) or use columns date, asset, price (long layout)"
        )
    values = {a: parse_numbers(body[a], a, labels, source) for a in assets}
    prices = pd.DataFrame(values, index=pd.RangeIndex(len(body)))
    dates = parse_dates(body[date_col], date_col, labels, source, hint, date_format)
    has_price = prices.notna().any(axis=1).to_numpy()
    no_date = np.asarray(dates.isna()) & has_price
    if no_date.any():
        pos = int(np.flatnonzero(no_date)[0])
        raise DataError(
            f"{source}, column {date_col!r}, {labels[pos]}: the date is empty but the row has "
            "prices; fill in the date or delete the row"
        )
    # Rows without any price (blank lines, empty holidays) carry no information: dropped, which
    # also makes wide and long files of the same data load identically.
    rows = np.flatnonzero(has_price)
    kept_dates = dates[rows]
    keys = pd.Series(kept_dates)
    if keys.duplicated().any():
        first, where = _dup_message(keys, [labels[r] for r in rows])
        raise DataError(
            f"{source}, column {date_col!r}: date {format_date(kept_dates[first])} appears more "
            f"than once ({where}); keep exactly one row per date"
        )
    prices = prices.iloc[rows]
    prices.index = pd.DatetimeIndex(kept_dates, name="date")
    prices.columns = pd.Index(assets, name="asset")
    validate_prices(prices, source, row_labels=[labels[r] for r in rows])
    return prices


def _long_columns(columns: list[str], date_col: str, source: str) -> tuple[str, str]:
    assets = [c for c in _find(columns, _ASSET_NAMES) if c != date_col]
    price_cols = [c for c in _find(columns, _PRICE_NAMES) if c != date_col]
    if len(assets) != 1 or len(price_cols) != 1:
        problem = "several" if len(assets) > 1 or len(price_cols) > 1 else "no"
        raise DataError(
            f"{source}: long layout needs one asset column (asset/ticker/symbol) and one price "
            f"column (price/close/adj close/value) but {problem} candidates were found among "
            f"{columns}; rename the columns or keep only one of each"
        )
    return assets[0], price_cols[0]


def _long(
    body: pd.DataFrame,
    labels: list[str],
    source: str,
    date_col: str,
    hint: str,
    date_format: str | None,
) -> pd.DataFrame:
    asset_col, price_col = _long_columns(list(body.columns), date_col, source)
    values = parse_numbers(body[price_col], price_col, labels, source)
    dates = parse_dates(body[date_col], date_col, labels, source, hint, date_format)
    asset_missing = missing_cells(body[asset_col])
    assets = body[asset_col].astype(str).str.strip().to_numpy(dtype=object)
    blank = asset_missing & np.asarray(dates.isna())
    for mask, col, what in (
        (~blank & np.asarray(dates.isna()), date_col, "the date is empty"),
        (~blank & asset_missing, asset_col, "the asset name is empty"),
    ):
        if mask.any():
            pos = int(np.flatnonzero(mask)[0])
            raise DataError(
                f"{source}, column {col!r}, {labels[pos]}: {what}; fill it in or delete the row"
            )
    rows = np.flatnonzero(~blank)
    table = pd.DataFrame(
        {"date": dates[rows], "asset": assets[rows], "price": values[rows]},
        index=pd.RangeIndex(len(rows)),
    )
    row_labels = [labels[r] for r in rows]
    keys = table["date"].astype(str) + "\x00" + table["asset"]
    if keys.duplicated().any():
        first, where = _dup_message(keys, row_labels)
        raise DataError(
            f"{source}: asset {table['asset'].iloc[first]!r} has two prices for "
            f"{format_date(table['date'].iloc[first])} ({where}); keep one row per date and asset"
        )
    price = table["price"].to_numpy()
    bad = ~np.isnan(price) & (price <= 0)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        asset, date = table["asset"].iloc[pos], format_date(table["date"].iloc[pos])
        raise DataError(
            f"{source}, column {price_col!r}, {row_labels[pos]} ({asset} on {date}): price "
            f"{float(price[pos])!r} is not a positive number; prices must be > 0 (leave the cell "
            "empty for a missing price)"
        )
    order = pd.unique(table["asset"].to_numpy())
    wide = table.pivot(index="date", columns="asset", values="price")
    wide = wide.reindex(columns=list(order)).astype(np.float64)
    wide = wide.loc[wide.notna().any(axis=1)]
    wide.index = pd.DatetimeIndex(wide.index, name="date").as_unit(DATE_UNIT)
    wide.columns = pd.Index([str(a) for a in order], name="asset")
    validate_prices(wide, source)
    return wide


def read_prices(
    path: str | os.PathLike[str],
    *,
    layout: Literal["auto", "wide", "long"] = "auto",
    date_column: str | None = None,
    date_format: str | None = None,
) -> pd.DataFrame:
    """Read a price file into a wide frame of prices.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv``, ``.csv.gz`` or ``.parquet`` file.
    layout : {"auto", "wide", "long"}, default "auto"
        ``"wide"``: a date column plus one price column per asset. ``"long"``: columns date,
        asset (or ticker/symbol) and price (or close/adj close/value), names case-insensitive.
        ``"auto"`` picks long when the file has exactly those three columns, else wide.
    date_column : str, optional
        Name of the date column. By default the column named date/datetime/timestamp (any
        case), else the first column.
    date_format : str, optional
        ``strptime`` format of the dates (e.g. ``"%d/%m/%Y"``). Without it, ISO 8601 is read
        directly and other layouts are detected; dates that read two ways (``01/02/2020``)
        are refused as ambiguous.

    Returns
    -------
    pandas.DataFrame, shape (n_dates, n_assets)
        Sorted, unique, tz-naive ``DatetimeIndex`` named ``"date"``; ``float64`` columns named by
        asset (column index named ``"asset"``); NaN = no price. Rows without any price are
        dropped. Empty cells and NaN/NA/N/A/null/None are read as missing.

    Raises
    ------
    DataError
        File not found, unsupported extension, missing date column, unparseable, ambiguous
        or numeric dates,
        duplicated dates (or date/asset pairs), non-numeric or non-positive prices, columns
        without any price, fewer than 2 dates. The message names the file, column and line
        (CSV: 1-based line number, header = line 1; Parquet: 0-based row).
    """
    file = Path(path)
    source = str(path)
    if layout not in ("auto", "wide", "long"):
        raise DataError(f"{source}: layout must be 'auto', 'wide' or 'long', got {layout!r}")
    name = file.name.lower()
    if not name.endswith(_SUFFIXES):
        raise DataError(
            f"{source}: unsupported file type; use one of {', '.join(_SUFFIXES)} "
            "(convert Excel sheets with df.to_csv)"
        )
    if not file.is_file():
        raise DataError(f"{source}: file not found; check the path (cwd is {os.getcwd()})")
    if name.endswith(".parquet"):
        body, labels = _read_parquet(file, source)
    else:
        body, labels = _read_csv(file, source)
    columns = list(body.columns)
    _check_header(columns, source)
    if not columns:
        raise DataError(f"{source}: no columns; write a header line with a date column")
    date_col, hint = _date_column(columns, date_column, source)
    if layout == "auto":
        rest = [c for c in columns if c != date_col]
        is_long = (
            len(columns) == 3
            and len(_find(rest, _ASSET_NAMES)) == 1
            and len(_find(rest, _PRICE_NAMES)) == 1
        )
        layout = "long" if is_long else "wide"
    if layout == "long":
        frame = _long(body, labels, source, date_col, hint, date_format)
    else:
        frame = _wide(body, labels, source, date_col, hint, date_format)
    return frame.sort_index(kind="stable")


def download_prices(tickers: list[str], start: str, end: str) -> pd.DataFrame:
    """Download auto-adjusted daily closes from Yahoo Finance (needs the optional yfinance).

    Parameters
    ----------
    tickers : list of str
        Yahoo symbols, e.g. ``["SPY", "TLT", "BTC-USD"]``.
    start, end : str
        ``YYYY-MM-DD``; ``end`` is exclusive (yfinance convention).

    Returns
    -------
    pandas.DataFrame, shape (n_dates, n_assets)
        Same shape as :func:`read_prices`; columns in the order of ``tickers``.

    Raises
    ------
    DataError
        If yfinance is not installed, the download fails or returns no prices.
    """
    try:
        import yfinance  # optional dependency: imported on use only
    except ImportError as exc:
        raise DataError(
            "download_prices needs the optional package yfinance, which is not installed; "
            "install it with: pip install 'dynafolio[online]'"
        ) from exc
    tickers = [str(t) for t in tickers]
    if not tickers:
        raise DataError("download_prices: no tickers given; pass e.g. ['SPY', 'TLT']")
    source = f"Yahoo Finance download of {tickers} {start}..{end}"
    try:
        raw = yfinance.download(
            tickers, start=start, end=end, auto_adjust=True, progress=False, group_by="column"
        )
    except Exception as exc:  # network and parsing errors of yfinance are not typed
        raise DataError(
            f"{source} failed ({exc}); check the network connection and the ticker symbols"
        ) from exc
    if raw is None or raw.empty:
        raise DataError(f"{source} returned no data; check the ticker symbols and the date range")
    close = raw["Close"]
    if isinstance(close, pd.Series):
        close = close.to_frame(tickers[0])
    missing = [t for t in tickers if t not in close.columns]
    if missing:
        raise DataError(f"{source}: no prices for {missing}; check these ticker symbols")
    prices = close[tickers].astype(np.float64)
    index = pd.DatetimeIndex(prices.index)
    if index.tz is not None:
        index = index.tz_localize(None)
    prices.index = pd.DatetimeIndex(index, name="date").as_unit(DATE_UNIT)
    prices.columns = pd.Index(tickers, name="asset")
    prices = prices.loc[prices.notna().any(axis=1)].sort_index()
    validate_prices(prices, source)
    return prices
