"""S3's model and loss (:mod:`dynafolio.strategies.e2e` trains and uses them): the
drawdown-sensitive loss on real, unscaled returns, the portfolio's net return with turnover
cost, the per-asset feature windows and the LSTM → softmax allocation network."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from dynafolio.model_inputs import S3_FEATURES, FeatureSet

__all__ = [
    "AllocationNet",
    "drawdown_loss",
    "features_for_allocation",
    "full_windows",
    "net_portfolio_returns",
]


def drawdown_loss(portfolio_returns: torch.Tensor, lam: float) -> torch.Tensor:
    """The drawdown-sensitive training loss of S3.

    ``L = −mean(R_p) + lam · mean(max(0, −R_p)²)``: the first term rewards return, the second
    penalises losses quadratically (gains are not penalised, unlike a variance term).

    Parameters
    ----------
    portfolio_returns : torch.Tensor, shape (n_samples,)
        Real (unscaled) simple portfolio returns per period, e.g. ``0.01`` for +1 %.
    lam : float
        Weight of the downside penalty (>= 0); 0 gives plain return maximisation.

    Returns
    -------
    torch.Tensor, shape ()
        The loss, in return units per period (differentiable).
    """
    downside = torch.clamp(-portfolio_returns, min=0.0)
    return -portfolio_returns.mean() + lam * (downside**2).mean()


def net_portfolio_returns(
    weights: torch.Tensor,
    next_returns: torch.Tensor,
    previous_weights: torch.Tensor | None = None,
    cost: float = 0.0,
) -> torch.Tensor:
    """Portfolio returns net of a proportional turnover cost: ``w·r − cost·‖w − w_prev‖₁``.

    Parameters
    ----------
    weights : torch.Tensor, shape (batch, n_assets)
        Weights decided at each sample's date.
    next_returns : torch.Tensor, shape (batch, n_assets)
        Simple returns of the period each row's weights are held for (no NaN).
    previous_weights : torch.Tensor, shape (batch, n_assets), optional
        Weights held before each row's trade. Default: the rows form one chronological run,
        so row ``i`` trades from row ``i − 1``'s weights and the first row pays no cost.
        (Drift between decisions is ignored: a training-time approximation of the engine's
        ``‖w_target − w_drifted‖₁``.)
    cost : float, default 0.0
        Cost per unit of turnover (0.001 = 0.1 %); 0 returns the gross ``w·r``.

    Returns
    -------
    torch.Tensor, shape (batch,)
        Per-period net portfolio returns.
    """
    gross = (weights * next_returns).sum(dim=-1)
    if cost == 0.0:
        return gross
    if previous_weights is None:
        previous_weights = torch.cat([weights[:1], weights[:-1]], dim=0)
    turnover = (weights - previous_weights).abs().sum(dim=-1)
    return gross - cost * turnover


def features_for_allocation(prices: pd.DataFrame, features: FeatureSet | None = None) -> np.ndarray:
    """Per-asset model inputs, by default S3's: simple return, RSI(14) / 100, realised
    volatility (20) — :class:`~dynafolio.model_inputs.FeatureSet`, the implementation S2's
    forecaster features share.

    Every feature at row ``t`` uses prices up to ``t`` only, so the features of a history
    truncated at ``t`` equal the first ``t + 1`` rows of the features of a longer one.

    Parameters
    ----------
    prices : pandas.DataFrame, shape (n_dates, n_assets)
        Prices, ascending dates; NaN = no price.
    features : FeatureSet, optional
        Default ``FeatureSet(S3_FEATURES)``.

    Returns
    -------
    numpy.ndarray, shape (n_dates, n_assets, n_features)
        NaN during each feature's warm-up and where prices are missing.
    """
    return (features or FeatureSet(S3_FEATURES)).build(prices)


def full_windows(features: np.ndarray, lookback: int) -> np.ndarray:
    """Whether each asset has all features finite over the ``lookback`` rows ending at ``t``.

    Parameters
    ----------
    features : numpy.ndarray, shape (n_dates, n_assets, n_features)
    lookback : int

    Returns
    -------
    numpy.ndarray of bool, shape (n_dates, n_assets)
        False for the first ``lookback − 1`` rows.
    """
    finite = np.isfinite(features).all(axis=-1).astype(np.int64)
    counts = np.vstack([np.zeros((1, finite.shape[1]), dtype=np.int64), finite.cumsum(axis=0)])
    full = np.zeros(finite.shape, dtype=bool)
    full[lookback - 1 :] = (counts[lookback:] - counts[:-lookback]) == lookback
    return full


class AllocationNet(nn.Module):
    """LSTM over the joint feature window → linear → masked softmax over assets."""

    def __init__(self, n_assets: int, n_features: int, hidden: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_features * n_assets, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_assets)

    def forward(self, windows: torch.Tensor, tradable: torch.Tensor) -> torch.Tensor:
        """Weights ``(batch, n_assets)`` from windows ``(batch, lookback, n_features·n_assets)``.

        ``tradable`` ``(batch, n_assets)`` bool: other assets get logit −inf, hence weight
        exactly 0; every row needs at least one tradable asset.
        """
        sequence, _ = self.lstm(windows)
        logits = self.head(sequence[:, -1])
        return torch.softmax(logits.masked_fill(~tradable, float("-inf")), dim=-1)
