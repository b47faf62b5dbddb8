"""The oracle forecaster: a known-answer market's best forecast, for controls only.

On a known-answer market (:mod:`dynafolio.data.markets`) the best forecast of the next log
return is known: ``drift + φ·(r_t − drift)`` on ``momentum``, the drift (plus the edge) on
``noise`` and ``static_edge``, and the realised next return on ``foresight``. Put through a
strategy it gives the *oracle*: the best Top-K rule (``forecast_topk`` with ``model:
oracle``) and, as the hybrid's scores, the ceiling of what a PPO agent that reads forecasts
can reach (``ppo_topk`` with ``forecaster: {model: oracle}`` on ``foresight``).

On ``foresight`` it reads the future on purpose, so it refuses any data that is not the
known-answer market the run generated: it can never leak into a result on real data.
"""

from __future__ import annotations

from typing import Self

import pandas as pd

from dynafolio.data.markets import KnownMarket, best_forecast
from dynafolio.errors import ConfigError, DataError
from dynafolio.forecast.baselines import RuleForecaster
from dynafolio.forecast.registry import register_forecaster
from dynafolio.history import MarketHistory
from dynafolio.settings import parameters

__all__ = ["OracleForecaster"]


@parameters
class OracleForecaster(RuleForecaster):
    """The best forecast of a known-answer market (see the module docstring).

    Parameters
    ----------
    market : KnownMarket
        Supplied by the run from ``data.dataset``/``data.market``, never by the config.
    seed : int
        Unused (the forecast is deterministic); part of the contract.
    """

    market: KnownMarket | None = None
    seed: int = 0

    def fit(self, history: MarketHistory) -> Self:
        if self.market is None:
            raise ConfigError(
                "forecaster 'oracle' serves only known-answer markets: set data.dataset to "
                "noise, momentum, foresight or static_edge (or `--dataset` on the command line)"
            )
        expected = self.market.asset_names
        if list(map(str, history.assets)) != expected:
            raise DataError(
                f"forecaster 'oracle': the history's assets {list(history.assets)[:5]}... are "
                f"not those of the known-answer market {self.market.label}; it forecasts only "
                "the market the run generated"
            )
        return super().fit(history)

    def predict(self, history: MarketHistory) -> pd.Series:
        self._check_fitted()
        try:
            forecast = best_forecast(self.market, history.date)
        except KeyError:
            raise DataError(
                f"forecaster 'oracle': {history.date.date()} is not a date of the known-answer "
                f"market {self.market.label}"
            ) from None
        return forecast.reindex(history.assets)


register_forecaster("oracle", OracleForecaster, label="Oracle")
