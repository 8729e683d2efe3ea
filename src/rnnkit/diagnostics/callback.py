"""Gradient flow while training: a callback for :class:`rnnkit.train.Trainer`.

Into every metrics line (``metrics.jsonl``) since the previous evaluation:

- ``grad_norm_mean``, ``grad_norm_max``: the global gradient norm *before* clipping;
- ``clip_events``: steps whose norm exceeded ``clip_norm`` (so clipping rescaled them), and
  ``clip_fraction`` of the steps;
- every ``interval`` steps, ``gradient_flow``: per recurrent layer (by module name) and per
  stacked layer, ``eta``, ``horizon`` and the relative per-lag gradient norms
  ``‖∂L/∂s_{T-ℓ}‖ / ‖∂L/∂s_T‖`` (a random projection of the last step, see
  :func:`rnnkit.diagnostics.gradient_norms`) measured on the latest training batch.

The inputs of each recurrent layer are captured with a forward pre-hook (a reference to the
detached input, nothing else); the measurement re-runs the layer's function on copies of its
weights, so training is unchanged. Padded batches with ``lengths=`` are measured at full length;
PackedSequence inputs and bidirectional layers are skipped.

Example::

    >>> from rnnkit.tasks.lm import LanguageModel
    >>> from rnnkit.train import TrainConfig, Trainer
    >>> task = LanguageModel(vocab_size=5, embedding_size=4, hidden_size=8, num_layers=1)
    >>> batches = [(torch.randint(1, 5, (2, 6)), torch.randint(1, 5, (2, 6)))] * 4
    >>> trainer = Trainer(task, TrainConfig(steps=4, eval_every=2), batches,
    ...                   callbacks=[GradientFlowCallback(interval=2)])
    >>> trainer.fit().step
    4
"""

from __future__ import annotations

import logging
import math

from torch import Tensor

from rnnkit.diagnostics.gradient_flow import fit_eta, gradient_norms, memory_horizon, relative
from rnnkit.train.callbacks import Callback

log = logging.getLogger(__name__)


class GradientFlowCallback(Callback):
    """Log gradient norms, clipping events and per-lag gradient flow into metrics lines.

    Args:
        interval: measure per-lag gradient norms every this many steps (None: never).
        batch_size: sequences of the captured batch to measure on.
        max_length: measure on at most the last this many steps of the batch.
        threshold: relative gradient that ends the memory horizon.
    """

    def __init__(
        self,
        interval: int | None = 500,
        *,
        batch_size: int = 4,
        max_length: int | None = 400,
        threshold: float = 1e-3,
    ) -> None:
        if interval is not None and (not isinstance(interval, int) or interval < 1):
            raise ValueError(f"interval must be a positive integer or None, got {interval!r}")
        self.interval = interval
        self.batch_size = batch_size
        self.max_length = max_length
        self.threshold = threshold
        self._inputs: dict[str, tuple] = {}
        self._handles: list = []
        self._reset_window()

    def _reset_window(self) -> None:
        self._norms: list[float] = []
        self._clipped = 0

    # -- hooks -------------------------------------------------------------------------------
    def on_train_start(self, trainer) -> None:
        from rnnkit.layers import RecurrentLayer

        for name, module in trainer.task.named_modules():
            if isinstance(module, RecurrentLayer) and not module.bidirectional:
                handle = module.register_forward_pre_hook(self._capture(name), with_kwargs=True)
                self._handles.append(handle)
        self._layers = {
            name: module
            for name, module in trainer.task.named_modules()
            if isinstance(module, RecurrentLayer) and not module.bidirectional
        }

    def _capture(self, name: str):
        def hook(module, args, kwargs):
            if not module.training or not args or not isinstance(args[0], Tensor):
                return  # evaluation passes and PackedSequence inputs are not measured
            hx = args[1] if len(args) > 1 else kwargs.get("hx")
            self._inputs[name] = (args[0].detach(), _detach(hx))

        return hook

    def on_after_backward(self, trainer, info) -> None:
        self._norms.append(info.grad_norm)
        clip = trainer.config.clip_norm
        if clip is not None and info.grad_norm > clip:
            self._clipped += 1

    def on_step_end(self, trainer, info) -> None:
        if self._norms:
            trainer.log(
                grad_norm_mean=sum(self._norms) / len(self._norms),
                grad_norm_max=max(self._norms),
                clip_events=self._clipped,
                clip_fraction=self._clipped / len(self._norms),
            )
        if self.interval is not None and info.step % self.interval == 0:
            flow = self.measure()
            if flow:
                trainer.log(gradient_flow=flow)

    def on_evaluate(self, trainer, metrics: dict) -> None:
        self._reset_window()

    def on_train_end(self, trainer, result) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._inputs.clear()

    # -- measurement ---------------------------------------------------------------------------
    def measure(self) -> dict:
        """Per-lag gradient flow of every captured layer on its latest training input."""
        flow = {}
        for name, (x, hx) in list(self._inputs.items()):
            layer = self._layers[name]
            x, hx = self._slice(layer, x, hx)
            try:
                curves = gradient_norms(layer, x, hx=hx)
            except (ValueError, TypeError) as exc:  # an input the probe cannot replay
                log.warning("gradient flow of %s skipped: %s", name or "rnn", exc)
                continue
            flow[name or "rnn"] = [
                {
                    "layer": index,
                    "eta": fit_eta(curve),
                    "horizon": memory_horizon(curve, self.threshold),
                    "relative_gradient": [_round(v) for v in relative(curve).tolist()],
                }
                for index, curve in enumerate(curves)
            ]
        return flow

    def _slice(self, layer, x: Tensor, hx):
        """The first ``batch_size`` sequences and the last ``max_length`` steps."""
        batch_dim = 0 if layer.batch_first else 1
        time_dim = 1 - batch_dim
        if x.dim() == 2:  # unbatched (T, I)
            batch_dim, time_dim = None, 0
        if batch_dim is not None:
            x = x.narrow(batch_dim, 0, min(self.batch_size, x.shape[batch_dim]))
            hx = _map(hx, lambda s: s.narrow(1, 0, min(self.batch_size, s.shape[1])))
        if self.max_length is not None and x.shape[time_dim] > self.max_length:
            start = x.shape[time_dim] - self.max_length
            x = x.narrow(time_dim, start, self.max_length)
            hx = None  # the state at the window's start is unknown; start from zeros
        return x, hx


def _detach(hx):
    return _map(hx, lambda s: s.detach())


def _map(hx, fn):
    if hx is None:
        return None
    if isinstance(hx, Tensor):
        return fn(hx)
    return type(hx)(fn(s) for s in hx)


def _round(value: float) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.4g}")
