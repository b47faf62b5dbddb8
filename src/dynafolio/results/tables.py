"""Analysis tables hold numbers; the report decides how they read.

A study builds its tables with :func:`analysis_table`: every cell a number (or a label where
the cell names something), and, beside the frame, how each column is shown — a signed
difference, a p-value, a share — an interval's two ends, and a mean's spread over seeds. The
CSV files of a run keep the numbers; :func:`dynafolio.report.tables.format_analysis` turns
them into text for the HTML report and the terminal.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import pandas as pd

__all__ = ["ColumnFormat", "analysis_table", "column_formats"]

#: How one column is shown: ``number`` (two decimals, the default for numbers), ``signed``
#: (+0.12), ``signed3`` (+0.123), ``signed4`` (+0.0123), ``percent`` (12%),
#: ``signed_percent`` (+12.3%), ``weight`` (12.3%), ``p`` (0.042, "<0.001"), ``count`` (an
#: integer), ``text`` (as it is).
ColumnFormat = Literal[
    "number", "signed", "signed3", "signed4", "percent", "signed_percent", "weight", "p",
    "count", "text",
]  # fmt: skip


def analysis_table(
    rows: Mapping[Hashable, Mapping[str, Any]],
    *,
    caption: str = "",
    index_name: str | Sequence[str] | None = None,
    formats: Mapping[str, ColumnFormat] | None = None,
    intervals: Mapping[str, tuple[str, str]] | None = None,
    spreads: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per key of ``rows`` (in order), one column per key of its mapping.

    Parameters
    ----------
    index_name : str or sequence of str, optional
        The index's name; one name per level where ``rows`` is keyed by tuples.
    formats : mapping, optional
        Column -> :data:`ColumnFormat`; numeric columns not named show as ``number``.
    intervals : mapping, optional
        Shown label -> ``(low column, high column)``: the two ends are shown as one column
        ``[low, high]`` (in the low end's format) and stay two columns in the CSV.
    spreads : mapping, optional
        Column -> the column of its standard deviation over seeds, shown as ``mean ± sd``.
    """
    frame = pd.DataFrame.from_dict(dict(rows), orient="index")
    if isinstance(index_name, str) or index_name is None:
        frame.index.name = index_name
    else:  # rows keyed by tuples: one index level per name
        frame.index = pd.MultiIndex.from_tuples(list(frame.index), names=list(index_name))
    frame.attrs["caption"] = caption
    frame.attrs["formats"] = dict(formats or {})
    frame.attrs["intervals"] = dict(intervals or {})
    frame.attrs["spreads"] = dict(spreads or {})
    return frame


def column_formats(frame: pd.DataFrame) -> dict[str, ColumnFormat]:
    """The format of every column of ``frame``: declared, else ``number`` for numeric columns
    and ``text`` for the rest."""
    declared = frame.attrs.get("formats", {})
    out: dict[str, ColumnFormat] = {}
    for column in frame.columns:
        if column in declared:
            out[column] = declared[column]
        elif pd.api.types.is_numeric_dtype(frame[column]):
            out[column] = "number"
        else:
            out[column] = "text"
    return out
