"""Cells of a price file read as data: numbers, dates and missing markers, with errors that
name the file, the column and the row as the user sees it (see :mod:`dynafolio.data.io`)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from dynafolio.errors import DataError

# pandas 3 defaults to microsecond resolution (to_datetime, date_range); parquet round-trips may
# come back in ns, so every loader output is converted to one unit to compare equal.
DATE_UNIT = "us"

_NA_MARKERS = frozenset({"", "na", "n/a", "nan", "-nan", "null", "none", "#n/a", "<na>", "nat"})
# "2020-08-31 00:00:00-04:00" -> "2020-08-31 00:00:00": keep the wall-clock date shown in the file
# rather than converting to UTC, which could move the date by one day.
_TZ_SUFFIX = re.compile(r"^(.*\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|UTC|[+-]\d{2}:?\d{2})$")


def normalise_header(name: str) -> str:
    """Normalise a header for role matching: 'Adj_Close ' -> 'adj close'."""
    return " ".join(str(name).replace("_", " ").strip().lower().split())


def missing_cells(col: pd.Series) -> np.ndarray:
    """Boolean mask of cells that mean "no value" (NaN or a common NA marker as text)."""
    mask = col.isna().to_numpy().copy()
    if col.dtype == object or pd.api.types.is_string_dtype(col):
        text = col.astype(str).str.strip().str.lower()
        mask |= text.isin(_NA_MARKERS).to_numpy()
    return mask


def parse_numbers(col: pd.Series, name: str, labels: list[str], source: str) -> np.ndarray:
    """Parse one column as float64, naming the first cell that is not a number."""
    missing = missing_cells(col)
    if pd.api.types.is_bool_dtype(col):
        raise DataError(
            f"{source}, column {name!r}: holds true/false values, not prices; "
            "remove the column or store prices as numbers"
        )
    if pd.api.types.is_numeric_dtype(col):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    else:
        text = col.astype(str).str.strip()
        values = pd.to_numeric(text.where(~missing), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan, copy=True
        )
        bad = ~missing & np.isnan(values)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{source}, column {name!r}, {labels[pos]}: {col.iloc[pos]!r} is not a number; "
                "fix the cell (use '.' as decimal separator, no thousands separator) or leave it "
                "empty for a missing price"
            )
    values[missing] = np.nan
    inf = np.isinf(values)
    if inf.any():
        pos = int(np.flatnonzero(inf)[0])
        raise DataError(
            f"{source}, column {name!r}, {labels[pos]}: {col.iloc[pos]!r} is not a finite number; "
            "replace it with the price or leave the cell empty"
        )
    return values


#: Non-ISO date layouts tried when a file's dates are not ISO 8601. Day-first and month-first
#: layouts are both tried: a file that reads both ways (every day <= 12) is refused as
#: ambiguous rather than guessed.
_DATE_FORMATS = tuple(
    date + time
    for date in (
        "%m/%d/%Y",
        "%d/%m/%Y",
        "%Y/%m/%d",
        "%m-%d-%Y",
        "%d-%m-%Y",
        "%d.%m.%Y",
        "%Y.%m.%d",
        "%m/%d/%y",
        "%d/%m/%y",
        "%d.%m.%y",
        "%d %b %Y",
        "%b %d %Y",
        "%b %d, %Y",
        "%d-%b-%Y",
    )  # fmt: skip
    for time in ("", " %H:%M", " %H:%M:%S")
)
#: Years a price file may plausibly hold; others mean the column is not dates.
_YEARS = (1900, 2200)
_DIGITS = re.compile(r"^[+-]?\d+(\.\d*)?$")


def parse_dates(
    col: pd.Series,
    name: str,
    labels: list[str],
    source: str,
    hint: str,
    date_format: str | None = None,
) -> pd.DatetimeIndex:
    """Parse the date column (NaT where the cell is empty), naming the first unparseable cell.

    ISO 8601 (``2020-01-31``) is read directly. Any other layout must read the whole column
    one way only: ``31/01/2020`` is day-first, ``01/31/2020`` month-first, and a file whose
    dates read both ways (``01/02/2020``) is refused unless ``date_format`` says which.
    Numbers (``1000``, ``0.5``) are refused rather than read as years.
    """
    missing = missing_cells(col)
    where = f"{source}, column {name!r}"
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        # Wall-clock date as stored, consistent with the text path below.
        parsed = pd.DatetimeIndex(col).tz_localize(None)
    elif pd.api.types.is_datetime64_dtype(col):
        parsed = pd.DatetimeIndex(col)
    elif pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        shown = col[~missing].iloc[0] if (~missing).any() else None
        raise DataError(
            f"{where}: holds numbers (e.g. {shown!r}), not dates{hint}; store dates as text "
            "(YYYY-MM-DD) or as a datetime column — Unix timestamps can be converted with "
            "pd.to_datetime(values, unit='s')"
        )
    else:
        text = col.astype(str).str.strip().str.replace(_TZ_SUFFIX, r"\1", regex=True)
        text = text.where(~missing)
        parsed = _parse_text_dates(text, missing, where, labels, hint, date_format)
    if parsed.tz is not None:
        parsed = parsed.tz_localize(None)
    years = parsed.year[~np.asarray(parsed.isna())]
    outside = (years < _YEARS[0]) | (years > _YEARS[1])
    if outside.any():
        pos = int(np.flatnonzero(~np.asarray(parsed.isna()))[np.flatnonzero(outside)[0]])
        raise DataError(
            f"{where}, {labels[pos]}: {col.iloc[pos]!r} reads as the year {parsed[pos].year}, "
            f"outside {_YEARS[0]}..{_YEARS[1]}; this column does not hold dates{hint} — "
            "check that the date column is the one intended (date_column=...)"
        )
    return parsed.as_unit(DATE_UNIT)


def _parse_text_dates(
    text: pd.Series,
    missing: np.ndarray,
    where: str,
    labels: list[str],
    hint: str,
    date_format: str | None,
) -> pd.DatetimeIndex:
    present = ~missing
    if date_format is not None:
        parsed = pd.DatetimeIndex(pd.to_datetime(text, format=date_format, errors="coerce"))
        bad = np.asarray(parsed.isna()) & present
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{where}, {labels[pos]}: {text.iloc[pos]!r} does not match the date format "
                f"{date_format!r}; fix the cell or the format (strptime codes, e.g. %d/%m/%Y)"
            )
        return parsed
    numeric = text[present].str.fullmatch(_DIGITS).fillna(False)
    # 8 digits are the compact ISO form YYYYMMDD; other bare numbers are not dates.
    compact = text[present].str.fullmatch(r"\d{8}").fillna(False)
    if (numeric & ~compact).any():
        pos = int(np.flatnonzero(present)[np.flatnonzero((numeric & ~compact).to_numpy())[0]])
        raise DataError(
            f"{where}, {labels[pos]}: {text.iloc[pos]!r} is a number, not a date{hint}; write "
            "dates as YYYY-MM-DD"
        )
    parsed = pd.DatetimeIndex(pd.to_datetime(text, format="ISO8601", errors="coerce"))
    if not (np.asarray(parsed.isna()) & present).any():
        return parsed
    # Not ISO: find the layouts that read every cell. Only the distinct values are parsed.
    values = pd.Series(pd.unique(text[present].to_numpy()))
    readings = {}
    for fmt in _DATE_FORMATS:
        attempt = pd.to_datetime(values, format=fmt, errors="coerce")
        if attempt.notna().all():
            readings[fmt] = attempt
    if not readings:
        bad = np.asarray(parsed.isna()) & present
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where}, {labels[pos]}: {text.iloc[pos]!r} is not a date{hint}; write dates as "
            "YYYY-MM-DD, or give the format (--date-format / data.date_format, e.g. %d/%m/%Y)"
        )
    first, *others = readings
    differ = [f for f in others if not readings[f].equals(readings[first])]
    if differ:
        reference = readings[first]
        i = int(np.flatnonzero((readings[differ[0]] != reference).to_numpy())[0])
        example = values.iloc[i]
        ways = "; ".join(f"{fmt} gives {readings[fmt].iloc[i].date()}" for fmt in [first, *differ])
        raise DataError(
            f"{where}: the dates are ambiguous — {example!r} reads as more than one date "
            f"({ways}); state the format with --date-format or data.date_format "
            "(e.g. '%d/%m/%Y' for day-first), or write dates as YYYY-MM-DD"
        )
    return pd.DatetimeIndex(pd.to_datetime(text, format=first, errors="coerce"))
