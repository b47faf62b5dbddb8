"""Training speed of the S1 forecaster: all assets' LSTMs in one batched pass vs one at a time.

What is compared
----------------
:class:`dynafolio.forecast.lstm.UnivariateLSTMForecaster` — one univariate LSTM per asset
(30-week lookback, 64 hidden units, dropout 0.2, batch 64, Adam with weight decay) — trained
two ways on the same data:

* ``batched=True``: :class:`~dynafolio.forecast.stacked.BatchedLSTM` holds every asset's
  weights along a leading dimension and unrolls the recurrence with one ``torch.bmm`` per
  time step for all assets (:func:`~dynafolio.forecast.stacked.train_stacked`);
* ``batched=False``: a plain ``nn.LSTM`` + ``nn.Linear`` per asset, trained one after
  another (:func:`~dynafolio.forecast.training.train_network`).

Data: the embedded ``multiasset`` dataset (34 assets), weekly, the first 70 % of the weeks
(the S1 training period). Both variants train for a fixed ``--epochs`` (default 5) with early
stopping off (``patience=None``), so they do the same work: the same training windows per
asset, the same number of minibatch steps, and one validation pass per epoch.

After a one-epoch warm-up of each, the two are fitted ``--repeats`` times (default 3),
alternating which goes first, and the median wall time of each is reported as training
samples per second (training windows × epochs / seconds; the validation pass is included
in the time), with the ratio. The faster one is the default of ``batched``.

Run it from the repository root (a few minutes on 2 CPU cores)::

    T=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296
    GLIBC_TUNABLES=$T:glibc.malloc.top_pad=268435456 \
        .venv/bin/python benchmarks/lstm_speed.py [--epochs 5] [--repeats 3] [--threads N]

(the Makefile exports the same ``GLIBC_TUNABLES``: it stops torch's allocations from
page-faulting on every step). ``--threads`` sets ``torch.set_num_threads``; by default
torch's own choice is kept. Timings are only comparable on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from dynafolio.data import load_dataset
from dynafolio.features import prepare_prices
from dynafolio.forecast.lstm import UnivariateLSTMForecaster
from dynafolio.history import MarketHistory

VARIANTS = {"batched": True, "loop": False}


def training_history(train_share: float = 0.7) -> MarketHistory:
    """Weekly ``multiasset`` prices of the S1 training period (first ``train_share`` of weeks)."""
    prices = prepare_prices(load_dataset("multiasset"), "W")
    train = prices.iloc[: int(train_share * len(prices))]
    return MarketHistory(train, train.pct_change(fill_method=None))


def n_training_samples(forecaster: UnivariateLSTMForecaster) -> int:
    """Training windows (validation tail excluded) summed over assets, after a fit."""
    log = forecaster.log_
    if isinstance(log, list):
        return sum(entry.n_train for entry in log)
    return int(np.sum(log.n_train))


def timed_fit(history: MarketHistory, batched: bool, epochs: int) -> tuple[float, int]:
    """Seconds to fit one forecaster for exactly ``epochs`` epochs, and its training samples."""
    forecaster = UnivariateLSTMForecaster(epochs=epochs, patience=None, batched=batched)
    start = time.perf_counter()
    forecaster.fit(history)
    return time.perf_counter() - start, n_training_samples(forecaster)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per fit (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed fits of each (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    history = training_history()
    print(
        f"S1 univariate LSTM training: {history.prices.shape[1]} assets, "
        f"{len(history.prices)} weekly rows (first 70 %), lookback 30, hidden 64, batch 64, "
        f"{args.epochs} epochs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    for batched in VARIANTS.values():  # warm-up: first-call allocations and kernel selection
        timed_fit(history, batched, epochs=1)
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    samples: dict[str, int] = {}
    for rep in range(args.repeats):
        order = list(VARIANTS) if rep % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            elapsed, samples[name] = timed_fit(history, VARIANTS[name], args.epochs)
            seconds[name].append(elapsed)
    if samples["batched"] != samples["loop"]:
        raise SystemExit(f"the variants trained on different samples: {samples}")

    rates = {}
    for name in VARIANTS:
        median = statistics.median(seconds[name])
        rates[name] = samples[name] * args.epochs / median
        runs = ", ".join(f"{s:.2f}" for s in seconds[name])
        print(
            f"{name:>8}: {rates[name]:10,.0f} training samples/s  (median {median:.2f} s per "
            f"fit of {samples[name]:,} windows x {args.epochs} epochs; runs {runs} s)"
        )
    print(f"   ratio: batched / loop = {rates['batched'] / rates['loop']:.1f}x")


if __name__ == "__main__":
    main()
