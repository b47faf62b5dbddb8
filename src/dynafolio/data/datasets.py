"""Built-in datasets: an embedded multi-asset daily file, the Fama–French industry and
size × book-to-market portfolios (1960–2018), and skfolio's S&P 500 sample.

``load_dataset(name)`` returns the same wide shape as :func:`dynafolio.data.read_prices`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import pandas as pd

from dynafolio.data.io import read_prices
from dynafolio.data.markets import MARKET_KINDS, KnownMarket, generate_market
from dynafolio.data.parsing import DATE_UNIT
from dynafolio.data.validate import validate_prices
from dynafolio.errors import DataError

__all__ = [
    "DatasetInfo",
    "dataset_info",
    "describe_prices",
    "list_datasets",
    "load_dataset",
    "french_factors_per_period",
    "load_french_factors",
]


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
_FRENCH_SOURCE = (
    "Kenneth R. French — Data Library (Dartmouth, Tuck School of Business), via the data "
    "folder of the PyPI package ZCAPM 0.4.0; returns turned into total-return index levels "
    "(100 at each portfolio's first return); see PROVENANCE-french.md beside the data "
    "files (dynafolio/data/)"
)
_FRENCH_LICENSE = (
    "No license of its own: published by the Data Library for research use; cite "
    "'Kenneth R. French — Data Library' and Fama & French (1993, 1997)"
)
_DATASETS["ff_industries"] = DatasetInfo(
    name="ff_industries",
    description=(
        "47 value-weighted US industry portfolios (Fama–French 48 without Hlth), daily "
        "total-return index levels 1960-01-04..2018-12-31 (14,850 NYSE days); Soda, FabPr, "
        "Guns and Gold start on 1963-07-01. The daily Fama–French factors (Mkt-RF, SMB, HML, "
        "MOM) and risk-free rate of the same source ship beside it: backtest.risk_free: "
        "ff_factors puts the RF series in every Sharpe ratio, and the model input ff_factors "
        "lets a model read the factors."
    ),
    frequency="daily (NYSE days)",
    source=_FRENCH_SOURCE,
    license=_FRENCH_LICENSE,
    asset_classes={
        a: "Industry"
        for a in (
            "Agric Food Soda Beer Smoke Toys Fun Books Hshld Clths MedEq Drugs Chems Rubbr "
            "Txtls BldMt Cnstr Steel FabPr Mach ElcEq Autos Aero Ships Guns Gold Mines Coal Oil "
            "Util Telcm PerSv BusSv Comps Chips LabEq Paper Boxes Trans Whlsl Rtail Meals Banks "
            "Insur RlEst Fin Other"
        ).split()
    },
)
_DATASETS["ff25"] = DatasetInfo(
    name="ff25",
    description=(
        "25 value-weighted US size × book-to-market portfolios (5 × 5 sorts), daily "
        "total-return index levels 1964-01-02..2015-12-31 (13,091 NYSE days)."
    ),
    frequency="daily (NYSE days)",
    source=_FRENCH_SOURCE,
    license=_FRENCH_LICENSE,
    # One class per size quintile (rows of the 5 × 5 sort), as the file names them.
    asset_classes={
        name: f"Size quintile {size}"
        for size, names in enumerate(
            (
                "SMALL.LoBM ME1.BM2 ME1.BM3 ME1.BM4 SMALL.HiBM",
                "ME2.BM1 ME2.BM2 ME2.BM3 ME2.BM4 ME2.BM5",
                "ME3.BM1 ME3.BM2 ME3.BM3 ME3.BM4 ME3.BM5",
                "ME4.BM1 ME4.BM2 ME4.BM3 ME4.BM4 ME4.BM5",
                "BIG.LoBM ME5.BM2 ME5.BM3 ME5.BM4 BIG.HiBM",
            ),
            start=1,
        )
        for name in names.split()
    },
)
_MARKET_DESCRIPTIONS = {
    "noise": "i.i.d. normal log returns: nothing to learn; no rule beats chance but by luck",
    "momentum": "AR(1) log returns with coefficient phi per asset: the best forecast is "
    "phi·r_t (cross-sectional IC phi, out-of-sample R² phi²)",
    "foresight": "i.i.d. log returns as 'noise', served with the true next return as the "
    "forecast of the 'oracle' forecaster: the ceiling of any allocator that reads forecasts",
    "static_edge": "i.i.d. log returns, n_edge assets (drawn by seed) with a higher drift: "
    "the best rule holds them",
}
for _kind in MARKET_KINDS:
    _DATASETS[_kind] = DatasetInfo(
        name=_kind,
        description=(
            f"Known-answer market: {_MARKET_DESCRIPTIONS[_kind]}. Generated from a seed; "
            "defaults 20 assets, 365 weekly prices from 2018-01-05, sigma 3% a week (settings: "
            "data.market in a config, --market KEY=VALUE on the command line)."
        ),
        frequency="weekly (Fridays) by default",
        source="generated by dynafolio.data.markets (deterministic from its settings)",
        license="synthetic",
    )


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


def _load_embedded(file: str) -> pd.DataFrame:
    resource = resources.files("dynafolio.data").joinpath(file)
    # as_file gives a real path even when the package is installed as a zip.
    with resources.as_file(resource) as path:
        return read_prices(path, layout="wide", date_column="date")


def load_french_factors() -> pd.DataFrame:
    """The daily Fama–French factors of the embedded French datasets, as fractions (the file
    is in percent): ``Mkt-RF``, ``SMB``, ``HML``, ``MOM`` and ``RF`` (the daily risk-free
    rate), indexed by date 1960-01-04..2018-12-31."""
    resource = resources.files("dynafolio.data").joinpath("ff_factors_daily.csv.gz")
    with resources.as_file(resource) as path:
        frame = pd.read_csv(path, index_col="date", parse_dates=True)
    frame.index = pd.DatetimeIndex(frame.index, name="date").as_unit(DATE_UNIT)
    return frame.astype(np.float64) / 100.0


@functools.cache
def _french_log_levels() -> pd.DataFrame:
    """Cumulative ``ln(1 + factor)`` of the daily factors (one row per trading day)."""
    return np.log1p(load_french_factors()).cumsum()


def french_factors_per_period(index: pd.DatetimeIndex) -> pd.DataFrame:
    """The daily Fama–French factors compounded over each period of ``index``: the row of
    date t holds ``Π (1 + f_d) − 1`` over the trading days d in ``(t_{prev}, t]`` — what was
    known at the close of t, so a model may read it then. The first row holds its own day's.

    Raises
    ------
    DataError
        If ``index`` reaches outside the factors' dates (1960-01-04..2018-12-31).
    """
    levels = _french_log_levels()
    first, last = levels.index[0], levels.index[-1]
    if len(index) == 0 or index[0] < first or index[-1] > last + pd.Timedelta(days=7):
        span = f"{index[0].date()}..{index[-1].date()}" if len(index) else "no dates"
        raise DataError(
            f"the Fama–French factors cover {first.date()}..{last.date()}, the data {span}; "
            "use them (risk_free: ff_factors, the ff_factors model input) only with data "
            "inside that range, such as the ff_industries and ff25 datasets"
        )
    at = levels.reindex(levels.index.union(index)).ffill().loc[index]
    per_period = np.expm1(at.diff())
    per_period.iloc[0] = np.expm1(levels.diff().reindex(index[:1], method="ffill").to_numpy())
    return per_period.fillna(0.0)


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


_LOADERS = {
    "multiasset": lambda: _load_embedded("multiasset_daily.csv.gz"),
    "ff_industries": lambda: _load_embedded("ff_industries_daily.csv.gz"),
    "ff25": lambda: _load_embedded("ff25_size_bm_daily.csv.gz"),
    "sp500": _load_sp500,
    **{kind: (lambda kind=kind: generate_market(KnownMarket(kind=kind))) for kind in MARKET_KINDS},
}


@functools.lru_cache(maxsize=len(_LOADERS))
def _load_cached(name: str) -> pd.DataFrame:
    return _LOADERS[name]()


def load_dataset(name: str) -> pd.DataFrame:
    """Load a built-in dataset as wide prices.

    Parameters
    ----------
    name : str
        One of the names in :func:`list_datasets` (``"multiasset"``, ``"sp500"``, or a
        known-answer market with its default settings: ``"noise"``, ``"momentum"``,
        ``"foresight"``, ``"static_edge"``; :func:`dynafolio.data.markets.generate_market`
        takes other settings).

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
