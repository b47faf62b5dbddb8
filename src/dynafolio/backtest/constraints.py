"""Portfolio constraints the engine checks every target weight vector against."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dynafolio.errors import OptimizationError

_TOL = 1e-6


@dataclass(frozen=True)
class PortfolioConstraints:
    """Limits on target weights; what is not invested sits in cash earning zero.

    Parameters
    ----------
    long_only : bool
        Forbid negative weights.
    max_gross_leverage : float
        Upper bound on ``Σ|w_i|`` (1.0 = no leverage).
    max_position : float
        Upper bound on ``|w_i|`` for every asset.
    fully_invested : bool
        Require ``Σ w_i = 1`` (typical for long-only allocators). Long-short portfolios
        usually set this to False and keep the residual in cash.
    """

    long_only: bool = True
    max_gross_leverage: float = 1.0
    max_position: float = 1.0
    fully_invested: bool = True

    def __post_init__(self) -> None:
        if self.max_gross_leverage <= 0 or self.max_position <= 0:
            raise ValueError("max_gross_leverage and max_position must be positive")

    def check(self, weights: np.ndarray, dates: pd.Index, assets: pd.Index) -> None:
        """Raise :class:`OptimizationError` naming the first date and asset that break a limit.

        ``weights`` has shape ``(n_dates, n_assets)``.
        """
        problems: list[tuple[np.ndarray, str]] = [
            (~np.isfinite(weights).all(axis=1), "has a non-finite weight"),
        ]
        if self.long_only:
            problems.append(((weights < -_TOL).any(axis=1), "has a short position (long_only)"))
        problems += [
            (
                np.abs(weights).sum(axis=1) > self.max_gross_leverage + _TOL,
                f"has gross leverage above max_gross_leverage={self.max_gross_leverage}",
            ),
            (
                (np.abs(weights) > self.max_position + _TOL).any(axis=1),
                f"has a position above max_position={self.max_position}",
            ),
        ]
        if self.fully_invested:
            problems.append(
                (np.abs(weights.sum(axis=1) - 1.0) > 1e-4, "does not sum to 1 (fully_invested)")
            )
        for bad_rows, what in problems:
            if bad_rows.any():
                i = int(np.argmax(bad_rows))
                row = pd.Series(weights[i], index=assets)
                worst = row[row.abs().sort_values(ascending=False).index[:3]]
                raise OptimizationError(
                    f"target weights on {dates[i].date()} {what}: sum={row.sum():.6f}, "
                    f"gross={row.abs().sum():.6f}, largest {worst.round(6).to_dict()}. "
                    "Project the strategy's weights onto the constraints or relax them in "
                    "the config."
                )
