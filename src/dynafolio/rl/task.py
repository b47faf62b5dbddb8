"""The portfolio MDP's rules as array arithmetic, shared by the Gymnasium environment
(:class:`~dynafolio.rl.env.PortfolioEnv`) and the batched
:class:`~dynafolio.rl.vec_env.BatchedPortfolioVecEnv`: the observation, the Top-K trade, the
engine's accounting and the reward, for a batch of episodes at once (the timing is
:mod:`dynafolio.rl.env`'s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from dynafolio.backtest.costs import ProportionalCost
from dynafolio.backtest.engine import Simulation, rebalance_step
from dynafolio.errors import DataError
from dynafolio.rl.projection import top_k_weights
from dynafolio.rl.rewards import RewardSettings, make_reward

#: Bound of the logits action space. SB3 clips Gaussian actions to the Box; ±10 leaves room
#: for a very peaked softmax while clipping (which would create ties among clipped logits and
#: favour the first assets in the Top-K order) stays rare.
ACTION_BOUND = 10.0
#: Returns in the observation are clipped to ±1 (±100% per period) so that extreme crypto
#: days do not dominate the network's inputs.
RETURN_CLIP = 1.0
#: Scores in the observation are clipped to ±10 so the observation Box stays finite.
SCORE_CLIP = 10.0
#: Model inputs (features) in the observation are clipped to ±10 likewise.
INPUT_CLIP = 10.0
#: Reward when ``1 + net <= 0`` (the portfolio is wiped out): far below any log return a
#: surviving portfolio can earn in one period. The episode terminates.
RUIN_REWARD = -20.0


@dataclass(frozen=True)
class StepOutcome:
    """Result of one batched trade; vectors have shape ``(batch,)``, matrices ``(batch, n_assets)``.

    ``sim`` is the engine's accounting (gross, cost, turnover, start/end weights);
    ``net = sim.net − lambda_sparse · nnz / n_assets``; ``reward = log(1 + net)`` or
    :data:`RUIN_REWARD` where ``ruined``.
    """

    weights: np.ndarray
    sim: Simulation
    net: np.ndarray
    reward: np.ndarray
    ruined: np.ndarray


def clean_inputs(inputs: np.ndarray) -> np.ndarray:
    """Model inputs as the state reads them: NaN (an input's warm-up, a gap) as 0, as a
    missing score, and clipped to ±:data:`INPUT_CLIP`. The environment and the strategy's
    decisions both go through here."""
    return np.clip(np.nan_to_num(inputs, nan=0.0), -INPUT_CLIP, INPUT_CLIP)


class PortfolioTask:
    """Validated data and the batched rules of the portfolio MDP (shared by both envs).

    Only rows ``< end`` of ``returns``, ``scores`` and ``inputs`` are kept, so nothing at or
    after ``end`` can be read. Parameters are those of :class:`PortfolioEnv`.
    """

    def __init__(
        self,
        returns: np.ndarray,
        *,
        lookback: int,
        k: int,
        tau: float,
        transaction_cost: float,
        lambda_sparse: float,
        scores: np.ndarray | None,
        start: int | None,
        end: int | None,
        episode_length: int | None,
        carried_returns: np.ndarray | None = None,
        reward: RewardSettings | dict | None = None,
        n_envs: int = 1,
        inputs: np.ndarray | None = None,
    ) -> None:
        returns = np.asarray(returns, dtype=float)
        if returns.ndim != 2 or returns.shape[1] == 0:
            raise DataError(
                f"returns must be a 2-D array (n_periods, n_assets), got shape {returns.shape}"
            )
        n_periods, n_assets = returns.shape
        if not isinstance(lookback, int | np.integer) or lookback < 1:
            raise ValueError(f"lookback must be an integer >= 1, got {lookback!r}")
        if not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        if k > n_assets:
            raise DataError(f"k={k} exceeds the {n_assets} assets in returns; lower k")
        if not 0.0 <= tau < 1.0:
            raise ValueError(f"tau must be in [0, 1), got {tau}")
        if not np.isfinite(lambda_sparse) or lambda_sparse < 0:
            raise ValueError(f"lambda_sparse must be a finite number >= 0, got {lambda_sparse}")
        start = 0 if start is None else int(start)
        end = n_periods if end is None else int(end)
        if not 0 <= start < end <= n_periods:
            raise ValueError(
                f"need 0 <= start < end <= n_periods={n_periods}, got start={start}, end={end}"
            )
        first_row, last_row = max(start, lookback - 1), end - 2
        if last_row < first_row:
            raise DataError(
                f"no decision rows: decisions need rows max(start, lookback-1)={first_row} to "
                f"end-2={last_row}; lower lookback, start earlier or end later"
            )
        data = returns[:end]
        if np.isinf(data).any():
            row, col = np.argwhere(np.isinf(data))[0]
            raise DataError(f"returns contain an infinite value at row {row}, column {col}")
        if (data <= -1.0).any():
            row, col = np.argwhere(data <= -1.0)[0]
            raise DataError(
                f"return {data[row, col]} <= -100% at row {row}, column {col}: prices must stay "
                "positive; check the price data"
            )
        tradable = ~np.isnan(data)
        empty = np.flatnonzero(~tradable[first_row : last_row + 1].any(axis=1))
        if empty.size:
            raise DataError(
                f"decision row {first_row + empty[0]} has no asset with a return (nothing "
                "tradable); start the environment after it or drop the empty rows"
            )
        self.n_assets = n_assets
        self.lookback = int(lookback)
        self.k = int(k)
        self.tau = float(tau)
        self.lambda_sparse = float(lambda_sparse)
        self.cost_model = ProportionalCost(transaction_cost)
        self.first_row = first_row
        self.last_row = last_row
        n_decisions = last_row - first_row + 1
        if episode_length is not None and not 1 <= episode_length <= n_decisions:
            raise ValueError(
                f"episode_length must be in [1, {n_decisions}] (the decision rows "
                f"{first_row}..{last_row}), got {episode_length}"
            )
        self.episode_length = None if episode_length is None else int(episode_length)
        if carried_returns is None:
            # NaN (no price) is carried at the last price by the engine, i.e. earns 0.
            self.forward = data
        else:
            carried = np.asarray(carried_returns, dtype=float)
            if carried.shape != returns.shape:
                raise DataError(
                    f"carried_returns have shape {carried.shape}; expected {returns.shape}, the "
                    "shape of returns"
                )
            self.forward = carried[:end]
        self.tradable = tradable
        self.window = np.clip(np.nan_to_num(data, nan=0.0), -RETURN_CLIP, RETURN_CLIP).astype(
            np.float32
        )
        self.scores = None if scores is None else self._clean_scores(scores, n_periods, end)
        self.inputs = None if inputs is None else self._clean_inputs(inputs, n_periods, end)
        # Each asset's columns after its window and weight, asset-major (its score, then its
        # inputs): the per-asset policy reads the block as (n_assets, extra_columns).
        extras = [] if self.scores is None else [self.scores[:, :, None]]
        extras += [] if self.inputs is None else [self.inputs]
        self.extra_columns = sum(block.shape[2] for block in extras)
        self.extras = np.concatenate(extras, axis=2) if extras else None
        self.reward = make_reward(reward, n_envs)
        self._offsets = np.arange(1 - self.lookback, 1)

    def _clean_scores(self, scores: np.ndarray, n_periods: int, end: int) -> np.ndarray:
        scores = np.asarray(scores, dtype=float)
        if scores.shape != (n_periods, self.n_assets):
            raise DataError(
                f"scores have shape {scores.shape}; expected {(n_periods, self.n_assets)}, the "
                "shape of returns (one forecast per date and asset)"
            )
        kept = scores[:end]
        if np.isinf(kept).any():
            row, col = np.argwhere(np.isinf(kept))[0]
            raise DataError(f"scores contain an infinite value at row {row}, column {col}")
        return np.clip(np.nan_to_num(kept, nan=0.0), -SCORE_CLIP, SCORE_CLIP).astype(np.float32)

    def _clean_inputs(self, inputs: np.ndarray, n_periods: int, end: int) -> np.ndarray:
        inputs = np.asarray(inputs, dtype=float)
        if inputs.ndim != 3 or inputs.shape[:2] != (n_periods, self.n_assets):
            raise DataError(
                f"inputs have shape {inputs.shape}; expected ({n_periods}, {self.n_assets}, "
                "n_columns): the model inputs of every date and asset"
            )
        kept = inputs[:end]
        if np.isinf(kept).any():
            row, col, column = np.argwhere(np.isinf(kept))[0]
            raise DataError(
                f"inputs contain an infinite value at row {row}, asset column {col}, input "
                f"column {column}"
            )
        return clean_inputs(kept).astype(np.float32)

    # ----------------------------------------------------------------------------- spaces
    def observation_space(self) -> spaces.Box:
        """Bounds: returns ±:data:`RETURN_CLIP`, weights [0, 1], scores ±:data:`SCORE_CLIP`,
        inputs ±:data:`INPUT_CLIP`."""
        n, window = self.n_assets, self.lookback * self.n_assets
        low = [np.full(window, -RETURN_CLIP), np.zeros(n)]
        high = [np.full(window, RETURN_CLIP), np.ones(n)]
        if self.extras is not None:
            bound = [SCORE_CLIP] * int(self.scores is not None)
            bound += [INPUT_CLIP] * (self.extra_columns - len(bound))
            low.append(-np.tile(bound, n))
            high.append(np.tile(bound, n))
        return spaces.Box(
            np.concatenate(low).astype(np.float32),
            np.concatenate(high).astype(np.float32),
            dtype=np.float32,
        )

    def action_space(self) -> spaces.Box:
        return spaces.Box(-ACTION_BOUND, ACTION_BOUND, shape=(self.n_assets,), dtype=np.float32)

    # ----------------------------------------------------------------------------- rules
    def draw_start(
        self, rng: np.random.Generator, random_start: bool, options: dict[str, Any] | None
    ) -> int:
        """First decision row of an episode: ``options["start_row"]``, a uniform draw, or the first.

        Random starts leave room for a full ``episode_length`` before the last decision row.
        Exactly one draw from ``rng`` per random start, so equally seeded envs stay in step.
        """
        if options and options.get("start_row") is not None:
            row = int(options["start_row"])
            if not self.first_row <= row <= self.last_row:
                raise ValueError(
                    f"start_row={row} is outside the decision rows "
                    f"{self.first_row}..{self.last_row}"
                )
            return row
        if not random_start:
            return self.first_row
        span = self.last_row - self.first_row + 1
        if self.episode_length is not None:
            span -= self.episode_length - 1
        return self.first_row + int(rng.integers(span))

    def observe(self, rows: np.ndarray, drifted: np.ndarray) -> np.ndarray:
        """Observations at decision ``rows``: data up to each row, nothing later.

        Parameters
        ----------
        rows : ndarray of int, shape (batch,)
        drifted : ndarray, shape (batch, n_assets)
            Pre-trade weights (the previous target drifted through row ``t``).

        Returns
        -------
        ndarray of float32, shape (batch, observation_size)
            ``[returns rows t−lookback+1..t flattened time-major (oldest first, all assets per
            row); drifted weights; per asset (asset-major): scores[t] and inputs[t], if
            given]``.
        """
        rows = np.asarray(rows)
        window = self.window[rows[:, None] + self._offsets].reshape(len(rows), -1)
        # Weights stay in [0, 1] mathematically; the clip only removes float rounding at 1.
        parts = [window, np.clip(drifted, 0.0, 1.0).astype(np.float32)]
        if self.extras is not None:
            parts.append(self.extras[rows].reshape(len(rows), -1))
        return np.concatenate(parts, axis=1)

    def trade(
        self,
        rows: np.ndarray,
        actions: np.ndarray,
        drifted: np.ndarray,
        envs: np.ndarray | None = None,
    ) -> StepOutcome:
        """Project logits to Top-K weights at ``rows``; earn row ``rows + 1`` by engine accounting.

        Parameters
        ----------
        rows : ndarray of int, shape (batch,)
        actions : ndarray, shape (batch, n_assets)
            Logits; only assets with a return at row ``t`` (listed by the decision date) may
            receive weight.
        drifted : ndarray, shape (batch, n_assets)
        envs : ndarray of int, shape (batch,), optional
            Which environments of the batch these are (the reward keeps state per env).
        """
        rows = np.asarray(rows)
        actions = np.asarray(actions, dtype=float)
        if actions.shape != (len(rows), self.n_assets):
            raise ValueError(
                f"actions have shape {actions.shape}; expected {(len(rows), self.n_assets)}"
            )
        weights = top_k_weights(actions, self.k, self.tau, self.tradable[rows])
        sim = rebalance_step(weights, drifted, self.forward[rows + 1], self.cost_model)
        nnz = (weights > 0).sum(axis=1)
        net = sim.net - self.lambda_sparse * nnz / self.n_assets
        ruined = 1.0 + net <= 0.0
        envs = np.arange(len(rows)) if envs is None else np.asarray(envs)
        paid = self.reward(np.where(ruined, 0.0, net), envs)
        reward = np.where(ruined, RUIN_REWARD, paid)
        return StepOutcome(weights=weights, sim=sim, net=net, reward=reward, ruined=ruined)

    def at_end(self, next_rows: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Whether episodes are truncated: past the last decision row or the episode length."""
        over = np.asarray(next_rows) > self.last_row
        if self.episode_length is not None:
            over |= np.asarray(steps) >= self.episode_length
        return over

    def step_info(self, rows: np.ndarray, out: StepOutcome, i: int) -> dict[str, Any]:
        """The ``info`` dict of batch member ``i`` (scalars as Python floats)."""
        return {
            "gross": float(out.sim.gross[i]),
            "cost": float(out.sim.cost[i]),
            "net": float(out.net[i]),
            "weights": out.weights[i],
            "turnover": float(out.sim.turnover[i]),
            "date_row": int(rows[i]),
        }
