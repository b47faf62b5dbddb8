"""Chronological splits and walk-forward folds. Time order is never shuffled."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from dynafolio.errors import DataError
from dynafolio.history import MarketHistory


@dataclass(frozen=True)
class Split:
    """Row ranges into a date index: ``train`` fits, ``test`` evaluates (half-open)."""

    train: slice
    test: slice
    index: pd.DatetimeIndex

    @property
    def train_dates(self) -> pd.DatetimeIndex:
        return self.index[self.train]

    @property
    def test_dates(self) -> pd.DatetimeIndex:
        return self.index[self.test]


def chronological_split(
    index: pd.DatetimeIndex,
    train_fraction: float | None = 0.7,
    test_start: str | pd.Timestamp | None = None,
) -> Split:
    """Split dates into an earlier training part and a later test part.

    Give either ``train_fraction`` (share of dates used for training, rounded down) or
    ``test_start`` (first test date; the training part is every earlier date).
    """
    n = len(index)
    if test_start is not None:
        cut = int(index.searchsorted(pd.Timestamp(test_start), side="left"))
        where = f"test_start={pd.Timestamp(test_start).date()}"
    else:
        if train_fraction is None or not 0.0 < train_fraction < 1.0:
            raise DataError(
                f"train_fraction must be strictly between 0 and 1, got {train_fraction}"
            )
        cut = int(n * train_fraction)
        where = f"train_fraction={train_fraction}"
    if cut < 2 or cut > n - 2:
        raise DataError(
            f"{where} leaves {cut} training and {n - cut} test dates out of {n} "
            f"({index[0].date()}..{index[-1].date()}); both need at least 2"
        )
    return Split(train=slice(0, cut), test=slice(cut, n), index=index)


def walk_forward_folds(
    index: pd.DatetimeIndex,
    train_size: int,
    test_size: int,
    *,
    mode: Literal["rolling", "expanding"] = "rolling",
    purge: int = 0,
    embargo: int = 0,
    start: int | None = None,
) -> Iterator[Split]:
    """Yield successive (train, test) folds that walk forward through time.

    Parameters
    ----------
    index : DatetimeIndex
        The dates to split.
    train_size : int
        Training periods of the first fold (and of every fold when ``mode="rolling"``).
    test_size : int
        Test periods per fold; also the retraining step. The last fold may be shorter.
    mode : {"rolling", "expanding"}
        Rolling keeps the training window length fixed; expanding grows it from the start.
    purge : int
        Periods dropped from the end of each training window, so labels that look
        ``purge`` periods ahead (e.g. multi-period targets) do not overlap the test fold.
    embargo : int
        Periods skipped between the end of training and the start of the test fold.
    start : int, optional
        Row of the first test date (default ``train_size + purge + embargo``): earlier rows
        only ever serve as training data.
    """
    if train_size < 1 or test_size < 1 or purge < 0 or embargo < 0:
        raise DataError(
            "walk-forward needs train_size >= 1, test_size >= 1, purge >= 0 and embargo >= 0; "
            f"got {train_size}, {test_size}, {purge}, {embargo}"
        )
    n = len(index)
    first_test = train_size + purge + embargo if start is None else start
    if first_test >= n:
        raise DataError(
            f"walk-forward with train_size={train_size}, purge={purge}, embargo={embargo} "
            f"needs more than {first_test} dates; the data has {n}"
        )
    for test_begin in range(first_test, n, test_size):
        train_end = test_begin - embargo - purge
        train_begin = 0 if mode == "expanding" else max(0, train_end - train_size)
        if train_end - train_begin < 1:
            continue
        yield Split(
            train=slice(train_begin, train_end),
            test=slice(test_begin, min(test_begin + test_size, n)),
            index=index,
        )


@dataclass(frozen=True)
class RefitSchedule:
    """When a walk-forward model is refit and on which history — the one rule every learned
    strategy follows (forecast-driven, end-to-end and PPO score streams).

    The model is fitted at the first decision on the history up to that date, then refitted
    from scratch after every ``every`` decisions (rebalances), each time on the history up to
    the decision date: its last ``window`` periods, or all of it. A fit at decision ``t`` thus
    sees rows ``.. t`` and serves the decisions ``t .. t + every − 1``, which earn the returns
    after ``t`` — the (train, test) folds of :func:`walk_forward_folds` with
    ``test_size = every``.

    Attributes
    ----------
    every : int or None
        Decisions between refits; None fits once.
    window : int or None
        Periods of history per fit (rolling); None uses all history so far (expanding).
    """

    every: int | None = None
    window: int | None = None

    def __post_init__(self) -> None:
        for name in ("every", "window"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise DataError(
                    f"refit schedule: {name} must be an integer >= 1 or None, got {value!r}"
                )

    def due(self, decisions_since_fit: int) -> bool:
        """Whether the model must be refitted before this decision."""
        return self.every is not None and decisions_since_fit >= self.every

    def training_history(self, history: MarketHistory) -> MarketHistory:
        """The part of ``history`` (up to the decision date) a fit learns from."""
        if self.window is None:
            return history
        return MarketHistory(
            history.prices.iloc[-self.window :], history.returns.iloc[-self.window :]
        )

    def fit_positions(self, n_decisions: int) -> list[int]:
        """Indices (0-based, among ``n_decisions`` decisions) of the decisions that refit."""
        if n_decisions <= 0:
            return []
        return list(range(0, n_decisions, self.every or n_decisions))
