"""Price data: built-in datasets, file readers and validation.

Every loader returns the same wide frame: a sorted tz-naive ``DatetimeIndex`` named ``"date"``,
one ``float64`` column per asset (column index named ``"asset"``), NaN where there is no price.
"""

from __future__ import annotations

from dynafolio.data.datasets import (
    DatasetInfo,
    dataset_info,
    describe_prices,
    list_datasets,
    load_dataset,
)
from dynafolio.data.io import download_prices, read_prices

__all__ = [
    "DatasetInfo",
    "dataset_info",
    "describe_prices",
    "download_prices",
    "list_datasets",
    "load_dataset",
    "read_prices",
]
