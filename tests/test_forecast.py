"""Forecasters: windows, training loops, and the forecaster contract on tiny synthetic data."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pytest
import torch

from dynafolio.errors import ConfigError, DataError
from dynafolio.forecast.base import Forecaster
from dynafolio.forecast.linear import ARForecaster
from dynafolio.forecast.lstm import RecurrentRegressor, UnivariateLSTMForecaster
from dynafolio.forecast.panel import StackedLSTMForecaster, TransformerForecaster
from dynafolio.forecast.price import PriceLSTMForecaster
from dynafolio.forecast.stacked import BatchedLSTM, _LSTMRecurrence, train_stacked
from dynafolio.forecast.training import TrainSettings, n_validation, train_network
from dynafolio.forecast.windows import make_windows, stack_windows
from dynafolio.history import MarketHistory
from dynafolio.progress import reporting_progress
from forecast_probe import assert_no_look_ahead, full_panel_fit, one_row_late, stream_forecasts

# Small enough that every fit takes well under a second.
FAST: dict[str, Callable[..., Forecaster]] = {
    "univariate": lambda **kw: UnivariateLSTMForecaster(
        **{"lookback": 8, "hidden": 8, "epochs": 4, **kw}
    ),
    "univariate_loop": lambda **kw: UnivariateLSTMForecaster(
        **{"lookback": 8, "hidden": 8, "epochs": 4, "batched": False, **kw}
    ),
    "stacked_lstm": lambda **kw: StackedLSTMForecaster(
        **{"lookback": 8, "units": (8, 4), "epochs": 4, **kw}
    ),
    "stacked_gru": lambda **kw: StackedLSTMForecaster(
        **{"lookback": 8, "units": (8, 4), "epochs": 4, "cell": "gru", **kw}
    ),
    "transformer": lambda **kw: TransformerForecaster(
        **{"lookback": 8, "d_model": 8, "n_heads": 2, "n_layers": 1, "epochs": 4, **kw}
    ),
    "price": lambda **kw: PriceLSTMForecaster(**{"lookback": 8, "hidden": 8, "epochs": 4, **kw}),
}
RETURN_MODELS = [name for name in FAST if name != "price"]


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and lose a lot when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def ar_prices(
    n_rows: int = 150, n_assets: int = 4, phi: float = 0.5, sigma: float = 0.02, seed: int = 0
) -> pd.DataFrame:
    """Weekly prices whose log returns follow ``r_t = phi · r_{t-1} + N(0, sigma²)`` per asset."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, sigma, size=(n_rows, n_assets))
    returns = np.zeros((n_rows, n_assets))
    for t in range(1, n_rows):
        returns[t] = phi * returns[t - 1] + noise[t]
    return pd.DataFrame(
        100.0 * np.exp(np.cumsum(returns, axis=0)),
        index=pd.date_range("2018-01-05", periods=n_rows, freq="W-FRI", name="date"),
        columns=pd.Index([f"A{i}" for i in range(n_assets)], name="asset"),
    )


def history_of(prices: pd.DataFrame) -> MarketHistory:
    return MarketHistory(prices, prices.pct_change(fill_method=None))


# --- windows -----------------------------------------------------------------------------


def test_windows_pair_each_input_with_the_next_row_and_skip_nan():
    values = np.arange(24.0).reshape(12, 2)
    values[6, 1] = np.nan  # samples 3..6 have row 6 as an input or as the target
    X, y = make_windows(values, lookback=3)
    starts = [0, 1, 2, 7, 8]
    assert X.shape == (5, 3, 2) and y.shape == (5, 2)
    np.testing.assert_array_equal(X[:, 0, 0], [2 * s for s in starts])
    np.testing.assert_array_equal(y[:, 0], X[:, -1, 0] + 2)  # the row after the window
    assert make_windows(values[:3], lookback=3)[0].shape == (0, 3, 2)


def test_stack_windows_pads_and_counts():
    a = make_windows(np.arange(10.0)[:, None], 3)
    b = make_windows(np.arange(6.0)[:, None], 3)
    X, y, counts = stack_windows([a, b])
    assert X.shape == (2, 7, 3, 1) and counts.tolist() == [7, 3]
    np.testing.assert_array_equal(y[1, :3, 0], [3, 4, 5])
    assert not X[1, 3:].any()


