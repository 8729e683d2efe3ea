r"""Gradient flow through time: per-lag gradient norms, Jacobian products, η and the horizon.

Backpropagation through time multiplies step Jacobians; for a loss L at the last step T,

.. math::
    \frac{\partial L}{\partial s_k} = \frac{\partial L}{\partial s_T}
        \prod_{k < i \le T} \frac{\partial s_i}{\partial s_{i-1}},
    \qquad
    \Big\| \prod_{k < i \le T} \frac{\partial s_i}{\partial s_{i-1}} \Big\|
        \le \eta^{T-k}

(Pascanu, Mikolov & Bengio 2013) with, for an Elman cell :math:`s_t = \phi(W_{hh} s_{t-1} + …)`,
:math:`\eta \le \sigma_{max}(W_{hh})\,\gamma`, γ the bound on :math:`|\phi'|` (1 for tanh and
ReLU, 1/4 for sigmoid). The state ``s`` is ``h`` (Elman, GRU) or ``(h, c)`` (LSTM). The *lag* of
``s_k`` is ``ℓ = T - k``: lag 0 is the last state, lag T the initial one.

- :func:`gradient_norms`: ``‖∂L/∂s_{T-ℓ}‖`` for ℓ = 0 … T, per stacked layer (mean over the
  batch of per-sequence norms).
- :func:`jacobian_norms`: ``‖∂s_T/∂s_{T-ℓ}‖₂`` (spectral norm) for ℓ = 1 … T, exactly (full
  Jacobians, one batched backward pass) or by power iteration with vector–Jacobian and
  Jacobian–vector products.
- :func:`fit_eta`: the per-step factor η, ``exp`` of the least-squares slope of
  ``log ‖·‖`` against the lag.
- :func:`memory_horizon`: the first lag at which the relative gradient
  ``‖∂L/∂s_{T-ℓ}‖ / ‖∂L/∂s_T‖`` falls below a threshold.

Example::

    >>> rnn = rnnkit.RNN(8, 32)
    >>> curves = gradient_norms(rnn, torch.randn(100, 4, 8))
    >>> curves[0].shape            # one curve per layer, lags 0..T
    torch.Size([101])
    >>> 0 < fit_eta(curves[0]) < 1, memory_horizon(curves[0]) < 100
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from rnnkit.diagnostics.unroll import LayerTrace, output_in_layout, step_mixed, time_major, unroll

# Bound on |φ'| per Elman nonlinearity, for Pascanu's η ≤ σ_max(W_hh)·γ.
# Largest state size (P + H for LSTM) whose Jacobians "auto" computes exactly.
MAX_EXACT_SIZE = 256

DERIVATIVE_BOUND = {"tanh": 1.0, "relu": 1.0, "leaky_relu": 1.0, "elu": 1.0, "sigmoid": 0.25}


def _flat(state) -> Tensor:
    return torch.cat(tuple(state), dim=-1)


def _unflat(cell, flat: Tensor):
    return cell.state_type(*flat.split(list(cell.state_sizes()), dim=-1))


def last_step_projection(seed: int = 0) -> Callable[[Tensor], Tensor]:
    """The default probe loss ``L = Σ_b ⟨u, y_T^b⟩``, u a fixed random unit vector.

    It takes the output in the layer's own layout; its gradient at the last step is ``u`` for
    every sequence, so the relative curve starts at exactly 1.
    """

    def loss(output: Tensor, *, time_dim: int) -> Tensor:
        last = output.select(time_dim, output.shape[time_dim] - 1)  # (B, P)
        g = torch.Generator().manual_seed(seed)
        u = torch.randn(last.shape[-1], generator=g, dtype=last.dtype).to(last.device)
        return (last @ (u / u.norm())).sum()

    return loss


def gradient_norms(
    layer,
    x: Tensor,
    loss: Callable[[Tensor], Tensor] | None = None,
    hx=None,
    *,
    dtype: torch.dtype | None = torch.float64,
    seed: int = 0,
    traces: Sequence[LayerTrace] | None = None,
) -> list[Tensor]:
    """Per-lag gradient norms ``‖∂L/∂s_{T-ℓ}‖``, ℓ = 0 … T, one (T+1,) curve per layer.

    Args:
        layer: a unidirectional rnnkit layer (unchanged).
        x: its input, in its own layout.
        loss: ``loss(output) -> scalar`` on the top layer's output (layout of ``x``); default
            :func:`last_step_projection` — a loss at the last step.
        hx: optional initial state.
        dtype: compute dtype (float64 by default so decays to 1e-200 stay visible).
        traces: reuse an :func:`unroll` of the same layer and input.

    Returns:
        For each stacked layer, a float64 tensor (T+1,) indexed by lag: entry ℓ is the mean over
        the batch of ``‖∂L/∂s_{T-ℓ}‖`` (all state fields of a sequence together).
    """
    traces = list(traces) if traces is not None else unroll(layer, x, hx, dtype=dtype)
    output = output_in_layout(layer, traces, x)
    if loss is None:
        time_dim = 0 if (x.dim() == 2 or not layer.batch_first) else 1
        value = last_step_projection(seed)(output, time_dim=time_dim)
    else:
        value = loss(output)
    if not isinstance(value, Tensor) or value.dim() != 0:
        raise ValueError("loss must return a scalar tensor")
    tensors = [t for trace in traces for state in trace.states for t in state]
    grads = torch.autograd.grad(value, tensors, allow_unused=True, retain_graph=False)
    curves = []
    position = 0
    for trace in traces:
        fields = len(trace.states[0])
        per_step = []
        for _ in trace.states:
            parts = [
                g if g is not None else torch.zeros_like(t)
                for g, t in zip(grads[position : position + fields], tensors[position:])
            ]
            position += fields
            per_step.append(torch.cat(parts, dim=-1).norm(dim=-1).mean())
        # per_step[k] belongs to s_k; lag ℓ = T - k.
        curves.append(torch.stack(per_step).flip(0).to(torch.float64).detach())
    return curves


# -- Jacobian products -------------------------------------------------------------------------
def _run(trace: LayerTrace, start, copies: int, sample: int, inject=None):
    """Re-run one layer for ``copies`` copies of one sequence from ``start`` (copies, n).

    ``inject(t, state_flat) -> state_flat`` may perturb the flat state after step t.
    Returns the list of flat states s_0 … s_T (each (copies, n)).
    """
    cell = trace.cell
    flat = start
    states = [flat]
    for t in range(trace.length):
        x_t = trace.inputs[t, sample : sample + 1].expand(copies, -1)
        new = step_mixed(cell, trace.weights, x_t, _unflat(cell, flat), trace.zoneout)
        flat = _flat(new)
        if inject is not None:
            flat = inject(t + 1, flat)
        states.append(flat)
    return states


def _exact(trace: LayerTrace, sample: int) -> Tensor:
    """σ_max(∂s_T/∂s_k) for k = 0 … T-1 of one sequence, from full Jacobians.

    n copies of the sequence, seed ``e_i`` on copy i: one backward pass gives row i of every
    ``∂s_T/∂s_k`` at once.
    """
    s0 = _flat(trace.states[0])[sample].detach()
    n = s0.shape[0]
    start = s0.expand(n, n).clone().requires_grad_(True)
    states = _run(trace, start, n, sample)
    eye = torch.eye(n, dtype=s0.dtype, device=s0.device)
    grads = torch.autograd.grad(states[-1], states[:-1], grad_outputs=eye)
    # grads[k][i] = e_i^T ∂s_T/∂s_k, i.e. grads[k] is the Jacobian matrix itself.
    return torch.stack([torch.linalg.matrix_norm(g, ord=2) for g in grads])


def _power(trace: LayerTrace, sample: int, iterations: int, seed: int) -> Tensor:
    """Power-iteration estimate of σ_max(∂s_T/∂s_k), k = 0 … T-1, of one sequence.

    One copy of the sequence per k; copy k receives a zero perturbation δ_k added to s_k, so
    ``∂s_T/∂δ_k = ∂s_T/∂s_k =: M_k``. A vector–Jacobian product gives ``M_kᵀ w`` for every k
    in one backward pass; the Jacobian–vector product ``M_k u`` is the gradient of that VJP
    with respect to w (double backward on the same graph).
    """
    T = trace.length
    s0 = _flat(trace.states[0])[sample].detach()
    n = s0.shape[0]
    delta = torch.zeros(T, n, dtype=s0.dtype, device=s0.device, requires_grad=True)
    when = torch.arange(T, device=s0.device)  # copy k is perturbed at s_k

    def inject(t: int, flat: Tensor) -> Tensor:
        mask = (when == t).to(flat.dtype).unsqueeze(1)
        return flat + mask * delta

    start = s0.expand(T, n) + (when == 0).to(s0.dtype).unsqueeze(1) * delta
    final = _run(trace, start, T, sample, inject)[-1]  # (T, n)
    w = torch.zeros_like(final, requires_grad=True)
    (vjp_w,) = torch.autograd.grad(final, delta, w, create_graph=True)  # M_kᵀ w, linear in w
    g = torch.Generator(device="cpu").manual_seed(seed)
    u = torch.randn(T, n, generator=g, dtype=s0.dtype).to(s0.device)
    u = u / u.norm(dim=1, keepdim=True)
    sigma = torch.zeros(T, dtype=s0.dtype, device=s0.device)
    for _ in range(iterations):
        (v,) = torch.autograd.grad(vjp_w, w, u, retain_graph=True)  # M_k u
        sigma = v.norm(dim=1)
        (back,) = torch.autograd.grad(final, delta, v, retain_graph=True)  # M_kᵀ M_k u
        norm = back.norm(dim=1, keepdim=True)
        u = torch.where(norm > 0, back / norm.clamp_min(1e-300), u)
    return sigma.detach()


def jacobian_norms(
    layer,
    x: Tensor,
    hx=None,
    *,
    method: str = "auto",
    samples: int = 1,
    iterations: int = 30,
    max_exact_size: int = MAX_EXACT_SIZE,
    dtype: torch.dtype | None = torch.float64,
    seed: int = 0,
    traces: Sequence[LayerTrace] | None = None,
) -> list[Tensor]:
    """Spectral norms ``‖∂s_T/∂s_{T-ℓ}‖₂`` for ℓ = 0 … T, one (T+1,) curve per layer.

    The Jacobian is that of the layer's own recurrence (its input sequence held fixed), for
    each of the first ``samples`` sequences of the batch, averaged. Entry 0 is 1 (ℓ = 0).

    Args:
        method: ``"exact"`` (full Jacobians; cost grows as the state size n cubed),
            ``"power"`` (``iterations`` rounds of power iteration with VJPs and JVPs; a lower
            bound that converges to σ_max), or ``"auto"``: exact when n ≤ ``max_exact_size``.
    """
    if method not in ("auto", "exact", "power"):
        raise ValueError(f"method must be 'auto', 'exact' or 'power', got {method!r}")
    traces = list(traces) if traces is not None else unroll(layer, x, hx, dtype=dtype)
    batch = traces[0].inputs.shape[1]
    if not 1 <= samples <= batch:
        raise ValueError(f"samples must be in [1, batch size {batch}], got {samples}")
    curves = []
    for trace in traces:
        n = sum(trace.cell.state_sizes())
        exact = method == "exact" or (method == "auto" and n <= max_exact_size)
        per_sample = []
        for sample in range(samples):
            with torch.enable_grad():
                norms = _exact(trace, sample) if exact else _power(trace, sample, iterations, seed)
            per_sample.append(norms)
        norms = torch.stack(per_sample).mean(0)  # index k = 0 … T-1
        one = torch.ones(1, dtype=norms.dtype, device=norms.device)
        curves.append(torch.cat([one, norms.flip(0)]).to(torch.float64).detach())
    return curves


# -- summaries ---------------------------------------------------------------------------------
def relative(curve: Tensor) -> Tensor:
    """The curve divided by its lag-0 value."""
    base = curve[0]
    if not base > 0:
        return torch.zeros_like(curve)
    return curve / base


def fit_eta(curve: Tensor, floor: float = 1e-250) -> float | None:
    """η = exp(slope) of a least-squares line through ``log curve`` against the lag.

    Fitted over the lags from 0 up to the last one before the curve first leaves
    ``(floor, ∞)`` relative to lag 0 (underflow, an exactly zero gradient). For equally spaced
    lags the slope is a positively weighted mean of the one-step log-ratios, so a curve that
    shrinks by at least a factor q per step always gives η ≤ q. None with fewer than 2 lags.
    """
    rel = relative(curve.to(torch.float64))
    ok = torch.isfinite(rel) & (rel > floor)
    end = int(ok.long().cumprod(0).sum())  # length of the valid prefix
    if end < 2:
        return None
    y = rel[:end].log()
    lags = torch.arange(end, dtype=torch.float64, device=rel.device)
    lags = lags - lags.mean()
    slope = float((lags * (y - y.mean())).sum() / (lags * lags).sum())
    return math.exp(slope)


def memory_horizon(curve: Tensor, threshold: float = 1e-3) -> int | None:
    """The first lag at which ``curve / curve[0]`` falls below ``threshold``; None if never."""
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    below = (relative(curve) < threshold).nonzero()
    return int(below[0]) if len(below) else None


def pascanu_bound(cell, weights) -> float | None:
    """σ_max(W_hh)·γ for an Elman cell (γ bounds |φ'|); None for gated cells."""
    nonlinearity = getattr(cell, "nonlinearity", None)
    recurrent = cell.parameter_names("recurrent")
    if nonlinearity not in DERIVATIVE_BOUND or cell.gate_count != 1 or not recurrent:
        return None
    sigma = torch.linalg.matrix_norm(weights[recurrent[0]].detach().double(), ord=2).item()
    return sigma * DERIVATIVE_BOUND[nonlinearity]


def check_input(layer, x: Tensor) -> None:
    """Validate ``x`` for ``layer`` (shape and features) before any work."""
    time_major(layer, x)
