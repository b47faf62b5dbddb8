"""Built-in datasets: an embedded multi-asset daily file and skfolio's S&P 500 sample.

``load_dataset(name)`` returns the same wide shape as :func:`dynafolio.data.read_prices`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import pandas as pd

from dynafolio.data.io import DATE_UNIT, read_prices
from dynafolio.data.validate import validate_prices
from dynafolio.errors import DataError

__all__ = ["DatasetInfo", "dataset_info", "describe_prices", "list_datasets", "load_dataset"]


@dataclass(frozen=True)
class DatasetInfo:
    """Description of a built-in dataset.

    Attributes
    ----------
    name : str
        Name passed to :func:`load_dataset`.
    description : str
        One-paragraph summary (assets, period).
    frequency : str
        Sampling of the rows.
    source : str
        Where the data comes from.
    license : str
        Terms of use of the data, as far as known.
    asset_classes : dict of str to str
        Asset (column name) -> asset class, e.g. ``"SPY" -> "US equities"``.
    """

    name: str
    description: str
    frequency: str
    source: str
    license: str
    # Excluded from the hash so that the frozen dataclass stays hashable despite the dict.
    asset_classes: dict[str, str] = field(default_factory=dict, hash=False)


_MULTIASSET_CLASSES = {
    **{
        a: "US equities"
        for a in "SPY QQQ AAPL AMZN BRK-B GOOGL JNJ JPM META MSFT NVDA PFE TSLA V WMT XOM".split()
    },
    **{a: "Bonds" for a in ("TLT", "IEF")},
    **{a: "Gold" for a in ("GLD", "GOLD")},
    **{a: "Crypto" for a in "BTC ETH XRP BNB SOL ADA DOGE TRX TON LINK LTC DOT AVAX MATIC".split()},
}

_SP500_STOCKS = (
    "AAPL AMD BAC BBY CVX GE HD JNJ JPM KO LLY MRK MSFT PEP PFE PG RRC UNH WMT XOM".split()
)

_DATASETS: dict[str, DatasetInfo] = {
    "multiasset": DatasetInfo(
        name="multiasset",
        description=(
            "34 assets, daily closes 2018-01-01..2024-12-31 (2557 rows): 16 US stocks/ETFs, "
            "2 Treasury ETFs (TLT, IEF), gold (GLD ETF, GOLD = COMEX front-month futures) and "
            "14 crypto-currencies. Stock/ETF closes are split- and dividend-adjusted. Late "
            "listings: MATIC 2019-04-28, SOL 2020-04-10, DOT 2020-08-20, AVAX 2020-09-22 "
            "(plus two isolated values in July 2020), TON 2021-08-27 (ends 2024-12-07)."
        ),
        frequency="daily (crypto every calendar day, others NYSE days)",
        source=(
            "Yahoo Finance closes taken from public GitHub repository snapshots; per-column "
            "repository, commit and cross-checks in data/PROVENANCE.md"
        ),
        license=(
            "Yahoo Finance data from public snapshots; no license is stated by the source "
            "repositories (see PROVENANCE). For research and examples only."
        ),
        asset_classes=_MULTIASSET_CLASSES,
    ),
    "sp500": DatasetInfo(
        name="sp500",
        description=(
            "20 large US stocks plus the S&P 500 index (column 'SP500'), daily adjusted closes "
            "1990-01-02..2022-12-28 (8313 NYSE days), from skfolio's bundled datasets."
        ),
        frequency="daily (NYSE days)",
        source="skfolio.datasets.load_sp500_dataset and load_sp500_index",
        license="BSD-3-Clause (skfolio); stale sample data for testing and examples only",
        asset_classes={**{a: "US equities" for a in _SP500_STOCKS}, "SP500": "Index"},
    ),
}


def list_datasets() -> list[DatasetInfo]:
    """Describe every built-in dataset.

    Returns
    -------
    list of DatasetInfo
        One entry per dataset, in a stable order.
    """
    return list(_DATASETS.values())


def dataset_info(name: str) -> DatasetInfo:
    """Describe one built-in dataset.

    Parameters
    ----------
    name : str
        Dataset name, e.g. ``"multiasset"``.

    Returns
    -------
    DatasetInfo

    Raises
    ------
    DataError
        If ``name`` is not a built-in dataset (the message lists the available names).
    """
    try:
        return _DATASETS[name]
    except (KeyError, TypeError):
        raise DataError(
            f"unknown dataset {name!r}; available datasets: {', '.join(_DATASETS)} "
            "(or read your own file with dynafolio.data.read_prices)"
        ) from None


def _load_multiasset() -> pd.DataFrame:
    resource = resources.files("dynafolio.data").joinpath("multiasset_daily.csv.gz")
    # as_file gives a real path even when the package is installed as a zip.
    with resources.as_file(resource) as path:
        return read_prices(path, layout="wide", date_column="date")


def _load_sp500() -> pd.DataFrame:
    try:
        from skfolio.datasets import load_sp500_dataset, load_sp500_index
    except ImportError as exc:  # skfolio is a core dependency; this guards broken installs
        raise DataError(
            "dataset 'sp500' needs skfolio, which cannot be imported; reinstall dynafolio"
        ) from exc
    stocks = load_sp500_dataset()
    index = load_sp500_index()
    prices = stocks.join(index, how="outer").astype(np.float64)
    prices.index = pd.DatetimeIndex(prices.index, name="date").as_unit(DATE_UNIT)
    prices.columns = pd.Index([str(c) for c in prices.columns], name="asset")
    prices = prices.sort_index()
    validate_prices(prices, "dataset 'sp500'")
    return prices


_LOADERS = {"multiasset": _load_multiasset, "sp500": _load_sp500}


@functools.lru_cache(maxsize=len(_LOADERS))
def _load_cached(name: str) -> pd.DataFrame:
    return _LOADERS[name]()


def load_dataset(name: str) -> pd.DataFrame:
    """Load a built-in dataset as wide prices.

    Parameters
    ----------
    name : str
        One of the names in :func:`list_datasets` (``"multiasset"``, ``"sp500"``).

    Returns
    -------
    pandas.DataFrame, shape (n_dates, n_assets)
        Same shape as :func:`dynafolio.data.read_prices`. A fresh copy on every call (the
        parsed file is cached), so callers may modify it.

    Raises
    ------
    DataError
        If ``name`` is unknown (the message lists the available names).
    """
    dataset_info(name)
    return _load_cached(name).copy()


def describe_prices(
    prices: pd.DataFrame, asset_classes: dict[str, str] | None = None
) -> pd.DataFrame:
    """Summarise each asset of a wide price frame.

    Parameters
    ----------
    prices : pandas.DataFrame, shape (n_dates, n_assets)
        Wide prices (NaN = no price) with a ``DatetimeIndex``.
    asset_classes : dict of str to str, optional
        Asset -> class (e.g. ``dataset_info(name).asset_classes``); missing assets get NaN.

    Returns
    -------
    pandas.DataFrame, shape (n_assets, 6)
        Index ``asset``; columns ``class``, ``first_date``, ``last_date``, ``n_prices``,
        ``first_price``, ``last_price`` (NaT/NaN and 0 for an asset without prices).
    """
    if not isinstance(prices, pd.DataFrame):
        raise DataError(
            f"describe_prices expects a DataFrame of prices, got {type(prices).__name__}"
        )
    rows = []
    classes = asset_classes or {}
    for asset in prices.columns:
        col = prices[asset]
        first, last = col.first_valid_index(), col.last_valid_index()
        rows.append(
            {
                "first_date": first if first is not None else pd.NaT,
                "last_date": last if last is not None else pd.NaT,
                "n_prices": int(col.notna().sum()),
                "first_price": float(col.loc[first]) if first is not None else np.nan,
                "last_price": float(col.loc[last]) if last is not None else np.nan,
            }
        )
    out = pd.DataFrame(
        rows,
        index=pd.Index(prices.columns, name="asset"),
        columns=["first_date", "last_date", "n_prices", "first_price", "last_price"],
    )
    # object dtype so that the column stays text-like even when no class is known
    out.insert(
        0,
        "class",
        pd.Series(
            [classes.get(str(a), np.nan) for a in prices.columns], index=out.index, dtype=object
        ),
    )
    for col in ("first_date", "last_date"):
        out[col] = pd.to_datetime(out[col])
    return out