def test_validation_tail_size():
    assert n_validation(100, 0.1) == 10
    assert n_validation(25, 0.1) == 3  # ceil
    assert n_validation(5, 0.0) == 0 and n_validation(1, 0.5) == 0 and n_validation(2, 0.9) == 1


# --- the batched LSTM is the same function and the same training as the loop --------------


@pytest.mark.parametrize("units", [(5,), (5, 5, 5)])
def test_batched_lstm_equals_stacked_nn_lstm(units):
    torch.manual_seed(0)
    models = [RecurrentRegressor(2, units, 3, dropout=0.2).eval() for _ in range(3)]
    batched = BatchedLSTM.from_regressors(models)
    x = torch.randn(3, 4, 6, 2)
    expected = torch.stack([model(x[m]) for m, model in enumerate(models)])
    torch.testing.assert_close(batched(x), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("sequence", [False, True])
def test_hand_written_lstm_backward_matches_finite_differences(sequence):
    """Weights always; with ``sequence`` (a layer under another) every step's h is an
    output and the input gets a gradient too."""
    torch.manual_seed(0)
    x = torch.randn(4, 2, 3, 2, dtype=torch.float64, requires_grad=sequence)
    weights = [
        torch.randn(2, 2, 12, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 12, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 3, 12, dtype=torch.float64, requires_grad=True),
    ]
    assert torch.autograd.gradcheck(_LSTMRecurrence.apply, (x, *weights, sequence))


def test_a_two_layer_batched_lstm_trains_like_the_nn_lstm_it_copies():
    """One gradient step of the batched two-layer model equals that of each nn.LSTM model."""
    torch.manual_seed(0)
    models = [RecurrentRegressor(1, (4, 4), 1, dropout=0.0) for _ in range(2)]
    batched = BatchedLSTM.from_regressors(models).train()
    x, y = torch.randn(2, 5, 6, 1), torch.randn(2, 5, 1)
    (batched(x) - y).pow(2).mean(dim=(1, 2)).sum().backward()
    for m, model in enumerate(models):
        (model(x[m]) - y[m]).pow(2).mean().backward()
        torch.testing.assert_close(batched.upper_ih[0].grad[m], model.layers[1].weight_ih_l0.grad.T)
        torch.testing.assert_close(batched.weight_ih.grad[m], model.layers[0].weight_ih_l0.grad.T)


@pytest.mark.parametrize(
    ("sizes", "batch_size", "epoch_samples"),
    [
        # Two models, one minibatch per epoch (so shuffling cannot differ): different sample
        # counts, and each stops early at its own epoch.
        ((40, 55), 64, None),
        # One model, several minibatches with a partial last one: the same permutations.
        ((45,), 8, None),
        # ... and the same draws of 20 of its 36 training windows each epoch.
        ((45,), 8, 20),
    ],
)
def test_stacked_training_equals_training_each_model_alone(sizes, batch_size, epoch_samples):
    settings = TrainSettings(
        lr=0.05, weight_decay=1e-3, batch_size=batch_size, max_epochs=12, patience=2,
        grad_clip=0.5, epoch_samples=epoch_samples,
    )  # fmt: skip
    data = np.random.default_rng(1)
    samples = [make_windows(data.normal(size=(n, 1)), 5) for n in sizes]
    torch.manual_seed(0)
    alone = [RecurrentRegressor(1, (6,), 1, dropout=0.0) for _ in samples]
    together = BatchedLSTM.from_regressors(alone).train()
    rng = np.random.default_rng(2)
    logs = [train_network(m, *xy, settings, rng=rng) for m, xy in zip(alone, samples, strict=True)]
    log = train_stacked(together, *stack_windows(samples), settings, rng=np.random.default_rng(2))
    assert log.best_epoch.tolist() == [entry.best_epoch for entry in logs]
    assert len(log.train_loss) == max(len(entry.train_loss) for entry in logs)
    expected = BatchedLSTM.from_regressors(alone)
    for name, value in expected.named_parameters():
        torch.testing.assert_close(getattr(together, name), value, atol=2e-5, rtol=1e-4)


class _CountingModel(torch.nn.Module):
    """A linear model that records the size of every training minibatch it reads."""

    def __init__(self) -> None:
        super().__init__()
        self.linear, self.batches = torch.nn.Linear(5, 1), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.batches.append(len(x))
        return self.linear(x[:, :, 0])


def test_epoch_samples_caps_each_epoch_and_changes_nothing_when_not_needed():
    X, y = make_windows(np.random.default_rng(3).normal(size=(106, 1)), 5)  # 100 windows
    n_train = len(X) - n_validation(len(X), 0.1)

    def fit(epoch_samples):
        torch.manual_seed(0)
        model = _CountingModel()
        settings = TrainSettings(batch_size=16, max_epochs=3, patience=None,
                                 epoch_samples=epoch_samples)  # fmt: skip
        log = train_network(model, X, y, settings, rng=np.random.default_rng(4))
        return model, log

    capped, _ = fit(40)
    assert capped.batches == [16, 16, 8] * 3  # 40 windows per epoch, of the 90
    plain, plain_log = fit(None)
    assert sum(plain.batches) == 3 * n_train
    for cap in (n_train, 10_000):  # a cap the data does not reach: the same fit, bit for bit
        same, log = fit(cap)
        assert same.batches == plain.batches and log.train_loss == plain_log.train_loss
        assert torch.equal(same.linear.weight, plain.linear.weight)
    with pytest.raises(ConfigError, match="epoch_samples"):
        TrainSettings(epoch_samples=0)


def test_the_shared_lstm_draws_at_most_epoch_samples_windows_per_epoch():
    history = history_of(ar_prices(n_rows=120, n_assets=6))
    windows = 6 * (119 - 5)
    settings = {"lookback": 5, "hidden": 8, "epochs": 2, "patience": None}
    small = UnivariateLSTMForecaster(**settings, epoch_samples=64)
    default = UnivariateLSTMForecaster(**settings)
    capped, full = small.fit(history), default.fit(history)
    n_train = windows - n_validation(windows, 0.1)
    assert capped.log_.n_train.tolist() == full.log_.n_train.tolist() == [n_train]
    # The default cap is above these windows: the fit is that of no cap at all.
    uncapped = UnivariateLSTMForecaster(**settings, epoch_samples=None)
    assert full.predict(history).equals(uncapped.fit(history).predict(history))
    assert not capped.predict(history).equals(full.predict(history))


# --- the forecaster contract -------------------------------------------------------------


@pytest.mark.parametrize("name", FAST)
def test_fit_predict_gives_a_finite_series_over_all_assets(name):
    prices = ar_prices()
    forecaster = FAST[name]()
    forecast = forecaster.fit(history_of(prices)).predict(history_of(prices))
    assert isinstance(forecast, pd.Series)
    assert forecast.index.equals(prices.columns)
    assert np.isfinite(forecast.to_numpy()).all()


@pytest.mark.parametrize("name", ["univariate", "univariate_loop"])
def test_univariate_skips_an_asset_listed_too_late(name):
    prices = ar_prices()
    prices["LATE"] = prices["A0"] * 1.1
    prices.iloc[:130, -1] = np.nan  # 19 returns: 11 windows of 8 < min_windows=20
    forecast = FAST[name]().fit(history_of(prices)).predict(history_of(prices))
    assert np.isnan(forecast["LATE"]) and np.isfinite(forecast.drop("LATE")).all()


def test_panel_forecast_is_nan_when_the_last_window_is_incomplete():
    prices = ar_prices()
    forecaster = FAST["stacked_lstm"]().fit(history_of(prices))
    gappy = prices.copy()
    gappy.iloc[-3, 1] = np.nan
    assert forecaster.predict(history_of(gappy)).isna().all()


@pytest.mark.parametrize("name", FAST)
def test_same_seed_same_predictions_different_seed_different(name):
    history = history_of(ar_prices())
    first = FAST[name](seed=3).fit(history).predict(history)
    again = FAST[name](seed=3).fit(history).predict(history)
    other = FAST[name](seed=4).fit(history).predict(history)
    pd.testing.assert_series_equal(first, again, check_exact=True)
    assert not np.allclose(first.to_numpy(), other.to_numpy())


def test_fit_leaves_the_global_torch_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    FAST["univariate"]().fit(history_of(ar_prices()))
    torch.testing.assert_close(torch.rand(3), expected)


def test_clone_refits_to_the_same_predictions():
    history = history_of(ar_prices())
    forecaster = FAST["stacked_gru"](seed=7)
    clone = forecaster.clone()
    assert clone.get_params() == forecaster.get_params() and not hasattr(clone, "network_")
    pd.testing.assert_series_equal(
        forecaster.fit(history).predict(history), clone.fit(history).predict(history)
    )


@pytest.mark.parametrize("name", ["univariate", "stacked_lstm", "price"])
def test_no_look_ahead(name):
    """Walk-forward over the full frame (refits at rows 118, 120, 122): perturbing the prices
    after row 120 changes no forecast made up to it, and does change a later one."""
    forecasts = assert_no_look_ahead(stream_forecasts(FAST[name]()), ar_prices(), t=120)
    assert all(np.isfinite(f.to_numpy()).all() for f in forecasts.values())


@pytest.mark.parametrize("leak", [full_panel_fit, one_row_late])
def test_the_look_ahead_probe_catches_a_leaky_path(leak):
    """The same probe fails on a model fitted on the whole panel, or cut one row late."""
    with pytest.raises(AssertionError, match="forecast at"):
        assert_no_look_ahead(leak(FAST["univariate"]()), ar_prices(), t=120)


@pytest.mark.parametrize("name", RETURN_MODELS)
def test_predictions_are_in_original_units(name):
    # Log return 0.01 every week (plus a little noise so the scalers see a spread).
    rng = np.random.default_rng(0)
    returns = 0.01 + rng.normal(0, 0.0005, size=(150, 3))
    prices = pd.DataFrame(
        100 * np.exp(np.cumsum(returns, axis=0)),
        index=pd.date_range("2018-01-05", periods=150, freq="W-FRI"),
        columns=["A", "B", "C"],
    )
    epochs = "epochs"
    forecaster = FAST[name](**{epochs: 30, "lr": 0.01})
    forecast = forecaster.fit(history_of(prices)).predict(history_of(prices))
    np.testing.assert_allclose(forecast.to_numpy(), 0.01, atol=0.003)


def test_price_predictions_are_prices():
    prices = ar_prices(sigma=0.01)
    forecaster = FAST["price"](epochs=30, lr=0.01)
    forecast = forecaster.fit(history_of(prices)).predict(history_of(prices))
    ratio = forecast / prices.iloc[-1]
    assert forecaster.target == "price" and ratio.between(0.8, 1.25).all()


# --- a learned forecaster against the least-squares AR fit on AR(1) data ---------------------

AR1_PHI, AR1_TRAIN = 0.7, 220
# The bar: out-of-sample MSE at most 15% above the least-squares AR(1) fit's on the same rows
# (the optimum, the true conditional mean, scores 0.998 here; predicting zero 2.2) and a
# correlation of at least 0.9 with the true conditional mean φ·r_t.
AR1_MAX_MSE_RATIO, AR1_MIN_CORRELATION = 1.15, 0.9


def held_out_forecasts(forecaster: Forecaster, prices: pd.DataFrame) -> np.ndarray:
    """Forecasts of ``r_{t+1}`` from the history up to each held-out row ``t``, ``(79, 3)``."""
    return np.array(
        [forecaster.predict(history_of(prices.iloc[: t + 1])) for t in range(AR1_TRAIN, 299)]
    )


def ar1_scores(forecasts: np.ndarray, prices: pd.DataFrame) -> tuple[float, float]:
    """MSE relative to least squares' on the held-out rows, correlation with ``φ·r_t``."""
    log_returns = np.log(prices).diff().to_numpy()
    truth = AR1_PHI * log_returns[AR1_TRAIN:299]
    actual = log_returns[AR1_TRAIN + 1 :]
    least_squares = held_out_forecasts(
        ARForecaster(p=1).fit(history_of(prices.iloc[:AR1_TRAIN])), prices
    )
    ratio = np.mean((forecasts - actual) ** 2) / np.mean((least_squares - actual) ** 2)
    # A constant forecast is uncorrelated (0 rather than NaN and a warning).
    correlation = (
        np.corrcoef(forecasts.ravel(), truth.ravel())[0, 1] if forecasts.std() > 0 else 0.0
    )
    return float(ratio), float(correlation)


def clears_ar1_bar(forecasts: np.ndarray, prices: pd.DataFrame) -> bool:
    ratio, correlation = ar1_scores(forecasts, prices)
    return ratio <= AR1_MAX_MSE_RATIO and correlation >= AR1_MIN_CORRELATION


@pytest.fixture(scope="module")
def ar1_prices() -> pd.DataFrame:
    return ar_prices(n_rows=300, n_assets=3, phi=AR1_PHI, seed=5)


@pytest.mark.parametrize("batched", [True, False])
def test_both_univariate_variants_forecast_held_out_ar1_about_as_well_as_least_squares(
    batched, ar1_prices
):
    # No validation tail: early stopping on ~20 noisy windows per asset picked epoch 1 for
    # some seeds (an untrained model); every asset trains the full 20 epochs instead.
    forecaster = UnivariateLSTMForecaster(
        lookback=5, hidden=16, dropout=0.0, epochs=20, lr=0.01, patience=None,
        val_fraction=0.0, batched=batched,
    ).fit(history_of(ar1_prices.iloc[:AR1_TRAIN]))  # fmt: skip
    ratio, correlation = ar1_scores(held_out_forecasts(forecaster, ar1_prices), ar1_prices)
    assert ratio <= AR1_MAX_MSE_RATIO and correlation >= AR1_MIN_CORRELATION, (ratio, correlation)


def test_the_ar1_bar_passes_least_squares_and_fails_broken_predictors(ar1_prices):
    """Least squares clears the bar; predicting zero (MSE 2.2x), a shuffled least-squares
    forecast (3.4x, correlation ~0) and a half-strength one (1.3x) each fail it."""
    least_squares = held_out_forecasts(
        ARForecaster(p=1).fit(history_of(ar1_prices.iloc[:AR1_TRAIN])), ar1_prices
    )
    assert clears_ar1_bar(least_squares, ar1_prices)
    shuffled = np.random.default_rng(0).permutation(least_squares.ravel())
    for broken in (0 * least_squares, shuffled.reshape(least_squares.shape), least_squares / 2):
        assert not clears_ar1_bar(broken, ar1_prices)


@pytest.mark.parametrize("name", FAST)
def test_scalers_fitted_on_training_data_only_extrapolate(name):
    prices = ar_prices(n_rows=200)
    forecaster = FAST[name]().fit(history_of(prices.iloc[:150]))
    wilder = prices.copy()
    wilder.iloc[150:] *= np.exp(np.cumsum(np.random.default_rng(1).normal(0.05, 0.2, (50, 4)), 0))
    forecast = forecaster.predict(history_of(wilder))
    assert np.isfinite(forecast.to_numpy()).all()


@pytest.mark.parametrize("name", FAST)
def test_too_little_data_raises_data_error_naming_lookback(name):
    with pytest.raises(DataError, match="lookback"):
        FAST[name]().fit(history_of(ar_prices(n_rows=15)))


@pytest.mark.parametrize("name", ["univariate", "univariate_loop", "transformer"])
def test_progress_bar_completes_even_with_early_stopping(name):
    bars: list[list] = []

    def factory(description: str, total: int) -> Callable[[int], None]:
        bars.append([description, total, 0])
        return lambda n: bars[-1].__setitem__(2, bars[-1][2] + n)

    epochs = "epochs"
    with reporting_progress(factory):
        FAST[name](**{epochs: 30, "patience": 1}).fit(history_of(ar_prices()))
    assert len(bars) == 1 and bars[0][0].startswith("training ") and bars[0][1] == bars[0][2]
