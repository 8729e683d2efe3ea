r"""Parallel scans of the diagonal linear recurrence ``h_t = a_t ⊙ h_{t-1} + b_t``.

A cell whose gates read only ``x_t`` (minGRU, minLSTM; :mod:`rnnkit.cells.minimal`) computes
every ``a_t`` and ``b_t`` of a sequence at once; what is left is this recurrence, solved here
over the whole sequence with a few wide ops instead of T small ones. Two methods:

- :func:`log_space_scan` (Heinsen 2023, "Efficient Parallelization of a Ubiquitous Sequential
  Computation"): with ``a*_t = Σ_{s≤t} log a_s``,

  .. math:: h_t = e^{a^*_t} h_0 + \exp\big(a^*_t + \operatorname{logcumsumexp}_{s≤t}
            (\log b_s - a^*_s)\big)

  It needs ``b_t > 0`` (hence the paper's positive candidate activation ``g``) and takes
  ``log a``, ``log b``; the ``h_0`` term stays linear, so ``h_0`` may have any sign. Plain
  autograd differentiates it (cumsum, logcumsumexp, exp). In float32 the difference
  ``a*_t − a*_s`` of two large sums loses digits on long sequences of small ``a``.
- :func:`chunked_scan`: linear space, any sign of ``b``. T is cut into ``n`` chunks of ``C``
  steps; (1) the recurrence from zero runs inside every chunk at once (C steps, each one op
  over all n chunks) and ``cumprod`` gives each step's product of ``a`` since its chunk began;
  (2) the state entering each chunk runs across chunks (n small steps); (3) one bulk
  ``h = local + prod ⊙ carry``. About ``C + n ≈ 2√T`` Python steps instead of T, only products
  of the ``a_t`` (no division, no logarithm). Its backward is written by hand
  (:class:`_LinearRecurrence`): the adjoint of the recurrence is the same recurrence run
  backwards, ``d_t = g_t + a_{t+1} ⊙ d_{t+1}``, so the backward is one more chunked scan, and
  ``dL/db_t = d_t``, ``dL/da_t = d_t ⊙ h_{t-1}``, ``dL/dh_0 = a_1 ⊙ d_1``.

Which one runs is chosen by :func:`choose_method` from the measurement recorded there.

Shapes: T steps, and any trailing shape ``(…)`` shared by ``a``, ``b`` and ``h_0``
(the layers use (T, B, H) and (B, H)).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

SCAN_METHODS = ("auto", "log", "chunked")

# The chunked scan was faster at every length measured (see choose_method), so "auto" never
# picks the log-space scan; raise this if a measurement on another machine says otherwise.
LOG_SCAN_MAX_STEPS = 0
"""Sequences of at most this many steps take the log-space scan under ``scan="auto"``; longer
ones the chunked scan. Set from the measurement in :func:`choose_method`'s docstring."""


def choose_method(method: str, steps: int, positive: bool) -> str:
    """The scan that runs: ``method`` itself, or for ``"auto"`` the faster one at ``steps``.

    ``positive``: ``b_t > 0`` for every step, which the log-space scan needs; without it
    ``auto`` is always ``chunked``.

    Measured: fwd+bwd ms of a whole layer (``output.sum().backward()``), B=16, I=H=256,
    float32, torch 2.13 on the shared 2-core CPU, interleaved rounds, medians of 5:

    ====== ============ ================ ============ ================
    T      minGRU log   minGRU chunked   minLSTM log  minLSTM chunked
    ====== ============ ================ ============ ================
    128    121          22               84           26
    1024   755          175              729          240
    4096   3683         1129             9405         4485
    ====== ============ ================ ============ ================

    logcumsumexp and the exp/log passes around it cost more than the chunked scan's ~2√T
    small steps at every length, so ``auto`` picks ``chunked`` (``LOG_SCAN_MAX_STEPS = 0``);
    ``log`` stays selectable (and tested) — it is the paper's form.
    """
    if method not in SCAN_METHODS:
        raise ValueError(f"scan must be one of {', '.join(SCAN_METHODS)}; got {method!r}")
    if method == "log" and not positive:
        raise ValueError(
            "scan='log' needs a positive candidate (b_t > 0); with positive_candidate=False "
            "use scan='chunked' (or 'auto', which picks it)"
        )
    if method != "auto":
        return method
    return "log" if positive and steps <= LOG_SCAN_MAX_STEPS else "chunked"


