"""The controls experiment's rules, and several runs executed as one task graph."""

from __future__ import annotations

import pytest

from conftest import TINY_PPO
from dynafolio.experiments.config import validate_config
from dynafolio.experiments.plan import load_prices
from dynafolio.experiments.runner import JointContext
from dynafolio.experiments.tasks import RunContext, build_tasks
from dynafolio.studies import controls, run_experiment, run_experiments


@pytest.mark.parametrize(
    ("market", "reads", "share", "difference", "p", "expected"),
    [
        ("momentum", "returns", 0.3, 1.0, 0.001, "learns"),  # no ceiling on weak momentum
        ("momentum", "returns", 0.9, 1.0, 0.02, "does not learn"),  # not significant
        ("momentum", "returns", 0.9, -1.0, 0.001, "does not learn"),  # significantly worse
        ("strong momentum", "returns", 0.4, 5.0, 0.0001, "does not learn"),  # below the ceiling
        ("strong momentum", "returns", 0.6, 5.0, 0.0001, "learns"),
        ("foresight", "forecasts", 0.4, 5.0, 0.0001, "does not learn"),
        ("foresight", "forecasts", 1.1, 5.0, 0.0001, "learns"),
        ("foresight", "returns", 0.0, 0.1, 0.5, "no edge to find (right)"),
        ("noise", "returns", 0.0, 0.5, 0.3, "no edge to find (right)"),
        ("noise", "forecasts", 0.0, 2.0, 0.005, "false edge"),
    ],
)
def test_the_verdict_rule(market, reads, share, difference, p, expected):
    assert controls.verdict(market, reads, share, difference, p) == expected


def test_every_market_of_the_controls_is_a_valid_config_with_the_oracle_on_foresight():
    main = validate_config(controls.default_config())
    assert main.benchmark == {"kind": "random_topk", "k": 5}
    assert main.data.known_market.kind == "momentum"
    for label, kind, change in controls.OTHER_MARKETS:
        config = controls.market_config(main, label, kind, change)
        assert config.data.known_market.kind == kind
        hybrids = [s for s in config.strategies if s.kind == "ppo_topk" and s.forecaster]
        assert {h.forecaster.model for h in hybrids} == (
            {"oracle"} if kind == "foresight" else {"univariate_lstm"}
        )
        policies = {s.ppo.policy for s in config.strategies if s.kind == "ppo_topk"}
        assert policies == {"per_asset", "mlp"}


def _tiny(dataset: str, phi: float = 0.2):
    return validate_config(
        {
            "name": dataset,
            "data": {"dataset": dataset, "market": {"n_assets": 4, "n_periods": 90, "phi": phi}},
            "n_seeds": 1,
            "benchmark": "Random Top-2",
            "strategies": [
                {"kind": "equal_weight"},
                {"kind": "random_topk", "name": "Random Top-2", "k": 2},
                {
                    "kind": "ppo_topk",
                    "name": "PPO-only Top-2",
                    "k": 2,
                    "lookback": 4,
                    "score_initial_window": 20,
                    "ppo": TINY_PPO,
                },
            ],
        }
    )


def test_runs_executed_as_one_graph_equal_runs_alone_and_share_their_learner_check():
    configs = [_tiny("momentum"), _tiny("noise")]
    contexts = [RunContext.build(c, load_prices(c)) for c in configs]
    joint = JointContext(tuple(contexts))
    tasks = joint.tasks([build_tasks(c) for c in contexts])
    checks = [t for t in tasks if t.kind == "learnability"]
    assert len(checks) == 1  # the same PPO configuration and shape on both markets
    assert len({t.id for t in tasks}) == len(tasks)
    together = run_experiments(configs)
    for config, result in zip(configs, together, strict=True):
        alone = run_experiment(config)
        assert result.table.to_csv() == alone.table.to_csv()
        assert result.learnability == alone.learnability
