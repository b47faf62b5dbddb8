"""The per-asset policy network: one pass for both heads when no gradient is taken."""

from __future__ import annotations

import torch

from dynafolio.rl.policies import PerAssetNetwork


def test_per_asset_forward_without_gradients_equals_the_two_pass_forward() -> None:
    # Rollouts run the policy under no_grad with one shared pass; its logits and critic
    # latent must be bit for bit those of the training forward (two passes).
    torch.manual_seed(0)
    for with_scores in (False, True):
        network = PerAssetNetwork(n_assets=37, lookback=6, with_scores=with_scores, hidden=(16, 8))
        features = torch.randn(11, (6 + 1 + int(with_scores)) * 37)
        actor, critic = network(features)  # gradients on: two passes
        with torch.no_grad():
            fast_actor, fast_critic = network(features)
        assert actor.requires_grad and not fast_actor.requires_grad
        assert torch.equal(actor.detach(), fast_actor)
        assert torch.equal(critic.detach(), fast_critic)
        assert fast_actor.shape == (11, 37) and fast_critic.shape == (11, 8)