def log_space_scan(log_a: Tensor, log_b: Tensor, h0: Tensor) -> Tensor:
    """``h_t = a_t h_{t-1} + b_t`` for every t, from ``log a`` and ``log b`` (T, …); h0 (…).

    ``log_b`` may hold ``-inf`` (``b_t = 0``, a held step); it is floored to a finite value
    far below any real one so that logcumsumexp's gradient stays finite.

    Example::

        >>> a, b = torch.rand(6, 2, 3), torch.rand(6, 2, 3)
        >>> h = log_space_scan(a.log(), b.log(), torch.zeros(2, 3))
        >>> torch.allclose(h[1], a[1] * b[0] + b[1])
        True
    """
    floor = torch.finfo(log_b.dtype).min / 8  # -inf would make logcumsumexp's gradient NaN
    log_b = log_b.clamp_min(floor)
    a_star = log_a.cumsum(0)
    h = (a_star + torch.logcumsumexp(log_b - a_star, dim=0)).exp()
    return h + a_star.exp() * h0


def chunk_size(steps: int) -> int:
    """Steps per chunk for :func:`chunked_scan`: about √T, which balances the C in-chunk steps
    against the T/C steps across chunks."""
    return max(1, math.ceil(math.sqrt(steps)))


def _chunked(a: Tensor, b: Tensor, h0: Tensor, size: int, reverse: bool = False) -> Tensor:
    """The chunked scan without autograd (see the module docstring); a, b (T, …), h0 (…).

    ``reverse``: run from the last step to the first (``h_t = a_t h_{t+1} + b_t``, ``h0``
    entering at the end) — the backward's adjoint recurrence, without flipping copies.
    """
    T = a.shape[0]
    rest = a.shape[1:]
    n = math.ceil(T / size)
    pad = n * size - T
    if pad:  # identity steps (a = 1, b = 0) where the scan ends
        ones, zeros = a.new_ones(pad, *rest), b.new_zeros(pad, *rest)
        a, b = (torch.cat([ones, a]), torch.cat([zeros, b])) if reverse else (
            torch.cat([a, ones]), torch.cat([b, zeros]))  # fmt: skip
    a = a.reshape(n, size, -1)
    b = b.reshape(n, size, -1)
    a_j, b_j = a.unbind(1), b.unbind(1)
    steps = range(size - 1, -1, -1) if reverse else range(size)
    chunks = range(n - 1, -1, -1) if reverse else range(n)
    # 1. Every chunk's map on the state: h_out = total ⊙ h_in + summary, all chunks at once.
    first, *others = steps
    summary = b_j[first]
    for j in others:
        summary = torch.addcmul(b_j[j], a_j[j], summary)
    total = a.prod(1)
    # 2. The state entering each chunk: n small steps.
    carry = a.new_empty(n, a.shape[2])
    entering = h0.reshape(-1)
    for k in chunks:
        carry[k] = entering
        entering = torch.addcmul(summary[k], total[k], entering)
    # 3. Inside every chunk again, from its entering state, writing h once.
    h = torch.empty_like(b)
    h_j = h.unbind(1)
    state = carry
    for j in steps:
        state = torch.addcmul(b_j[j], a_j[j], state, out=h_j[j])
    h = h.reshape(n * size, *rest)
    return h[pad:] if reverse else h[:T]


class _LinearRecurrence(torch.autograd.Function):
    """:func:`chunked_scan` with its hand-written backward (the reversed chunked scan)."""

    @staticmethod
    def forward(ctx, a, b, h0, size):
        h = _chunked(a, b, h0, size)
        ctx.size = size
        ctx.save_for_backward(a, h0, h)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        a, h0, h = ctx.saved_tensors
        # d_t = g_t + a_{t+1} d_{t+1}: the same recurrence backwards, coefficients shifted by one
        # (the last one is never used: d_T starts from zero).
        a_next = torch.cat([a[1:], a[:1]])
        d = _chunked(a_next, g.contiguous(), torch.zeros_like(h0), ctx.size, reverse=True)
        d_a = torch.empty_like(d)
        torch.mul(d[0], h0, out=d_a[0])
        torch.mul(d[1:], h[:-1], out=d_a[1:])
        return d_a, d, a[0] * d[0], None


def chunked_scan(a: Tensor, b: Tensor, h0: Tensor, size: int | None = None) -> Tensor:
    """``h_t = a_t h_{t-1} + b_t`` for every t in linear space, chunk by chunk; a, b (T, …).

    Example::

        >>> a, b = torch.rand(7, 2, 3), torch.randn(7, 2, 3)
        >>> h = chunked_scan(a, b, torch.ones(2, 3), size=3)
        >>> torch.allclose(h[1], a[1] * (a[0] + b[0]) + b[1])
        True
    """
    if a.shape[0] == 0:
        return b.clone()
    size = chunk_size(a.shape[0]) if size is None else size
    h0 = h0.expand(a.shape[1:]).contiguous()
    return _LinearRecurrence.apply(a.contiguous(), b.contiguous(), h0, size)
