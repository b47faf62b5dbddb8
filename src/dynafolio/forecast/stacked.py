"""Many small models trained as one: S1's per-asset LSTMs stacked along a leading dimension.

:class:`BatchedLSTM` holds ``n_models`` independent LSTMs (one batched matmul per time step
for all of them, with a hand-written backward pass: see :class:`_LSTMRecurrence`; measured
against one ``nn.LSTM`` per asset by ``benchmarks/lstm_speed.py``), and :func:`train_stacked`
trains them together, each model with
its own samples, minibatches, Adam state, validation tail, early stopping and best weights,
exactly as if :func:`~dynafolio.forecast.training.train_network` trained it alone, on the
device of :func:`dynafolio.devices.current`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from dynafolio import devices
from dynafolio.early_stopping import EarlyStopping, n_validation
from dynafolio.forecast.training import Progress, TrainSettings, epoch_draw, no_progress

__all__ = ["BatchedLSTM", "StackedTrainingLog", "train_stacked"]


@dataclass(frozen=True)
class StackedTrainingLog:
    """What :func:`train_stacked` did, per model: as :class:`TrainingLog`, with losses of
    shape (n_epochs_run, n_models) (NaN once a model has stopped) and the rest (n_models,)."""

    train_loss: np.ndarray
    val_loss: np.ndarray
    best_epoch: np.ndarray
    n_train: np.ndarray
    n_val: np.ndarray


class _LSTMRecurrence(torch.autograd.Function):
    """Forward and backward of ``n_models`` one-layer LSTMs over a window.

    Inputs: ``x`` (lookback, n_models, batch, n_inputs), time-major so every step is
    contiguous; ``weight_ih`` (n_models, n_inputs, 4·hidden); ``bias`` (n_models,
    4·hidden); ``weight_hh`` (n_models, hidden, 4·hidden); gates in ``nn.LSTM``'s order
    (i, f, g, o); ``sequence``: return every step's ``h`` (lookback, n_models, batch,
    hidden), the input of a layer stacked on this one, instead of the last ``h_T``
    (n_models, batch, hidden). ``x`` gets a gradient when it requires one (a lower layer's
    output), none when it is data.

    The backward pass is written out because autograd through the unrolled loop (a graph of
    ~15 nodes per step) was measured no faster than a loop of ``nn.LSTM``, whose CPU kernel
    is fused (oneDNN). Here a step costs three batched matmuls (forward, d_h, d_W_hh) and a
    few in-place elementwise ops, and the weight gradients accumulate step by step.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight_ih: Tensor, bias: Tensor, weight_hh: Tensor,
        sequence: bool = False,
    ) -> Tensor:  # fmt: skip
        lookback, n_models, batch, _ = x.shape
        hidden = weight_hh.shape[1]
        gates = x.new_empty(lookback, n_models, batch, 4 * hidden)  # after activation
        c = x.new_empty(lookback, n_models, batch, hidden)
        tanh_c, h = torch.empty_like(c), torch.empty_like(c)
        for t in range(lookback):
            a = torch.baddbmm(bias[:, None], x[t], weight_ih, out=gates[t])
            if t:
                a.baddbmm_(h[t - 1], weight_hh)
            i, f, g, o = a.chunk(4, dim=-1)
            # tanh(z) = 2·σ(2z) − 1: one sigmoid over all gates, and σ is several times
            # faster than tanh on CPU.
            g.mul_(2)
            a.sigmoid_()
            g.mul_(2).sub_(1)
            torch.mul(i, g, out=c[t])
            if t:
                c[t].addcmul_(f, c[t - 1])
            torch.mul(c[t], 2, out=tanh_c[t]).sigmoid_().mul_(2).sub_(1)
            torch.mul(o, tanh_c[t], out=h[t])
        ctx.save_for_backward(x, weight_ih, weight_hh, gates, c, tanh_c, h)
        ctx.sequence = sequence
        return h.clone() if sequence else h[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, weight_ih, weight_hh, gates, c, tanh_c, h = ctx.saved_tensors
        lookback, n_models, batch, n_inputs = x.shape
        grad_ih = x.new_zeros(n_models, n_inputs, gates.shape[-1])
        grad_bias = x.new_zeros(n_models, gates.shape[-1])
        grad_hh = torch.zeros_like(weight_hh)
        weight_hh_t = weight_hh.transpose(1, 2).contiguous()
        weight_ih_t = weight_ih.transpose(1, 2).contiguous()
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        d_gates = x.new_empty(n_models, batch, gates.shape[-1])  # before activation
        d_i, d_f, d_g, d_o = d_gates.chunk(4, dim=-1)
        # The loss reaches h_t through the layer's output (every step for a sequence) and
        # through h_{t+1}'s recurrence.
        d_h = (grad_out[-1] if ctx.sequence else grad_out).contiguous()
        d_c = torch.zeros_like(d_h)
        for t in reversed(range(lookback)):
            i, f, g, o = gates[t].chunk(4, dim=-1)
            # h = o·tanh(c); c = f·c_prev + i·g; σ' = σ(1 − σ), tanh' = 1 − tanh².
            torch.mul(d_h, tanh_c[t], out=d_o).mul_(o).mul_(1 - o)
            d_c.addcmul_(d_h * o, 1 - tanh_c[t].square())
            torch.mul(d_c, g, out=d_i).mul_(i).mul_(1 - i)
            torch.mul(d_c, i, out=d_g).mul_(1 - g.square())
            if t:
                torch.mul(d_c, c[t - 1], out=d_f).mul_(f).mul_(1 - f)
            else:
                d_f.zero_()
            d_c.mul_(f)
            grad_bias += d_gates.sum(1)
            grad_ih.baddbmm_(x[t].transpose(1, 2), d_gates)
            if grad_x is not None:
                torch.bmm(d_gates, weight_ih_t, out=grad_x[t])
            if t:
                grad_hh.baddbmm_(h[t - 1].transpose(1, 2), d_gates)
                d_h = torch.bmm(d_gates, weight_hh_t)
                if ctx.sequence:
                    d_h += grad_out[t - 1]
        return grad_x, grad_ih, grad_bias, grad_hh, None


class BatchedLSTM(nn.Module):
    """``n_models`` independent LSTM regressors (``n_layers`` LSTM layers → dropout →
    linear head), e.g. one per asset.

    Every parameter has a leading ``n_models`` dimension (model ``m``'s own weights) and
    each time step is one batched matmul for all models. Hand-written for CPU speed: S1's
    34 small per-asset LSTMs (batch 64, hidden 64, one input) trained one after another
    cannot keep the cores busy; stacked they train faster (``benchmarks/lstm_speed.py``).
    Same function, initialisation distribution and gate order as ``nn.LSTM`` +
    ``nn.Linear`` (and, with several layers, as :class:`~dynafolio.forecast.lstm.
    RecurrentRegressor`: dropout after every layer); :meth:`from_regressors` copies trained
    models in. Maps ``(n_models, batch, lookback, n_inputs)`` to ``(n_models, batch,
    n_outputs)``.
    """

    def __init__(
        self,
        n_models: int,
        n_inputs: int,
        hidden: int,
        n_outputs: int,
        dropout: float,
        n_layers: int = 1,
    ) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(hidden)  # nn.LSTM's and nn.Linear's default init range

        def uniform(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(n_models, *shape).uniform_(-bound, bound))

        self.dropout = dropout
        self.weight_ih = uniform(n_inputs, 4 * hidden)
        self.weight_hh = uniform(hidden, 4 * hidden)
        self.bias_ih = uniform(4 * hidden)
        self.bias_hh = uniform(4 * hidden)
        # Layers above the first read the one below's hidden states.
        self.upper_ih = nn.ParameterList(uniform(hidden, 4 * hidden) for _ in range(n_layers - 1))
        self.upper_hh = nn.ParameterList(uniform(hidden, 4 * hidden) for _ in range(n_layers - 1))
        self.upper_bias_ih = nn.ParameterList(uniform(4 * hidden) for _ in range(n_layers - 1))
        self.upper_bias_hh = nn.ParameterList(uniform(4 * hidden) for _ in range(n_layers - 1))
        self.head_weight = uniform(hidden, n_outputs)
        self.head_bias = uniform(1, n_outputs)

    def _layers(self) -> list[tuple[Tensor, Tensor, Tensor]]:
        """``(weight_ih, bias_ih + bias_hh, weight_hh)`` of every layer, bottom first."""
        layers = [(self.weight_ih, self.bias_ih + self.bias_hh, self.weight_hh)]
        for w_ih, w_hh, b_ih, b_hh in zip(
            self.upper_ih, self.upper_hh, self.upper_bias_ih, self.upper_bias_hh, strict=True
        ):
            layers.append((w_ih, b_ih + b_hh, w_hh))
        return layers

    @classmethod
    def from_regressors(cls, regressors: Sequence[nn.Module]) -> BatchedLSTM:
        """Stack trained LSTM ``dynafolio.forecast.lstm.RecurrentRegressor`` s (equal sizes)."""
        first = regressors[0]
        lstm, head = first.layers[0], first.head
        batched = cls(
            len(regressors), lstm.input_size, lstm.hidden_size, head.out_features,
            first.dropout.p, n_layers=len(first.layers),
        )  # fmt: skip
        uppers = list(
            zip(batched.upper_ih, batched.upper_hh, batched.upper_bias_ih,
                batched.upper_bias_hh, strict=True)
        )  # fmt: skip
        with torch.no_grad():
            for m, reg in enumerate(regressors):
                bottom = reg.layers[0]
                batched.weight_ih[m] = bottom.weight_ih_l0.T
                batched.weight_hh[m] = bottom.weight_hh_l0.T
                batched.bias_ih[m] = bottom.bias_ih_l0
                batched.bias_hh[m] = bottom.bias_hh_l0
                for layer, (w_ih, w_hh, b_ih, b_hh) in zip(reg.layers[1:], uppers, strict=True):
                    w_ih[m] = layer.weight_ih_l0.T
                    w_hh[m] = layer.weight_hh_l0.T
                    b_ih[m] = layer.bias_ih_l0
                    b_hh[m] = layer.bias_hh_l0
                batched.head_weight[m] = reg.head.weight.T
                batched.head_bias[m, 0] = reg.head.bias
        return batched.eval()

    def forward(self, x: torch.Tensor, models: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (n, batch, lookback, n_inputs) → (n, batch, n_outputs) for the models whose
        indices are in ``models`` (int64, length n), or all models when None."""
        layers = self._layers()
        head = [self.head_bias, self.head_weight]
        if models is not None:
            layers = [tuple(w[models] for w in layer) for layer in layers]
            head = [w[models] for w in head]
        h = x.permute(2, 0, 1, 3).contiguous()
        for depth, weights in enumerate(layers):
            last = depth == len(layers) - 1
            h = _LSTMRecurrence.apply(h, *weights, not last)
            h = F.dropout(h, self.dropout, self.training)
        return torch.baddbmm(head[0], h, head[1])


def _per_model(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a ``(n_models,)`` vector to broadcast against a stacked parameter."""
    return values.view((-1,) + (1,) * (like.dim() - 1))


class _MaskedAdam:
    """``torch.optim.Adam`` (L2 ``weight_decay``) applied per model along the leading dimension.

    A model whose ``active`` flag is False this step is left exactly as it is — parameters,
    moments and step count — as if its own optimiser had not been called. (A stock Adam
    would still move it: its momentum and weight decay act even on a zero gradient.)
    """

    def __init__(self, params: list[nn.Parameter], settings: TrainSettings) -> None:
        self.params = params
        self.lr, self.weight_decay = settings.lr, settings.weight_decay
        self.beta1, self.beta2, self.eps = 0.9, 0.999, 1e-8
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = torch.zeros(params[0].shape[0], device=params[0].device)

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        self.steps += active.float()
        steps = self.steps.clamp(min=1)  # inactive models at step 0 are masked out below
        correction1 = 1 - self.beta1**steps
        correction2_sqrt = (1 - self.beta2**steps).sqrt()
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            on = _per_model(active, p)
            grad = p.grad + self.weight_decay * p
            m.copy_(torch.where(on, m.lerp(grad, 1 - self.beta1), m))
            v.copy_(torch.where(on, v * self.beta2 + (1 - self.beta2) * grad * grad, v))
            denom = v.sqrt() / _per_model(correction2_sqrt, p) + self.eps
            update = m / denom * _per_model(self.lr / correction1, p)
            p.copy_(torch.where(on, p - update, p))


def _clip_per_model(params: list[nn.Parameter], max_norm: float) -> None:
    """``clip_grad_norm_`` applied to each model's slice of the stacked gradients."""
    norms = sum(p.grad.flatten(1).pow(2).sum(1) for p in params).sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(_per_model(scale, p))


def train_stacked(
    model: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    n_samples: np.ndarray,
    settings: TrainSettings,
    *,
    rng: np.random.Generator,
    progress: Progress = no_progress,
) -> StackedTrainingLog:
    """Train ``n_models`` independent stacked models together, each as :func:`train_network` would.

    Each model ``m`` owns the first ``n_samples[m]`` rows of ``X[m]`` (chronological); its
    last :func:`n_validation` rows are its validation tail. Every epoch each model shuffles
    its own training rows (at most ``settings.epoch_samples`` of them, a fresh draw each
    epoch) into minibatches of ``batch_size``; step ``s`` feeds every model its
    ``s``-th minibatch (a model with fewer minibatches sits the remaining steps out). The
    loss is the sum over models of each model's mean squared error, so each model's gradient
    is exactly its own loss's gradient (parameters are disjoint). Early stopping and best-
    weight restoring are per model; training ends when every model has stopped. Training
    runs on :func:`dynafolio.devices.current`'s device and leaves ``model`` on the CPU.

    Parameters
    ----------
    model : torch.nn.Module
        Every parameter has shape ``(n_models, ...)``; ``model(x, models)`` maps ``x`` of
        shape ``(len(models), batch, *input)`` to ``(len(models), batch, *target)`` with
        the models whose indices are in the int64 tensor ``models``.
    X, y : numpy.ndarray, shapes (n_models, n_max, *input_shape), (n_models, n_max, *target)
        Samples per model (:func:`~dynafolio.forecast.windows.stack_windows`), padded after
        ``n_samples[m]`` (padding is never trained on).
    n_samples : numpy.ndarray of int, shape (n_models,)
    settings, rng, progress
        As for :func:`train_network` (progress counts epochs of the slowest model).
    """
    device = devices.current()
    # ``.to`` returns the tensor or module itself when it is already there: on the CPU this
    # is the CPU-only computation exactly.
    model.to(device)
    X_all = torch.as_tensor(X, dtype=torch.float32).to(device)
    y_all = torch.as_tensor(y, dtype=torch.float32).to(device)
    n_models, batch_size = len(X_all), settings.batch_size
    n_samples = np.asarray(n_samples, dtype=int)
    n_val = np.array([n_validation(int(n), settings.val_fraction) for n in n_samples])
    n_train = n_samples - n_val
    params = list(model.parameters())
    optimizer = _MaskedAdam(params, settings)
    best = [p.detach().clone() for p in params]
    stopper = EarlyStopping(settings.patience, shape=(n_models,))
    stopper.stopped |= n_train < 1
    # Validation rows of model m: n_train[m] .. n_samples[m] - 1, padded to a rectangle.
    val_width = max(int(n_val.max()), 1)
    val_offsets = np.arange(val_width)
    val_index = torch.from_numpy(np.minimum(n_train[:, None] + val_offsets, len(X_all[0]) - 1))
    val_index = val_index.to(device)
    val_mask = torch.from_numpy((val_offsets < n_val[:, None]).astype(np.float32)).to(device)
    train_log, val_log = [], []
    # Training rows each model draws per epoch (all of them unless epoch_samples caps them).
    cap = settings.epoch_samples
    n_drawn = n_train if cap is None else np.minimum(n_train, cap)
    for epoch in range(settings.max_epochs):
        model.train()
        stopped = stopper.stopped
        n_steps = int(np.ceil(n_drawn[~stopped] / batch_size).max(initial=0))
        order = np.zeros((n_models, n_steps * batch_size), dtype=np.int64)
        mask = np.zeros((n_models, n_steps * batch_size), dtype=np.float32)
        for m in np.flatnonzero(~stopped):
            order[m, : n_drawn[m]] = epoch_draw(rng, n_train[m], cap)
            mask[m, : n_drawn[m]] = 1.0
        order_t, mask_t = torch.from_numpy(order).to(device), torch.from_numpy(mask).to(device)
        totals = torch.zeros(n_models, device=device)
        for step in range(n_steps):
            cols = slice(step * batch_size, (step + 1) * batch_size)
            counts = mask_t[:, cols].sum(1)
            # Only the models with samples at this step, and only as wide as the widest
            # minibatch: stopped models and last partial minibatches cost no compute.
            chosen = torch.nonzero(counts > 0).squeeze(1)
            width = int(counts.max())
            index = order_t[chosen, cols][:, :width]
            weight = mask_t[chosen, cols][:, :width]
            x, target = X_all[chosen[:, None], index], y_all[chosen[:, None], index]
            per_sample = (model(x, chosen) - target).pow(2).flatten(2).mean(2)
            losses = (per_sample * weight).sum(1) / counts[chosen]
            model.zero_grad(set_to_none=False)
            losses.sum().backward()
            if settings.grad_clip is not None:
                _clip_per_model(params, settings.grad_clip)
            optimizer.step(counts > 0)
            totals[chosen] += losses.detach() * counts[chosen]
        train_log.append(np.where(stopped, np.nan, totals.cpu().numpy() / np.maximum(n_drawn, 1)))
        progress(1)
        if settings.val_fraction == 0:
            val_log.append(np.full(n_models, np.nan))
            continue
        model.eval()
        val = np.full(n_models, np.nan)  # NaN (stopped, or no validation) never improves
        rows = np.flatnonzero(~stopped & (n_val > 0))
        chosen = torch.from_numpy(rows).to(device)
        with torch.no_grad():
            index = val_index[chosen] if len(chosen) else val_index[:0]
            x, target = X_all[chosen[:, None], index], y_all[chosen[:, None], index]
            per_sample = (model(x, chosen) - target).pow(2).flatten(2).mean(2)
            weight = val_mask[chosen]
            val[rows] = ((per_sample * weight).sum(1) / weight.sum(1)).cpu().numpy()
        val_log.append(val)
        # Models without a validation tail never stop early (they keep their last weights).
        improved_t = torch.from_numpy(stopper.update(val, epoch, active=n_val > 0)).to(device)
        with torch.no_grad():
            for p, b in zip(params, best, strict=True):
                b.copy_(torch.where(_per_model(improved_t, p), p, b))
        if stopper.stopped.all():
            progress(settings.max_epochs - epoch - 1)
            break
    best_epoch = stopper.best_step
    restore = torch.from_numpy(best_epoch >= 0).to(device)
    with torch.no_grad():
        for p, b in zip(params, best, strict=True):
            p.copy_(torch.where(_per_model(restore, p), b, p))
    model.to("cpu")
    model.eval()
    return StackedTrainingLog(np.array(train_log), np.array(val_log), best_epoch, n_train, n_val)
