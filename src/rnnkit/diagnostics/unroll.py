"""Re-run a layer step by step through its cells, keeping every state for autograd.

A layer's backends (torch's kernels, the fused BPTT) do not expose the per-step states
``s_k``, and diagnostics must not change them. So diagnostics re-execute the layer's function
with the *specification* — :meth:`cell.step` with the layer's own weights, as the ``reference``
backend does — and keep each ``s_k`` as a node of the autograd graph, so that
``torch.autograd.grad(L, s_k)`` is the total derivative ``∂L/∂s_k``. The layer itself is only
read: its parameters are copied (detached, in ``dtype``) and nothing is registered on it.

The re-execution sees the layer as in ``eval()``: no dropout, zoneout replaced by its
expectation (``s_k = p s_{k-1} + (1 - p) s̃_k``), no DropConnect. Tests hold the unrolled
output to the layer's own (float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class LayerTrace:
    """One recurrent layer (one direction) unrolled over T steps.

    Attributes:
        cell: the layer's cell (its options describe the step).
        weights: the cell's parameters by name (detached copies in the trace's dtype).
        inputs: (T, B, I) the inputs this layer read.
        states: ``T + 1`` state NamedTuples ``s_0 … s_T``, fields (B, ·).
        zoneout: per state field, the zoneout probability (0 if none).
    """

    cell: object
    weights: dict[str, Tensor]
    inputs: Tensor
    states: list
    zoneout: tuple[float, ...]

    @property
    def length(self) -> int:
        return self.inputs.shape[0]

    @property
    def outputs(self) -> Tensor:
        """(T, B, P): ``h_1 … h_T``."""
        return torch.stack([s.h for s in self.states[1:]], 0)


def check_layer(layer) -> None:
    """Diagnostics take an rnnkit recurrent layer, unidirectional."""
    from rnnkit.layers import RecurrentLayer

    if not isinstance(layer, RecurrentLayer):
        raise TypeError(
            "diagnostics need an rnnkit layer (rnnkit.RNN/LSTM/GRU/IRNN); got "
            f"{type(layer).__name__} — convert a torch.nn layer with "
            "layer.load_state_dict(torch_layer.state_dict())"
        )
    if layer.bidirectional:
        raise ValueError(
            "diagnostics measure gradient flow towards the last step and need a "
            "unidirectional layer; got bidirectional=True"
        )


def time_major(layer, x: Tensor) -> Tensor:
    """The layer's input as (T, B, I); unbatched (T, I) becomes (T, 1, I)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"input must be a Tensor, got {type(x).__name__}")
    if x.dim() == 2:
        x = x.unsqueeze(1)
    elif x.dim() != 3:
        raise ValueError(f"input must have rank 2 or 3, got shape {tuple(x.shape)}")
    elif layer.batch_first:
        x = x.transpose(0, 1)
    if x.shape[-1] != layer.input_size:
        raise ValueError(
            f"input has {x.shape[-1]} features, the layer expects input_size={layer.input_size}"
        )
    if x.shape[0] < 1:
        raise ValueError("input has no time steps")
    return x


def step_mixed(cell, weights, x_t: Tensor, state, zoneout: tuple[float, ...]):
    """One step of the layer: ``cell.step`` and zoneout's expectation (eval mode)."""
    _, new = cell.step(x_t, state, weights)
    if any(zoneout):
        new = type(state)(*(n + p * (s - n) for s, n, p in zip(state, new, zoneout)))
    return new


def carried(state):
    """The state as the next step receives it: fields other than ``h`` become aliases.

    ``h_t`` of an LSTM is computed *from* ``c_t``, so the gradient w.r.t. the tensor ``c_t``
    would also count the path through ``h_t``. The alias is what the next step reads, so
    ``∂L/∂alias`` is the gradient of the state field alone — as if ``(h_t, c_t)`` were passed
    to the layer as ``hx``.
    """
    return type(state)(state[0], *(field.view_as(field) for field in state[1:]))


def unroll(layer, x: Tensor, hx=None, *, dtype: torch.dtype | None = torch.float64):
    """Re-run ``layer`` on ``x`` step by step; one :class:`LayerTrace` per stacked layer.

    Args:
        layer: a unidirectional rnnkit layer (read, never modified).
        x: the layer's input in its own layout ((T, B, I), or (B, T, I) with batch_first).
        hx: optional initial state as the layer takes it.
        dtype: compute dtype (float64 keeps gradients of 1e-200 representable);
            ``None`` keeps the layer's.

    Returns:
        A list of traces, bottom layer first. Every state is part of one autograd graph whose
        leaves are the initial states (the input is detached), so ``autograd.grad`` of a
        function of the top outputs with respect to any ``trace.states[k]`` field is the total
        derivative.
    """
    check_layer(layer)
    x = time_major(layer, x)
    param = next(layer.parameters())
    dtype = dtype or param.dtype
    x = x.detach().to(dtype=dtype, device=param.device)
    B = x.shape[1]
    initial = layer._initial_state(hx, B, x, False)  # tuple of (L, B, ·)
    initial = tuple(s.detach().to(dtype) for s in initial)
    traces = []
    layer_input = x
    for index, cell in enumerate(layer._cells):
        weights = {k: w.detach().to(dtype) for k, w in layer.cell_weights(index, 0).items()}
        # Leaves that require grad: every later state is then a node of the graph.
        state = cell.state_type(*(s[index].clone().requires_grad_(True) for s in initial))
        states = [state]
        for x_t in layer_input.unbind(0):
            state = carried(step_mixed(cell, weights, x_t, state, layer.zoneout))
            states.append(state)
        trace = LayerTrace(cell, weights, layer_input, states, layer.zoneout)
        traces.append(trace)
        residual = layer.residual and index > 0  # x^{(l+1)} = f_l(x^{(l)}) + x^{(l)}
        layer_input = trace.outputs + layer_input if residual else trace.outputs
    return traces


def output_in_layout(layer, traces: list[LayerTrace], like: Tensor) -> Tensor:
    """The top layer's outputs in the layout of the layer's input ``like``."""
    output = traces[-1].outputs
    if like.dim() == 2:
        return output.squeeze(1)
    return output.transpose(0, 1) if layer.batch_first else output
