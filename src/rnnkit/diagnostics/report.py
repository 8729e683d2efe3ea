"""One call that diagnoses a layer, fresh layers by cell name, tables and plots.

Example::

    >>> diagnoses = diagnose_cells(["rnn", "lstm"], hidden_size=32, length=100)
    >>> format_table(diagnoses).split()[:3]
    ['cell', 'init', 'layer']
    >>> import tempfile, pathlib
    >>> png = pathlib.Path(tempfile.mkdtemp()) / "gradient_flow.png"
    >>> plot_gradient_flow(diagnoses, png)
    >>> png.is_file()
    True
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from rnnkit.diagnostics.gates import gate_statistics
from rnnkit.diagnostics.gradient_flow import (
    MAX_EXACT_SIZE,
    fit_eta,
    gradient_norms,
    jacobian_norms,
    memory_horizon,
    pascanu_bound,
    relative,
)
from rnnkit.diagnostics.unroll import unroll

DEFAULT_THRESHOLD = 1e-3


@dataclass
class LayerDiagnosis:
    """Diagnosis of one stacked layer; curves are indexed by lag ℓ = 0 … T."""

    layer: int
    gradient: list[float]
    relative_gradient: list[float]
    eta: float | None
    horizon: int | None
    bound: float | None
    jacobian: list[float] | None = None
    eta_jacobian: float | None = None
    saturated: float | None = None
    dead_units: float | None = None
    sigma_max: float | None = None
    sigma_max_blocks: dict[str, float] = field(default_factory=dict)
    gates: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Diagnosis:
    """Diagnosis of a recurrent layer on one input batch."""

    label: str
    cell: str
    init: str | None
    length: int
    hidden_size: int
    threshold: float
    jacobian_method: str | None
    layers: list[LayerDiagnosis]

    def to_dict(self) -> dict:
        return asdict(self)


def _cell_name(layer) -> str:
    cell = layer.cell
    name = type(cell).__name__.removesuffix("Cell").lower()
    if name == "elman":
        return f"rnn-{cell.nonlinearity}"
    return name


def diagnose(
    layer,
    x: Tensor,
    loss: Callable[[Tensor], Tensor] | None = None,
    hx=None,
    *,
    label: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    jacobian: str | None = "auto",
    samples: int = 1,
    iterations: int = 30,
    seed: int = 0,
) -> Diagnosis:
    """Gradient flow, η, horizon and gate statistics of ``layer`` on input ``x``.

    Nothing about ``layer`` changes: it is re-run step by step with copies of its weights
    (see :mod:`rnnkit.diagnostics.unroll`).

    Args:
        layer: a unidirectional rnnkit layer.
        x: an input batch in the layer's layout.
        loss: ``loss(output) -> scalar``; default a random projection of the last step.
        threshold: relative gradient that defines the memory horizon.
        jacobian: ``"auto"``, ``"exact"``, ``"power"`` or None to skip Jacobian norms.
        samples, iterations: for the Jacobian norms (sequences averaged; power iterations).
    """
    traces = unroll(layer, x, hx)
    curves = gradient_norms(layer, x, loss, traces=traces, seed=seed)
    jacobians = None
    if jacobian is not None:
        traces_j = unroll(layer, x, hx)  # a fresh graph: the one above was consumed
        samples = min(samples, traces_j[0].inputs.shape[1])
        jacobians = jacobian_norms(
            layer,
            x,
            method=jacobian,
            samples=samples,
            iterations=iterations,
            traces=traces_j,
            seed=seed,
        )
    layers = []
    for index, (trace, curve) in enumerate(zip(traces, curves)):
        stats = gate_statistics(trace)
        jac = jacobians[index] if jacobians is not None else None
        layers.append(
            LayerDiagnosis(
                layer=index,
                gradient=curve.tolist(),
                relative_gradient=relative(curve).tolist(),
                eta=fit_eta(curve),
                horizon=memory_horizon(curve, threshold),
                bound=pascanu_bound(trace.cell, trace.weights),
                jacobian=None if jac is None else jac.tolist(),
                eta_jacobian=None if jac is None else fit_eta(jac),
                saturated=stats["saturated"],
                dead_units=stats["dead_units"],
                sigma_max=stats["sigma_max"],
                sigma_max_blocks=stats["sigma_max_blocks"],
                gates=stats["gates"],
            )
        )
    init = layer.init if isinstance(layer.init, str) else getattr(layer.init, "__name__", None)
    method = None
    if jacobian is not None:
        n = sum(traces[0].cell.state_sizes())
        method = jacobian if jacobian != "auto" else ("exact" if n <= MAX_EXACT_SIZE else "power")
    return Diagnosis(
        label=label or _cell_name(layer),
        cell=_cell_name(layer),
        init=init,
        length=traces[0].length,
        hidden_size=layer.hidden_size,
        threshold=threshold,
        jacobian_method=method,
        layers=layers,
    )


def parse_cell(text: str, init: str | None = None) -> tuple[str, str | None]:
    """``"lstm"`` → ("lstm", init); ``"lstm:chrono:200"`` → ("lstm", "chrono:200")."""
    from rnnkit.layers.registry import cell_families

    families = cell_families()
    cell, _, own = text.strip().partition(":")
    if cell not in families:
        raise ValueError(
            f"cell must be one of {', '.join(families)} (optionally cell:init); got {text!r}"
        )
    return cell, own or init


def diagnose_cells(
    cells: Sequence[str],
    *,
    hidden_size: int = 64,
    length: int = 200,
    input_size: int | None = None,
    batch_size: int = 8,
    num_layers: int = 1,
    init: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    jacobian: str | None = "auto",
    samples: int = 1,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> list[Diagnosis]:
    """Diagnose freshly initialised layers, one per cell, on the same random input (built and
    measured on ``device``; the seeded weights and inputs are drawn on the CPU first).

    Each entry of ``cells`` is a cell name (``rnn``, ``irnn``, ``lstm``, ``gru``), optionally
    with its own initialiser (``lstm:chrono:200``); others use ``init`` (None: the cell's
    default — orthogonal with forget bias 1 for LSTM, identity for IRNN). Every layer reads
    the same ``batch_size`` sequences of ``length`` steps of standard normal inputs
    (``input_size`` defaults to ``hidden_size``); weights and inputs are seeded by ``seed``.
    """
    from rnnkit.layers import make_layer

    contenders = [parse_cell(text, init) for text in cells]
    input_size = input_size or hidden_size
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, length, input_size, generator=g, dtype=torch.float64)
    results = []
    for cell, cell_init in contenders:
        torch.manual_seed(seed)
        options = {"batch_first": True, "num_layers": num_layers, "dtype": torch.float64}
        if cell_init is not None:
            options["init"] = cell_init
        layer = make_layer(cell, input_size, hidden_size, **options).to(device)
        label = cell if cell_init is None or cell_init == init else f"{cell}:{cell_init}"
        results.append(
            diagnose(
                layer,
                x,
                label=label,
                threshold=threshold,
                jacobian=jacobian,
                samples=samples,
                seed=seed,
            )
        )
    return results


def _fmt(value, spec: str = ".3f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def format_table(diagnoses: Sequence[Diagnosis]) -> str:
    """Plain-text table: one row per (diagnosis, layer)."""
    header = (
        f"{'cell':<12}{'init':<14}{'layer':>5}{'eta':>8}{'eta_J':>8}{'bound':>8}"
        f"{'horizon':>9}{'saturated':>11}{'dead':>7}{'smax_Whh':>10}"
    )
    lines = [header, "-" * len(header)]
    for d in diagnoses:
        for layer in d.layers:
            horizon = f">{d.length}" if layer.horizon is None else str(layer.horizon)
            lines.append(
                f"{d.label:<12}{str(d.init):<14}{layer.layer:>5}{_fmt(layer.eta):>8}"
                f"{_fmt(layer.eta_jacobian):>8}{_fmt(layer.bound):>8}{horizon:>9}"
                f"{_fmt(layer.saturated):>11}{_fmt(layer.dead_units, '.2f'):>7}"
                f"{_fmt(layer.sigma_max):>10}"
            )
    if diagnoses:
        d = diagnoses[0]
        lines.append(
            f"T={d.length}, hidden={d.hidden_size}; horizon: first lag with "
            f"|dL/ds| relative < {d.threshold:g}; eta: per-step factor fitted to the gradient "
            "(eta_J: to the Jacobian norm); bound: sigma_max(W_hh)*gamma (Elman only)"
        )
    return "\n".join(lines)


def plot_gradient_flow(diagnoses: Sequence[Diagnosis], path) -> None:
    """PNG: relative ``‖∂L/∂s_{T-ℓ}‖`` against lag (log scale), one line per cell and layer,
    each horizon marked, the threshold dashed; Jacobian norms dotted where measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rnnkit.io import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    # Show the curves down to their smallest positive value (float64 reaches 1e-300).
    positive = [
        v
        for d in diagnoses
        for layer in d.layers
        for v in layer.relative_gradient + (layer.jacobian or [])
        if v > 0
    ]
    floor = max(min(positive, default=1e-30), 1e-300)
    for index, d in enumerate(diagnoses):
        color = f"C{index % 10}"
        for layer in d.layers:
            suffix = f" (layer {layer.layer})" if len(d.layers) > 1 else ""
            rel = [max(v, floor) for v in layer.relative_gradient]
            line = ax.plot(range(len(rel)), rel, color=color, label=f"{d.label}{suffix}")[0]
            if layer.jacobian is not None:
                jac = [max(v, floor) for v in layer.jacobian]
                ax.plot(range(len(jac)), jac, color=line.get_color(), linestyle=":", linewidth=1)
            if layer.horizon is not None:
                ax.axvline(layer.horizon, color=line.get_color(), linestyle="--", linewidth=0.8)
                ax.plot([layer.horizon], [max(rel[layer.horizon], floor)], "o", color=color)
    if diagnoses:
        ax.axhline(diagnoses[0].threshold, color="gray", linestyle="--", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor)
    ax.set_xlabel("lag T - k (steps)")
    ax.set_ylabel("relative gradient norm |dL/ds_k| / |dL/ds_T|")
    ax.set_title("Gradient flow through time (dotted: |ds_T/ds_k|; dashed: horizon)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
