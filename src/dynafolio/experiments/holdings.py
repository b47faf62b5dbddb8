"""What a portfolio holds now, read from a user's file without trusting it.

A holdings file is CSV or JSON:

* CSV with a header ``asset,units`` (or ``asset,weight``), one row per asset, and optionally a
  row ``CASH`` (currency in a units file, the cash weight in a weights file);
* JSON ``{"units": {"AAPL": 10, ...}, "cash": 2500.0}`` or ``{"weights": {...}, "cash": 0.05}``.

Every quantity must be a finite number; an asset may appear once. The file is read with the
caps of :mod:`dynafolio.safe_files` and nothing in it is ever run or used as a path. Lot sizes
(``--lots``) are a CSV ``asset,lot`` or a JSON object ``{"AAPL": 1, "BTC": 0.0001}``.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from dynafolio.errors import DataError
from dynafolio.safe_files import Limits, load_json, read_bytes

__all__ = ["Holdings", "read_holdings", "read_lots"]

_MAX_BYTES = 4 * 1024 * 1024
_LIMITS = Limits(max_bytes=_MAX_BYTES, max_depth=4, max_items=100_000)
_FIX = "give one row per asset: asset,units (or asset,weight), and a row CASH for cash"


@dataclass(frozen=True)
class Holdings:
    """Positions held now: ``amounts`` in ``units`` (shares, coins) or as portfolio
    ``weights``, and ``cash`` in the same terms (currency, or the cash weight)."""

    amounts: pd.Series
    kind: Literal["units", "weights"] = "units"
    cash: float = 0.0

    @classmethod
    def empty(cls, kind: Literal["units", "weights"] = "weights") -> Holdings:
        return cls(pd.Series(dtype=float), kind, 1.0 if kind == "weights" else 0.0)

    def value(self, prices: pd.Series) -> float | None:
        """Market value at ``prices`` (None for weights: a weight has no currency)."""
        if self.kind == "weights":
            return None
        return float((self.amounts * prices.reindex(self.amounts.index)).sum() + self.cash)

    def weights(self, prices: pd.Series, assets: pd.Index) -> pd.Series:
        """The holdings as weights of the portfolio's value, on ``assets``."""
        if self.kind == "weights":
            return self.amounts.reindex(assets, fill_value=0.0)
        value = self.value(prices)
        if not value or value <= 0:
            raise DataError(
                f"the holdings are worth {value} at the decision prices; a portfolio to "
                "rebalance needs a positive value"
            )
        held = self.amounts * prices.reindex(self.amounts.index)
        return (held / value).reindex(assets, fill_value=0.0)


def _number(text: object, where: str) -> float:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"{where}: {text!r} is not a number; {_FIX}") from None
    if isinstance(text, bool) or not math.isfinite(value):
        raise DataError(f"{where}: {text!r} is not a finite number; {_FIX}")
    return value


def _rows_of_csv(text: str, path: Path) -> tuple[str, dict[str, str]]:
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    kinds = [k for k in ("units", "weight") if k in header]
    if "asset" not in header or len(kinds) != 1 or len(header) != 2:
        raise DataError(
            f"{path}: the header is {header}; expected two columns, asset and units (or asset "
            f"and weight)"
        )
    asset_at, amount_at = header.index("asset"), header.index(kinds[0])
    rows: dict[str, str] = {}
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise DataError(f"{path}, line {line}: {len(row)} cells, expected 2; {_FIX}")
        asset = row[asset_at].strip()
        if asset in rows:
            raise DataError(f"{path}, line {line}: {asset!r} appears twice; list each asset once")
        rows[asset] = row[amount_at].strip()
    return ("units" if kinds[0] == "units" else "weights"), rows


def read_holdings(path: str | Path) -> Holdings:
    """Read a holdings file (CSV or JSON, see the module docstring)."""
    path = Path(path)
    data = read_bytes(path, f"holdings file {path}", _MAX_BYTES, _FIX)
    if path.suffix.lower() == ".json":
        tree = load_json(data, str(path), _LIMITS, _FIX)
        kinds = [k for k in ("units", "weights") if isinstance(tree, dict) and k in tree]
        extra = set(tree) - {"units", "weights", "cash"} if isinstance(tree, dict) else set()
        if len(kinds) != 1 or extra or not isinstance(tree[kinds[0]], dict):
            raise DataError(
                f"{path}: expected an object with either 'units' or 'weights' (asset → number) "
                f"and optionally 'cash'{f'; unknown keys {sorted(extra)}' if extra else ''}"
            )
        kind = kinds[0]
        rows = {str(asset): value for asset, value in tree[kind].items()}
        cash = _number(tree.get("cash", 0.0), f"{path}: cash")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise DataError(f"{path}: not UTF-8 text; save the holdings as a CSV file") from None
        kind, rows = _rows_of_csv(text, path)
        cash_key = next((a for a in rows if a.upper() == "CASH"), None)
        cash = _number(rows.pop(cash_key), f"{path}: CASH") if cash_key else 0.0
    amounts = pd.Series(
        {asset: _number(value, f"{path}: {asset}") for asset, value in rows.items()}, dtype=float
    )
    return Holdings(amounts, kind, cash)  # type: ignore[arg-type]


def read_lots(path: str | Path) -> pd.Series:
    """Lot sizes per asset (units a trade must be a multiple of), each > 0."""
    path = Path(path)
    data = read_bytes(path, f"lots file {path}", _MAX_BYTES, "give asset,lot rows")
    if path.suffix.lower() == ".json":
        tree = load_json(data, str(path), _LIMITS, "give an object asset → lot size")
        if not isinstance(tree, dict):
            raise DataError(f"{path}: expected an object asset → lot size")
        rows = {str(k): v for k, v in tree.items()}
    else:
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig", errors="replace")))
        header = [h.strip().lower() for h in next(reader, [])]
        if header != ["asset", "lot"]:
            raise DataError(f"{path}: the header is {header}; expected asset,lot")
        rows = {row[0].strip(): row[1].strip() for row in reader if len(row) == 2}
    lots = pd.Series({a: _number(v, f"{path}: {a}") for a, v in rows.items()}, dtype=float)
    bad = lots[lots <= 0]
    if len(bad):
        raise DataError(f"{path}: lot sizes must be > 0; {dict(bad)}")
    return lots
