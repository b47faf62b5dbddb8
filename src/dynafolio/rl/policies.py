"""Policies of the PPO allocators: SB3's MLP, and a per-asset network shared by all assets.

``per_asset`` is the EIIE idea of Jiang, Xu & Liang (2017, "A deep reinforcement learning
framework for the financial portfolio management problem"): one small network scores each
asset from *its own* inputs — its last ``lookback`` returns, its current (drifted) weight,
for the hybrid its forecast, and any model inputs of the state (``features``) — and the
scores are the logits. The same weights score every
asset, so the policy is permutation-equivariant (reordering the assets reorders the logits)
and its size does not grow with the number of assets; the critic averages the assets'
embeddings. Built as an SB3 :class:`~stable_baselines3.common.policies.ActorCriticPolicy`
whose ``mlp_extractor`` is :class:`PerAssetNetwork`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from dynafolio.rl.task import ACTION_BOUND

__all__ = [
    "POLICIES",
    "PerAssetNetwork",
    "PerAssetPolicy",
    "build_policy",
    "n_parameters",
    "policy_kwargs",
]


class PerAssetNetwork(nn.Module):
    """Scores assets with one shared MLP; the ``mlp_extractor`` of :class:`PerAssetPolicy`.

    Input: the environment's flat observation ``(batch, (lookback + 1 + extra) · n_assets)``
    (returns window time-major, weights, then ``extra_columns`` per asset, asset-major: its
    score, its model inputs). Actor latent: one score per asset, ``(batch, n_assets)``;
    critic latent: the mean embedding, ``(batch, hidden[-1])``.
    """

    def __init__(
        self, n_assets: int, lookback: int, extra_columns: int, hidden: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.n_assets, self.lookback, self.extra_columns = n_assets, lookback, int(extra_columns)
        sizes = [lookback + 1 + self.extra_columns, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.Tanh()]
        self.embed = nn.Sequential(*layers)
        self.score = nn.Linear(sizes[-1], 1)
        self.latent_dim_pi = n_assets
        self.latent_dim_vf = sizes[-1]

    def per_asset_inputs(self, features: torch.Tensor) -> torch.Tensor:
        """``(batch, n_assets, lookback + 1 + extra_columns)``: each asset's own inputs."""
        n, lookback, extra = self.n_assets, self.lookback, self.extra_columns
        batch = features.shape[0]
        window = features[:, : lookback * n].reshape(batch, lookback, n).transpose(1, 2)
        parts = [window, features[:, lookback * n : (lookback + 1) * n].unsqueeze(-1)]
        if extra:
            tail = features[:, (lookback + 1) * n : (lookback + 1 + extra) * n]
            parts.append(tail.reshape(batch, n, extra))
        return torch.cat(parts, dim=-1)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return self.score(self.embed(self.per_asset_inputs(features))).squeeze(-1)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.embed(self.per_asset_inputs(features)).mean(dim=1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = self.per_asset_inputs(features)  # both heads read this one copy
        layers = [layer for layer in self.embed if isinstance(layer, nn.Linear)]
        if torch.is_grad_enabled() and (not layers or _autocast(inputs)):
            # No shared layers (nothing to reuse), or autocast (which casts the weights the
            # reuse would read): two plain passes.
            return self.score(self.embed(inputs)).squeeze(-1), self.embed(inputs).mean(dim=1)
        if torch.is_grad_enabled():
            # Training: two graphs, so each head's gradient flows through its own copy of the
            # shared layers and the weights' gradients keep their summation order (one shared
            # graph would sum them first: equal up to rounding, but not bit for bit). The
            # critic's copy is :class:`_SecondPass`, which reuses the actor's layer outputs
            # instead of computing them again (a matmul and a tanh per layer, which grow with
            # n_assets) and whose backward runs autograd's own operations.
            activations = []
            x = inputs
            for layer in layers:
                x = torch.tanh(layer(x))
                activations.append(x.detach())
            logits = self.score(x).squeeze(-1)
            parameters = [p for layer in layers for p in (layer.weight, layer.bias)]
            critic = _SecondPass.apply(inputs, len(layers), *activations, *parameters)
            return logits, critic.mean(dim=1)
        # Rollouts (SB3 steps the policy under no_grad): both heads read one pass, whose
        # values are exactly those of two — half the work, which grows with n_assets.
        embedded = self.embed(inputs)
        return self.score(embedded).squeeze(-1), embedded.mean(dim=1)


def _autocast(x: torch.Tensor) -> bool:
    return torch.is_autocast_enabled(x.device.type)


class _SecondPass(torch.autograd.Function):
    """The shared layers (``Linear`` then ``tanh``, each) applied a second time to the same
    ``inputs``, whose outputs are already known (the first pass's ``activations``). Forward
    returns the last of them; backward is, operation for operation, what autograd runs for
    ``torch.tanh(linear(x))`` on a 3-d input (``tanh_backward``; the reshape to 2-d;
    ``addmm``'s weight gradient ``grad.t().mm(x)``, its input gradient ``grad.mm(weight)``
    and the bias's ``sum_to_size``), so gradients are bit for bit those of a second pass.

    Hand-written because no autograd API lets a second graph share a first one's forward
    values; ``tests/test_policies.py`` checks the gradients against two plain passes. It
    assumes contiguous weights (as ``nn.Linear`` makes and loads them: autograd takes another
    branch for column-major ones) and is first-order only: a double backward is refused."""

    @staticmethod
    def forward(ctx: Any, inputs: torch.Tensor, n_layers: int, *tensors: torch.Tensor):
        activations, parameters = tensors[:n_layers], tensors[n_layers:]
        ctx.save_for_backward(inputs, *activations, *parameters[0::2])
        ctx.n_layers = n_layers
        return activations[-1].view_as(activations[-1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        if torch.is_grad_enabled():
            # Its operations read detached activations: second derivatives would be wrong.
            raise RuntimeError("PerAssetNetwork's training forward is first-order only")
        inputs, *saved = ctx.saved_tensors
        activations, weights = saved[: ctx.n_layers], saved[ctx.n_layers :]
        gradients: list[torch.Tensor] = []
        for i in reversed(range(ctx.n_layers)):
            layer_input = inputs if i == 0 else activations[i - 1]
            pre = torch.ops.aten.tanh_backward(grad, activations[i])
            pre = pre.reshape(-1, pre.shape[-1])
            weight_grad = pre.t().mm(layer_input.reshape(-1, layer_input.shape[-1]))
            gradients[:0] = [weight_grad, pre.sum_to_size(pre.shape[-1])]
            if i or ctx.needs_input_grad[0]:  # the inputs are data, unless a caller asks
                grad = pre.mm(weights[i]).view(layer_input.shape)
        input_grad = grad if ctx.needs_input_grad[0] else None
        return input_grad, None, *([None] * ctx.n_layers), *gradients


class PerAssetPolicy(ActorCriticPolicy):
    """SB3 actor-critic whose logits are :class:`PerAssetNetwork` scores.

    The scores are the Gaussian's mean actions directly (no dense layer mixing assets) and
    the log standard deviation is one shared scalar, so nothing depends on the asset order.
    Extra keyword arguments: ``n_assets``, ``lookback``, ``extra_columns`` (per asset, after
    the window and the weight); ``net_arch`` gives the hidden sizes of the shared network.
    """

    def __init__(
        self,
        *args: Any,
        n_assets: int,
        lookback: int,
        extra_columns: int,
        net_arch: list[int] | tuple[int, ...] = (32, 32),
        **kwargs: Any,
    ) -> None:
        self._per_asset = {
            "n_assets": n_assets,
            "lookback": lookback,
            "extra_columns": extra_columns,
            "hidden": tuple(net_arch),
        }
        super().__init__(*args, net_arch=[], **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = PerAssetNetwork(**self._per_asset)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        # Mean actions are the per-asset scores themselves; one exploration scale for all.
        self.action_net = nn.Identity()
        # The score layer plays the part of SB3's action net, so it gets that net's small
        # initial gain (0.01). With the extractor's gain (√2) the first policy ranks assets by
        # a random-signed function of their inputs (on a foresight market: often the worst
        # assets first), which PPO's small steps then take tens of thousands of steps to undo.
        if self.ortho_init:
            nn.init.orthogonal_(self.mlp_extractor.score.weight, gain=0.01)
            nn.init.zeros_(self.mlp_extractor.score.bias)
        self.log_std = nn.Parameter(torch.full((1,), float(self.log_std_init)))
        self.optimizer = self.optimizer_class(
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )


#: ``policy`` setting -> SB3 policy class ("mlp": SB3's own MlpPolicy).
POLICIES: dict[str, type[ActorCriticPolicy]] = {
    "mlp": ActorCriticPolicy,
    "per_asset": PerAssetPolicy,
}


def n_parameters(
    policy: str,
    observation_size: int,
    n_assets: int,
    net_arch: Sequence[int],
    lookback: int,
    extra_columns: int,
) -> int:
    """Number of parameters (weights, biases, log standard deviations) in the network that
    :func:`build_policy` builds, counted from its construction alone,
    so that a saved file's tensors can be checked before anything is allocated.

    ``mlp`` (SB3's :class:`ActorCriticPolicy`): separate actor and critic MLPs from the
    ``observation_size`` inputs through ``net_arch``, an action layer to ``n_assets`` means,
    a value layer, and one log standard deviation per asset. ``per_asset``
    (:class:`PerAssetPolicy`): one MLP from an asset's ``lookback + 1 + extra_columns`` inputs
    (its window, its weight, its score and model inputs, if any) through
    ``net_arch``, a one-output score layer, a value layer on the mean embedding, and one
    shared log standard deviation. This count does not depend on ``n_assets``.

    Python integers, so an absurd header gives an absurd count instead of an overflow.
    """
    if policy == "mlp":
        sizes = [observation_size, *net_arch]
        heads = _dense([sizes[-1], n_assets]) + _dense([sizes[-1], 1])
        return 2 * _dense(sizes) + heads + n_assets
    if policy == "per_asset":
        sizes = [lookback + 1 + int(extra_columns), *net_arch]
        return _dense(sizes) + 2 * _dense([sizes[-1], 1]) + 1
    raise ValueError(f"unknown policy {policy!r}; choose one of {sorted(POLICIES)}")


def _dense(sizes: Sequence[int]) -> int:
    """Weights and biases of ``nn.Linear`` layers between consecutive ``sizes``."""
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def build_policy(
    observation_size: int,
    n_assets: int,
    net_arch: tuple[int, ...],
    policy: str = "mlp",
    lookback: int = 1,
    extra_columns: int = 0,
    ortho_init: bool = True,
) -> ActorCriticPolicy:
    """The SB3 actor-critic a PPO agent of the Top-K environment uses.

    ``policy="mlp"``: SB3's MLP (Tanh); ``"per_asset"``: one network shared by all assets
    (:class:`~dynafolio.rl.policies.PerAssetPolicy`). Observations are already normalised
    (the caller applies the VecNormalize statistics); actions are ``n_assets`` logits in
    ±:data:`~dynafolio.rl.task.ACTION_BOUND`. ``ortho_init=False`` skips SB3's orthogonal
    initialisation (a QR decomposition per layer) for weights that are about to be loaded.
    """
    observation_space = spaces.Box(-np.inf, np.inf, shape=(observation_size,), dtype=np.float32)
    action_space = spaces.Box(-ACTION_BOUND, ACTION_BOUND, shape=(n_assets,), dtype=np.float32)
    network = POLICIES[policy](
        observation_space,
        action_space,
        lr_schedule=lambda _: 0.0,
        ortho_init=ortho_init,
        **policy_kwargs(policy, net_arch, n_assets, lookback, extra_columns),
    )
    network.set_training_mode(False)
    return network


def policy_kwargs(
    policy: str, net_arch: tuple[int, ...], n_assets: int, lookback: int, extra_columns: int
) -> dict:
    """SB3's ``policy_kwargs`` of ``policy`` (Tanh layers of ``net_arch``)."""
    kwargs: dict = {"net_arch": list(net_arch), "activation_fn": torch.nn.Tanh}
    if policy == "per_asset":
        kwargs.update(n_assets=n_assets, lookback=lookback, extra_columns=int(extra_columns))
    return kwargs
