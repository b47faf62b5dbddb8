"""One PPO update of the per-asset policy: the training forward whose critic graph reuses the
actor's layer outputs, against two plain passes.

What is compared
----------------
:class:`dynafolio.rl.policies.PerAssetNetwork`'s training forward builds one graph per head
(so the weights' gradients keep the summation order of two independent passes); since the
critic's copy of the shared layers reads the same inputs, it returns the actor's layer outputs
instead of computing them again and runs autograd's own backward operations on them
(``_SecondPass``). The baseline is the plain forward,
``score(embed(x))`` and ``embed(x).mean(1)``, defined below. Both give bit-identical gradients
(``tests/test_policies.py``); this script checks that the two models' weights are equal after
every update before it reports anything.

Task: SB3's ``train()`` (10 epochs of minibatches of 128, S1's :class:`PPOSettings`) on one
rollout of 4,096 steps of the batched Top-K environment on the noise market of
``benchmarks/scaling.py`` (N assets, 255 training weeks), torch on one thread as in a run's
workers. ``--repeats`` (default 3) updates of each, alternating which goes first; reported:
the median CPU seconds of each and their ratio.

Run it from the repository root (about 2 minutes on 2 CPU cores at N = 100)::

    T=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296
    GLIBC_TUNABLES=$T:glibc.malloc.top_pad=268435456 \\
        .venv/bin/python benchmarks/per_asset_update.py [--n-assets 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scaling  # noqa: E402  (the same market and PPO setup as the cost curve)

from dynafolio.rl.policies import PerAssetNetwork  # noqa: E402

REUSED = PerAssetNetwork.forward


def plain_forward(self: PerAssetNetwork, features: torch.Tensor):
    """The baseline: two plain passes through the shared layers when gradients are taken."""
    inputs = self.per_asset_inputs(features)
    if torch.is_grad_enabled():
        return self.score(self.embed(inputs)).squeeze(-1), self.embed(inputs).mean(dim=1)
    embedded = self.embed(inputs)
    return self.score(embedded).squeeze(-1), embedded.mean(dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-assets", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    update = scaling._ppo(args.n_assets, "per_asset")["ppo update (per_asset)"]
    model = next(c.cell_contents for c in update.__closure__ if hasattr(c.cell_contents, "policy"))
    start = copy.deepcopy(model.policy.state_dict())
    times: dict[str, list[float]] = {"plain": [], "reused": []}
    weights: dict[str, list[torch.Tensor]] = {}
    for repeat in range(args.repeats + 1):  # the first round is the warm-up
        order = ("plain", "reused") if repeat % 2 else ("reused", "plain")
        for name in order:
            PerAssetNetwork.forward = plain_forward if name == "plain" else REUSED
            model.policy.load_state_dict(start)
            model.policy.optimizer = model.policy.optimizer_class(
                model.policy.parameters(), lr=model.learning_rate, **model.policy.optimizer_kwargs
            )
            np.random.seed(repeat)  # SB3 draws the minibatches from numpy's global generator
            torch.manual_seed(repeat)
            seconds = time.process_time()
            model.train()
            seconds = time.process_time() - seconds
            weights[name] = [p.detach().clone() for p in model.policy.parameters()]
            if repeat:
                times[name].append(seconds)
        if not all(torch.equal(a, b) for a, b in zip(*weights.values(), strict=True)):
            sys.exit("the two forwards trained different weights: the comparison is void")
    PerAssetNetwork.forward = REUSED
    plain, reused = (statistics.median(times[n]) for n in ("plain", "reused"))
    print(f"per-asset PPO update, N = {args.n_assets}, {args.repeats} alternating repeats")
    print(f"  plain two passes : {plain:7.2f} CPU s  {[round(t, 2) for t in times['plain']]}")
    print(f"  reused outputs   : {reused:7.2f} CPU s  {[round(t, 2) for t in times['reused']]}")
    print(f"  ratio reused / plain: {reused / plain:.2f} (weights equal bit for bit)")


if __name__ == "__main__":
    main()
