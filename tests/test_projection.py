"""Top-K softmax projection (S1 ``ActionToWeights``): properties and a reference oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dynafolio.rl.projection import top_k_weights


def reference_top_k(logits, k, tau, tradable):
    """One row, written independently with plain Python: sort, softmax, threshold, fallback."""
    candidates = [i for i in range(len(logits)) if tradable[i]]
    # Largest logits first; ties keep the earliest asset (Python's sort is stable).
    kept = sorted(candidates, key=lambda i: -logits[i])[:k]
    top = max(logits[i] for i in kept)
    exp = {i: math.exp(logits[i] - top) for i in kept}
    total = sum(exp.values())
    weights = [0.0] * len(logits)
    for i in kept:
        share = exp[i] / total
        weights[i] = share if share >= tau else 0.0
    if sum(weights) == 0.0:
        weights[kept[0]] = 1.0
    total = sum(weights)
    return np.array([w / total for w in weights])


@st.composite
def problems(draw, max_assets=12, n_assets=None):
    n = n_assets or draw(st.integers(1, max_assets))
    logits = draw(arrays(float, n, elements=st.floats(-30, 30, allow_subnormal=False)))
    tradable = draw(arrays(bool, n, elements=st.booleans()))
    tradable[draw(st.integers(0, n - 1))] = True  # every row needs one tradable asset
    k = draw(st.integers(1, max_assets + 3))
    tau = draw(st.one_of(st.just(0.0), st.floats(0.0, 0.99)))
    return logits, k, tau, tradable


@settings(max_examples=250, deadline=None)
@given(problem=problems())
def test_invariants_and_reference(problem):
    logits, k, tau, tradable = problem
    weights = top_k_weights(logits, k, tau, tradable)
    nonzero = weights > 0
    assert weights.shape == logits.shape
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert (weights >= 0).all()
    assert nonzero.sum() <= k
    assert (weights[~tradable] == 0).all()
    # Threshold: every kept weight is at least tau (renormalising only raises them), and the
    # all-in fallback is one asset at 1.
    assert (weights[nonzero] >= tau - 1e-12).all()
    np.testing.assert_allclose(weights, reference_top_k(logits, k, tau, tradable), atol=1e-12)


@settings(max_examples=150, deadline=None)
@given(problem=problems())
def test_fallback_is_all_in_on_the_arg_max(problem):
    logits, k, tau, tradable = problem
    weights = top_k_weights(logits, k, tau, tradable)
    best = int(np.flatnonzero(tradable)[np.argmax(logits[tradable])])  # first of ties
    if (weights > 0).sum() == 1:
        assert weights[best] == 1.0
    if tau > 0.5:  # two weights >= tau would sum above 1: at most the leader survives
        assert weights[best] == 1.0


@settings(max_examples=150, deadline=None)
@given(problem=problems())
def test_order_preserving(problem):
    logits, k, tau, tradable = problem
    weights = top_k_weights(logits, k, tau, tradable)
    held = np.flatnonzero(weights > 0)
    for i in held:
        for j in held:
            if logits[i] > logits[j]:
                assert weights[i] >= weights[j]
            if logits[i] == logits[j]:
                assert weights[i] == pytest.approx(weights[j], rel=1e-12)
        # Anything tradable left out ranks no higher than what is held.
        left_out = tradable & (weights == 0)
        assert (logits[left_out] <= logits[i]).all()


@settings(max_examples=100, deadline=None)
@given(data=st.data(), n_assets=st.integers(1, 8))
def test_batch_rows_equal_single_rows(data, n_assets):
    rows = data.draw(st.lists(problems(n_assets=n_assets), min_size=1, max_size=6))
    k, tau = rows[0][1], rows[0][2]
    logits = np.stack([r[0] for r in rows])
    tradable = np.stack([r[3] for r in rows])
    batch = top_k_weights(logits, k, tau, tradable)
    assert batch.shape == logits.shape
    for row in range(len(rows)):
        single = top_k_weights(logits[row], k, tau, tradable[row])
        np.testing.assert_array_equal(batch[row], single)


def test_hand_example():
    # Top-2 of (1, 3, 2, 0): assets 1 and 2, softmax(3, 2) = (e / (e + 1), 1 / (e + 1)).
    weights = top_k_weights(np.array([1.0, 3.0, 2.0, 0.0]), k=2)
    e = math.e
    np.testing.assert_allclose(weights, [0, e / (e + 1), 1 / (e + 1), 0])
    # tau 0.3 drops 0.269, leaving all-in on asset 1; tau 0.2 keeps both.
    np.testing.assert_array_equal(
        top_k_weights(np.array([1.0, 3.0, 2.0, 0.0]), 2, 0.3), [0, 1, 0, 0]
    )
    assert (top_k_weights(np.array([1.0, 3.0, 2.0, 0.0]), 2, 0.2) > 0).sum() == 2


def test_non_tradable_nan_is_ignored_and_k_larger_than_universe():
    logits = np.array([np.nan, 0.0, 1.0])
    weights = top_k_weights(logits, k=10, tradable=np.array([False, True, True]))
    np.testing.assert_allclose(weights, [0, 1 / (1 + math.e), math.e / (1 + math.e)])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "k must be"),
        ({"k": 2, "tau": 1.0}, "tau"),
        ({"k": 2, "tau": -0.1}, "tau"),
        ({"k": 2, "tradable": np.array([True, False])}, "shape"),
        ({"k": 2, "tradable": np.zeros(3, dtype=bool)}, "no tradable"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        top_k_weights(np.array([0.1, 0.2, 0.3]), **kwargs)


def test_non_finite_tradable_logit_raises():
    with pytest.raises(ValueError, match="finite"):
        top_k_weights(np.array([0.1, np.nan, 0.3]), k=2)
    with pytest.raises(ValueError, match="finite"):
        top_k_weights(np.array([[0.1, np.inf, 0.3]]), k=2)
