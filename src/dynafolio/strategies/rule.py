"""S4: the weekly long-short rule driven by next-period *price* forecasts (seed 004).

The source (Liu, "Portfolio Management Strategy Based on LSTM") predicts each stock's next
weekly price and trades every week: "those predicted to decline were sold, while those
predicted to increase were purchased", in proportion to the predicted change; "if all stocks
were forecasted to increase", positions are sized by the adjustment factor
``(R_i − E(R)) / σ(R)``. Short selling is allowed and no position may exceed one third of
the portfolio. The paper leaves the arithmetic open; the choices made here are documented
on :func:`rule_weights` and :func:`cap_positions`.

Run it under ``PortfolioConstraints(long_only=False, max_gross_leverage=1.0,
max_position=1/3, fully_invested=False)``: weights may be negative, ``Σ|w| ≤ 1`` and the
rest (``1 − Σw``) sits in cash.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Self

import numpy as np
import pandas as pd
from pydantic import Field

from dynafolio.errors import ConfigError
from dynafolio.forecast.registry import forecaster_spec
from dynafolio.history import MarketHistory
from dynafolio.settings import parameters
from dynafolio.strategies.base import Strategy, cross_sectional_zscore
from dynafolio.strategies.forecast import ForecastStrategy
from dynafolio.strategies.registry import BuildContext, register_strategy, spec_fields
from dynafolio.strategies.signal import FORECASTER, ForecasterUnion


def cap_positions(weights: np.ndarray, max_position: float) -> np.ndarray:
    """Clip ``|w_i|`` to ``max_position`` and hand the excess to the positions below the cap.

    Each pass clips every position above the cap to exactly the cap and adds the clipped
    total to the positions still strictly below it, in proportion to their size and keeping
    their sign (so longs stay long, shorts stay short, zeros stay zero; the excess is not
    kept on its own side, so capping can shift the net exposure). Positions pushed
    over the cap are clipped on the next pass; each pass caps at least one more position, so
    at most ``n_assets`` passes are needed. Redistribution conserves ``Σ|w|``; when no
    position is left below the cap (fewer than ``Σ|w| / max_position`` non-zero positions,
    e.g. two positions under a 1/3 cap) the excess cannot be placed and stays in cash.

    Parameters
    ----------
    weights : ndarray, shape (n_assets,)
        Signed weights, typically with ``Σ|w| = 1``.
    max_position : float
        Largest allowed ``|w_i|``, in ``(0, 1]``.

    Returns
    -------
    ndarray, shape (n_assets,)
        Signed weights with ``|w_i| ≤ max_position`` and ``Σ|w| = min(Σ|w_in|,
        n_nonzero · max_position)``.
    """
    if not 0.0 < max_position <= 1.0:
        raise ValueError(f"max_position must be in (0, 1], got {max_position}")
    signed = np.asarray(weights, dtype=float)
    size = np.abs(signed)
    for _ in range(size.size + 1):
        over = size > max_position
        if not over.any():
            break
        excess = float((size[over] - max_position).sum())
        size[over] = max_position
        room = (size > 0) & (size < max_position)
        if not room.any():
            break
        size[room] += excess * (size[room] / size[room].sum())  # shares first: no underflow
    return np.sign(signed) * size


def rule_weights(
    current_prices: np.ndarray, predicted_prices: np.ndarray, max_position: float = 1 / 3
) -> np.ndarray:
    """Target weights of the S4 rule from today's prices and the predicted next prices.

    Steps:

    1. Predicted change ``R_i = P̂_i / P_i − 1`` for assets with both prices finite; the
       others (not listed, no forecast) get weight 0.
    2. If **every** such asset is predicted to rise (``R_i > 0``), raw weights are the
       z-scores ``(R_i − mean R) / std R`` (std with ddof 0 — the scale cancels in step 3):
       long the strongest risers, short the weakest, net about zero. If the predicted rises
       are all (numerically) equal there is no relative view: all cash.
    3. Otherwise raw weights are ``R_i`` themselves: long what is predicted to rise, short
       what is predicted to fall, in proportion to the predicted change; a flat prediction
       (``R_i = 0``) gets nothing. If nothing is predicted to move: all cash.
    4. Scale to gross exposure ``Σ|w| = 1`` (fully deployed, no leverage).
    5. :func:`cap_positions` at ``max_position``; with too few non-zero positions to reach
       gross 1 under the cap the remainder stays in cash (gross < 1).

    Parameters
    ----------
    current_prices : ndarray, shape (n_assets,)
        Prices at the decision date; NaN where not listed. Must be positive where finite.
    predicted_prices : ndarray, shape (n_assets,)
        Predicted prices for the next period; NaN where the model has no forecast.
    max_position : float
        Cap on ``|w_i|`` (one third in the source).

    Returns
    -------
    ndarray, shape (n_assets,)
        Signed weights; ``Σ|w| ≤ 1``, ``|w_i| ≤ max_position``; cash is ``1 − Σw``.
    """
    current = np.asarray(current_prices, dtype=float)
    predicted = np.asarray(predicted_prices, dtype=float)
    if current.ndim != 1 or current.shape != predicted.shape:
        raise ValueError(
            f"current_prices {current.shape} and predicted_prices {predicted.shape} must be "
            "1-d arrays of the same length"
        )
    if not 0.0 < max_position <= 1.0:
        raise ValueError(f"max_position must be in (0, 1], got {max_position}")
    valid = np.isfinite(current) & np.isfinite(predicted)
    if (current[valid] <= 0).any():
        raise ValueError("current prices must be positive; found a zero or negative price")
    raw = np.zeros_like(current)
    change = predicted[valid] / current[valid] - 1.0
    if change.size and (change > 0).all():
        raw[valid] = cross_sectional_zscore(change)
    else:
        raw[valid] = change
    gross = float(np.abs(raw).sum())
    if gross == 0.0:
        return raw
    return cap_positions(raw / gross, max_position)


@parameters
class PriceRuleStrategy(ForecastStrategy):
    """S4 weekly long-short rule on next-period price forecasts (see :func:`rule_weights`).

    Timing: at the close of ``t`` the forecaster predicts ``P_{t+1}`` from the history up to
    ``t``; the rule compares it with ``P_t`` and the weights are held over ``t → t+1``.
    The forecaster must predict prices (``target == "price"``); a log-return forecaster is
    refused by :meth:`fit`. Assets without a price today or without a forecast get 0; if
    none has both, the whole book is in cash. Backtest it with long-short constraints
    (``long_only=False, max_gross_leverage=1.0, max_position=1/3, fully_invested=False``).

    Parameters
    ----------
    forecaster : Forecaster
        Predicts next-period prices.
    max_position : float
        Cap on ``|w_i|`` (from a config: the entry's ``constraints.max_position``, the cap
        the engine checks).
    retrain_every, train_window, forecaster_label
        Walk-forward refitting and the family's name, see :class:`ForecastStrategy`.
    """

    label = "Price rule"
    # Without forecasts the rule holds cash (its weights are 0), so no equal-weight fallback.
    equal_weight_without_forecast = False

    max_position: float = 1 / 3

    @property
    def name(self) -> str:
        return f"{self.family} price rule"

    def fit(self, history: MarketHistory) -> Self:
        # Checked before training: a wrong target would otherwise surface only as nonsense
        # weights (a log return of 0.01 read as a price means "falls 99%").
        if self.forecaster.target != "price":
            raise ValueError(
                f"{self.label} needs a forecaster that predicts prices (target 'price'); "
                f"{type(self.forecaster).__name__} predicts {self.forecaster.target!r}"
            )
        if not 0.0 < self.max_position <= 1.0:
            raise ValueError(f"max_position must be in (0, 1], got {self.max_position}")
        return super().fit(history)

    def allocate(self, forecast: pd.Series, history: MarketHistory) -> pd.Series:
        current = history.prices.iloc[-1].to_numpy(dtype=float)
        predicted = forecast.reindex(history.assets).to_numpy(dtype=float)
        weights = rule_weights(current, predicted, self.max_position)
        return pd.Series(weights, index=history.assets)


# ------------------------------------------------------------------ config declarations
@register_strategy
class PriceRuleSpec(spec_fields(PriceRuleStrategy, exclude=FORECASTER | {"max_position"})):
    """``price_rule`` (S4): buy the predicted risers, sell the predicted fallers."""

    kind: Literal["price_rule"]
    forecaster: ForecasterUnion = Field(
        default_factory=lambda: forecaster_spec("price_lstm_per_stock")
    )
    strategy_class: ClassVar = PriceRuleStrategy

    def build(self, context: BuildContext) -> Strategy:
        # The cap is the engine's own max_position: one declaration, checked before training.
        limits = context.constraints
        if limits.long_only:
            raise ConfigError(
                "price_rule sells the predicted fallers short; give the entry "
                "`constraints: {long_only: false}` (the source's setting)"
            )
        if limits.max_gross_leverage < 1.0:
            raise ConfigError(
                f"price_rule invests a gross 1 (Σ|w| = 1) but constraints.max_gross_leverage is "
                f"{limits.max_gross_leverage}; set it to at least 1"
            )
        if limits.max_position > 1.0:
            raise ConfigError(
                f"price_rule caps each position at constraints.max_position, which is "
                f"{limits.max_position}; set it to at most 1 (the source uses 1/3)"
            )
        return PriceRuleStrategy(**self.arguments(context), max_position=limits.max_position)
