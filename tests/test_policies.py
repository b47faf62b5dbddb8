"""The per-asset policy network: one pass for both heads when no gradient is taken, and a
training forward (the critic's graph reusing the actor's layer outputs) whose gradients are
bit for bit those of two independent passes."""

from __future__ import annotations

import pytest
import torch

from dynafolio.rl.policies import PerAssetNetwork


def test_per_asset_forward_without_gradients_equals_the_two_pass_forward() -> None:
    # Rollouts run the policy under no_grad with one shared pass; its logits and critic
    # latent must be bit for bit those of the training forward (two passes).
    torch.manual_seed(0)
    for extra in (0, 1, 6):  # returns only, a score, a score and five inputs
        network = PerAssetNetwork(n_assets=37, lookback=6, extra_columns=extra, hidden=(16, 8))
        features = torch.randn(11, (6 + 1 + extra) * 37)
        actor, critic = network(features)  # gradients on: two passes
        with torch.no_grad():
            fast_actor, fast_critic = network(features)
        assert actor.requires_grad and not fast_actor.requires_grad
        assert torch.equal(actor.detach(), fast_actor)
        assert torch.equal(critic.detach(), fast_critic)
        assert fast_actor.shape == (11, 37) and fast_critic.shape == (11, 8)


@pytest.mark.parametrize("hidden", [(16, 8), (8,), (64, 64), (12, 10, 6)])
def test_training_forward_gradients_equal_two_independent_passes(hidden) -> None:
    # The critic's copy of the shared layers reuses the actor's layer outputs and runs its own
    # backward (_SecondPass); every weight's gradient must still be bit for bit that of two
    # plain passes (what PPO trained on), whatever the number and widths of the layers.
    torch.manual_seed(1)
    network = PerAssetNetwork(n_assets=29, lookback=5, extra_columns=1, hidden=hidden)
    features = torch.randn(13, (5 + 2) * 29)
    weights = torch.randn(13, 29), torch.randn(13, hidden[-1])

    def gradients(actor: torch.Tensor, critic: torch.Tensor) -> list[torch.Tensor]:
        network.zero_grad(set_to_none=True)
        ((actor * weights[0]).sum() + (critic * weights[1]).pow(2).sum()).backward()
        return [p.grad.clone() for p in network.parameters()]

    inputs = network.per_asset_inputs(features)
    plain = gradients(
        network.score(network.embed(inputs)).squeeze(-1), network.embed(inputs).mean(dim=1)
    )
    reused = gradients(*network(features))
    assert len(plain) == len(reused) == 2 * len(hidden) + 2
    for a, b in zip(plain, reused, strict=True):
        assert torch.equal(a, b)


def test_each_asset_reads_its_own_extra_columns() -> None:
    # The observation's tail holds each asset's score and inputs asset-major; the network's
    # per-asset rows must be [its window oldest first, its weight, its extra columns].
    n, lookback, extra = 4, 3, 3
    window = torch.arange(lookback * n, dtype=torch.float32).reshape(lookback, n)  # time-major
    weights = 100 + torch.arange(n, dtype=torch.float32)
    extras = 1000 + torch.arange(n * extra, dtype=torch.float32).reshape(n, extra)
    observation = torch.cat([window.reshape(-1), weights, extras.reshape(-1)])[None]
    network = PerAssetNetwork(n_assets=n, lookback=lookback, extra_columns=extra, hidden=(8,))
    rows = network.per_asset_inputs(observation)[0]
    for asset in range(n):
        expected = torch.cat([window[:, asset], weights[asset : asset + 1], extras[asset]])
        assert torch.equal(rows[asset], expected)


def test_the_training_forward_gives_inputs_their_gradient_and_refuses_a_double_backward():
    # The inputs are data in PPO, but a caller asking for their gradient (e.g. a saliency
    # map) gets both heads' share, bit for bit; second derivatives are refused, not wrong.
    torch.manual_seed(2)
    network = PerAssetNetwork(n_assets=7, lookback=4, extra_columns=2, hidden=(8, 6))
    features = torch.randn(5, (4 + 1 + 2) * 7, requires_grad=True)

    def input_gradient(actor: torch.Tensor, critic: torch.Tensor) -> torch.Tensor:
        (gradient,) = torch.autograd.grad(actor.sum() + critic.pow(2).sum(), features)
        return gradient

    inputs = network.per_asset_inputs(features)
    plain = input_gradient(
        network.score(network.embed(inputs)).squeeze(-1), network.embed(inputs).mean(dim=1)
    )
    assert torch.equal(plain, input_gradient(*network(features)))
    _, critic = network(features)
    with pytest.raises(RuntimeError, match="first-order only"):
        torch.autograd.grad(critic.pow(2).sum(), features, create_graph=True)


def test_a_network_without_hidden_layers_trains():
    network = PerAssetNetwork(n_assets=3, lookback=2, extra_columns=0, hidden=())
    actor, critic = network(torch.randn(4, (2 + 1) * 3))
    (actor.sum() + critic.sum()).backward()
    assert critic.shape == (4, 3) and network.score.weight.grad is not None
