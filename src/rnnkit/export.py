"""Models that leave the training process: ``torch.export`` programs and ONNX files.

Any module holding rnnkit layers exports with dynamic batch *and* time: under
``torch.export`` every layer runs its recurrence as one traced ``scan`` (see
:mod:`rnnkit.backends.exportable`) instead of loops or kernels that unroll over the example's
length, and the ONNX exporter turns that scan into ONNX's ``Scan``. Padded batches pass
``lengths=`` as a tensor input like any other. Streaming models take the state as explicit
inputs and return the next state, the convention of ONNX Runtime (whose sessions are
stateless): feed a chunk and the previous state, get outputs and the next state.

Example (``WordModel`` is any user module holding rnnkit layers; tests/test_export.py runs this)::

    model = WordModel(rnnkit.LSTM(6, 8))
    args = (torch.randint(0, 13, (5, 3)), (torch.zeros(1, 3, 8), torch.zeros(1, 3, 8)))
    program = export_program(model, args)                     # any T and B
    export_onnx(model, args, "model.onnx")
    check_onnx("model.onnx", model, other_args)               # max abs deviation, e.g. 3.5e-07

A trained run of any task exports through its spec (:meth:`rnnkit.runs.TaskSpec.export_model`
says which graphs, with which named inputs and outputs): :func:`export_run` writes the graphs
and a JSON sidecar (``FILE.json``: encoders such as the vocabulary, labels or scaler, and
every input's and output's name, dtype and shape), and :func:`check_run` runs the written files
on the run's validation data beside the eager model: the max abs deviation, and the task's
metric computed both ways.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

from rnnkit.errors import InvalidInputError

#: pip extra that installs what ONNX export and checking need.
EXTRA_HINT = "install the export extra: pip install 'rnnkit[export]'"

FORMATS = ("onnx", "pt2")


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"ONNX export needs {module!r}, which is not installed; {EXTRA_HINT}"
        ) from exc


def auto_dynamic_shapes(example_inputs: tuple):
    """``dynamic_shapes`` marking every dimension of every tensor input ``Dim.AUTO``.

    torch keeps a dimension dynamic unless the model's code fixes it (feature sizes, the
    state's ``num_layers * num_directions``), so batch and time come out dynamic. Example
    sizes of 0 or 1 are specialised by torch: give examples with B, T ≥ 2.
    """

    def spec(leaf):
        if isinstance(leaf, Tensor):
            return {d: torch.export.Dim.AUTO for d in range(leaf.dim())}
        return None

    return tuple(pytree.tree_map(spec, arg) for arg in example_inputs)


def export_program(
    module: nn.Module, example_inputs: tuple, *, dynamic: bool = True, dynamic_shapes=None
) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``module`` (in eval mode) with dynamic batch and time.

    Args:
        module: any module; its rnnkit layers take their export path.
        example_inputs: positional arguments of one call (tensors or nested tuples of them).
        dynamic: mark every tensor dimension ``Dim.AUTO`` (see :func:`auto_dynamic_shapes`);
            ignored when ``dynamic_shapes`` is given.
        dynamic_shapes: passed to ``torch.export.export`` as it is.
    """
    if dynamic_shapes is None and dynamic:
        dynamic_shapes = auto_dynamic_shapes(example_inputs)
    module = module.eval()
    with _frozen(module):
        return torch.export.export(module, tuple(example_inputs), dynamic_shapes=dynamic_shapes)


@contextlib.contextmanager
def _frozen(module: nn.Module):
    """Parameters without ``requires_grad`` while exporting: an inference graph needs no
    backward, and with none to derive the exporter traces each scan's body once instead of
    partitioning a joint forward-backward graph (twice as fast)."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


def export_onnx(
    module: nn.Module,
    example_inputs: tuple,
    path: str | os.PathLike,
    *,
    dynamic: bool = True,
    dynamic_shapes=None,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    opset: int | None = None,
    native_ops: bool = True,
) -> Path:
    """Write ``module`` as an ONNX file through torch's exporter (``dynamo=True``).

    Args as :func:`export_program`, plus ``path``, the flat ``input_names`` /
    ``output_names``, ``opset`` (torch's default when None) and ``native_ops``: rnnkit layers
    that ONNX's ``LSTM`` / ``GRU`` / ``RNN`` operators express become those nodes
    (:mod:`rnnkit.backends.onnx_ops`); the others, or all with ``native_ops=False``, a ``Scan``.

    Raises:
        ImportError: ``onnx`` / ``onnxscript`` missing (names the extra to install).
    """
    _require("onnx")
    _require("onnxscript")
    if dynamic_shapes is None and dynamic:
        dynamic_shapes = auto_dynamic_shapes(example_inputs)
    module = module.eval()
    # The exporter reports what it skips (torchvision ops, renamed axes) as warnings and log
    # lines at every call; they are about torch's internals, not the user's model.
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry.level
    registry.setLevel(logging.ERROR)
    try:
        from rnnkit.backends import onnx_ops

        lowering = onnx_ops.lowering() if native_ops else contextlib.nullcontext()
        with warnings.catch_warnings(), _frozen(module), lowering:
            warnings.filterwarnings("ignore", category=FutureWarning, module="copyreg")
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used")
            program = torch.onnx.export(
                module,
                tuple(example_inputs),
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                input_names=input_names,
                output_names=output_names,
                opset_version=opset,
                verbose=False,
                custom_translation_table=onnx_ops.translations() if native_ops else None,
            )
    finally:
        registry.setLevel(level)
    path = Path(path)
    program.save(str(path))
    return path


def _flat_arrays(values) -> list:
    return [leaf.detach().cpu().numpy() for leaf in pytree.tree_leaves(values)]


def run_onnx(path: str | os.PathLike, inputs: tuple) -> list:
    """Run an ONNX file in onnxruntime (CPU) on ``inputs`` (flattened in order)."""
    return OnnxRunner(path)(*pytree.tree_leaves(inputs))


class OnnxRunner:
    """One onnxruntime session (CPU) over an ONNX file: ``runner(*tensors) -> [tensors]``."""

    def __init__(self, path: str | os.PathLike) -> None:
        ort = _require("onnxruntime")
        self.path = path
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *inputs: Tensor) -> list[Tensor]:
        arrays = _flat_arrays(inputs)
        if len(arrays) != len(self.names):
            raise ValueError(
                f"{self.path} takes {len(self.names)} inputs ({', '.join(self.names)}), "
                f"got {len(arrays)}"
            )
        return [torch.from_numpy(a) for a in self.session.run(None, dict(zip(self.names, arrays)))]


def max_deviation(outputs, expected) -> float:
    """Max abs difference between two equally structured (flattenable) sets of outputs."""
    got = [torch.as_tensor(o) for o in pytree.tree_leaves(outputs)]
    want = [e.detach().cpu() for e in pytree.tree_leaves(expected)]
    if len(got) != len(want):
        raise ValueError(f"{len(got)} outputs to compare with {len(want)} expected")
    deviations = [
        float((g.to(w.dtype) - w).abs().max()) if w.is_floating_point() else float((g != w).any())
        for g, w in zip(got, want)
        if w.numel()
    ]
    return max(deviations, default=0.0)


def check_onnx(path: str | os.PathLike, module: nn.Module, inputs: tuple) -> float:
    """Max abs deviation between onnxruntime running ``path`` and ``module(*inputs)``."""
    with torch.no_grad():
        expected = module.eval()(*inputs)
    return max_deviation(run_onnx(path, inputs), expected)


def check_program(program: torch.export.ExportedProgram, module: nn.Module, inputs: tuple) -> float:
    """Max abs deviation between an exported program and ``module(*inputs)``."""
    with torch.no_grad():
        return max_deviation(program.module()(*inputs), module.eval()(*inputs))


# -- run-level export --------------------------------------------------------------------------
@dataclass
class Graph:
    """One graph of an exported run: ``fn(*inputs.values())`` returns the named ``outputs``.

    Attributes:
        fn: the computation (a module or a function of modules), flat tensors in and out.
        inputs: example input per name, in ``fn``'s argument order (sizes ≥ 2 where dynamic).
        dims: the dynamic dimensions per input name, ``{"ids": {0: "batch", 1: "time"}}``;
            equal names are one symbol (the same batch in every input).
        outputs: output name -> shape, dynamic dimensions by name (``["batch", "time", 65]``).
        name: the graph's name (its file is ``model.<name>.onnx`` when a run has several).
        modules: the modules whose weights ``fn`` uses (exported in eval mode).
    """

    fn: Callable[..., Sequence[Tensor]]
    inputs: dict[str, Tensor]
    dims: dict[str, dict[int, str]]
    outputs: dict[str, list]
    name: str = "model"
    modules: Sequence[nn.Module] = ()

    def module(self) -> nn.Module:
        return _Flat(self.fn, self.modules)

    def dynamic_shapes(self) -> tuple:
        symbols: dict[str, Any] = {}

        def dim(name: str):
            return symbols.setdefault(name, torch.export.Dim(name, min=1))

        # _Flat.forward takes ``*inputs``: one argument to torch.export, so one tuple of specs.
        return (
            tuple(
                {d: dim(n) for d, n in self.dims.get(name, {}).items()} or None
                for name in self.inputs
            ),
        )

    def describe(self) -> dict:
        """Names, dtypes and shapes of the inputs and outputs (for the sidecar)."""

        def shape(name: str, tensor: Tensor) -> list:
            dims = self.dims.get(name, {})
            return [dims.get(d, size) for d, size in enumerate(tensor.shape)]

        with torch.no_grad():
            produced = self.module()(*self.inputs.values())
        return {
            "inputs": {
                name: {"dtype": _dtype(t), "shape": shape(name, t)}
                for name, t in self.inputs.items()
            },
            "outputs": {
                name: {"dtype": _dtype(t), "shape": s}
                for (name, s), t in zip(self.outputs.items(), produced)
            },
        }


def _dtype(tensor: Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


class _Flat(nn.Module):
    """A graph's function as a module: flat tensors in, a flat tuple of tensors out."""

    def __init__(self, fn: Callable, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        self.fn = fn
        self.held = nn.ModuleList(modules)  # so .eval() and the exporter see the weights

    def forward(self, *inputs: Tensor):
        return tuple(pytree.tree_leaves(self.fn(*inputs)))


@dataclass
class TaskExport:
    """What a task exports (:meth:`rnnkit.runs.TaskSpec.export_model`) and how to check it.

    Attributes:
        graphs: the graphs, one file each.
        sidecar: what a consumer needs besides the encoders (how to read the outputs, …).
        feed: a held-out batch (what the run's validation source yields) -> the inputs of
            the first graph.
        chain: instead of ``feed``, for several graphs: ``chain(batch, call)`` returns the
            outputs, where ``call(graph_name, inputs)`` runs one graph (eager or exported).
        score: ``score(outputs, batch) -> (sum, count)`` of ``metric`` (e.g. correct
            predictions and items); the metric is ``sum / count``.
        metric: the metric's name.
    """

    graphs: list[Graph]
    sidecar: dict = field(default_factory=dict)
    feed: Callable[[Any], dict[str, Tensor]] | None = None
    chain: Callable[[Any, Callable], Sequence[Tensor]] | None = None
    score: Callable[[Sequence[Tensor], Any], tuple[float, int]] | None = None
    metric: str = ""

    def forward(self, batch, call: Callable) -> Sequence[Tensor]:
        """The outputs for one held-out batch, each graph run by ``call(name, inputs)``."""
        if self.chain is not None:
            return self.chain(batch, call)
        return call(self.graphs[0].name, self.feed(batch))


def graph_paths(export: TaskExport, path: str | os.PathLike) -> dict[str, Path]:
    """Where each graph goes: ``path`` itself for one graph, else ``stem.<name><suffix>``."""
    path = Path(path)
    if len(export.graphs) == 1:
        return {export.graphs[0].name: path}
    return {g.name: path.with_name(f"{path.stem}.{g.name}{path.suffix}") for g in export.graphs}


def sidecar_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def export_run(
    loaded, path: str | os.PathLike, *, format: str = "onnx", opset: int | None = None
) -> tuple[list[Path], Path]:
    """Export a trained run (a :class:`rnnkit.runs.LoadedRun`) as ``format`` files + sidecar.

    Returns ``(graph files, sidecar)``. Every file is written under a temporary name and
    renamed, so an interrupted export leaves no half file.

    Raises:
        ValueError: unknown ``format``.
        InvalidInputError: the task cannot be exported.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    from rnnkit.io import atomic_write_json, fsync_dir, versions

    export = loaded.spec.export_model(loaded)
    paths = graph_paths(export, path)
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".export.", dir=folder))
    graphs = {}
    try:
        for graph in export.graphs:
            tmp = scratch / paths[graph.name].name
            _write_graph(graph, tmp, format, opset)
            graphs[graph.name] = {"file": paths[graph.name].name, **graph.describe()}
        for graph in export.graphs:
            os.replace(scratch / paths[graph.name].name, paths[graph.name])
        fsync_dir(folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    sidecar = sidecar_path(path)
    spec = loaded.spec
    meta = {
        "task": spec.name,
        "format": format,
        "graphs": graphs,
        **export.sidecar,
        "encoders": spec.encoders_to_json(loaded.encoders),
        "run": str(loaded.run.path),
        "versions": versions(),
    }
    atomic_write_json(sidecar, meta)
    return list(paths.values()), sidecar


def _write_graph(graph: Graph, path: Path, format: str, opset: int | None) -> None:
    module = graph.module().eval()
    args = tuple(graph.inputs.values())
    if format == "onnx":
        export_onnx(
            module,
            args,
            path,
            dynamic_shapes=graph.dynamic_shapes(),
            input_names=list(graph.inputs),
            output_names=list(graph.outputs),
            opset=opset,
        )
    else:
        program = export_program(module, args, dynamic_shapes=graph.dynamic_shapes())
        torch.export.save(program, str(path))


def load_graphs(export: TaskExport, path: str | os.PathLike, format: str) -> dict[str, Callable]:
    """The written graphs as callables ``(*tensors) -> [tensors]`` (onnxruntime for ONNX,
    the loaded ExportedProgram for pt2)."""
    runners = {}
    for name, file in graph_paths(export, path).items():
        if format == "onnx":
            runners[name] = OnnxRunner(file)
        else:
            runners[name] = torch.export.load(str(file)).module()
    return runners


@dataclass
class CheckResult:
    """What :func:`check_run` measured: ``max_abs_diff`` over every output of ``batches``
    held-out batches (``items`` items), and the task's metric from PyTorch and from the
    exported files."""

    batches: int
    max_abs_diff: float
    metric: str
    pytorch: float
    exported: float
    format: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def check_run(
    loaded,
    path: str | os.PathLike,
    *,
    format: str = "onnx",
    batches: Iterable | None = None,
    max_batches: int = 8,
) -> CheckResult:
    """Run the exported files of ``loaded`` beside its eager model on held-out batches.

    Args:
        batches: batches in the task's own format; default: the run's validation source
            (read again from its data, which must be unchanged).
        max_batches: at most this many batches.

    Raises:
        InvalidInputError: no held-out data to check on.
    """
    from rnnkit import runs

    export = loaded.spec.export_model(loaded)
    if batches is None:
        seed = runs._saved_seed(loaded)
        batches = runs._reload_data(loaded.spec, loaded.run, loaded.config, seed=seed).val
    graphs = {g.name: g for g in export.graphs}
    runners = load_graphs(export, path, format)

    def eager(name: str, inputs: dict[str, Tensor]):
        return graphs[name].module().eval()(*inputs.values())

    def exported(name: str, inputs: dict[str, Tensor]):
        return runners[name](*inputs.values())

    deviation, count, sums = 0.0, 0, [0.0, 0.0, 0]
    with torch.no_grad():
        for batch in batches or ():
            if count >= max_batches:
                break
            want = export.forward(batch, eager)
            got = export.forward(batch, exported)
            deviation = max(deviation, max_deviation(got, want))
            if export.score is not None:
                a, n = export.score(want, batch)
                b, _ = export.score([torch.as_tensor(g) for g in got], batch)
                sums[0] += a
                sums[1] += b
                sums[2] += n
            count += 1
    if not count:
        raise InvalidInputError(f"{loaded.run.path} has no validation data to check the export on")
    n = sums[2]
    return CheckResult(
        batches=count,
        max_abs_diff=deviation,
        metric=export.metric,
        pytorch=sums[0] / n if n else math.nan,
        exported=sums[1] / n if n else math.nan,
        format=format,
    )


# -- pieces the tasks share ----------------------------------------------------------------------
class StreamingModel(nn.Module):
    """A model with explicit state: ``(x, *state) -> (y, *next_state)``.

    ``model(x, hx) -> (y, state)`` (a language model, a music model) with its recurrent layer
    ``model.rnn``; the state is flat (``h`` or ``h, c``, each (L*D, B, ·)) so that an ONNX file
    has one named input and output per field. Feed each chunk the state the previous chunk
    returned (zeros at the start).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.fields = model.rnn.cell.state_type._fields

    def forward(self, x: Tensor, *state: Tensor):
        hx = state if len(state) > 1 else state[0]
        y, next_state = self.model(x, hx)
        next_state = next_state if isinstance(next_state, tuple) else (next_state,)
        return (y, *next_state)

    def initial_state(self, batch: int) -> tuple[Tensor, ...]:
        layer = self.model.rnn
        rows = layer.num_layers * layer.num_directions
        weight = next(layer.parameters())
        return tuple(weight.new_zeros(rows, batch, s) for s in layer.cell.state_sizes())

    def inputs(self, x_name: str, x: Tensor) -> dict[str, Tensor]:
        """The graph's inputs for a chunk ``x`` from the start: zero state (``h0``, ``c0``)."""
        return {x_name: x, **dict(zip((f"{f}0" for f in self.fields), self.initial_state(len(x))))}

    def graph(self, x_name: str, x: Tensor, x_dims: dict[int, str], y_name: str, y_shape: list):
        """The streaming :class:`Graph`: ``x`` and the state in, ``y`` and the next state out."""
        layer = self.model.rnn
        rows = layer.num_layers * layer.num_directions
        inputs = self.inputs(x_name, x)
        return Graph(
            fn=self,
            inputs=inputs,
            dims={x_name: x_dims, **{name: {1: "batch"} for name in list(inputs)[1:]}},
            outputs={
                y_name: y_shape,
                **{
                    f"{f}_next": [rows, "batch", s]
                    for f, s in zip(self.fields, layer.cell.state_sizes())
                },
            },
            modules=[self],
        )

    def sidecar(self) -> dict:
        layer = self.model.rnn
        rows = layer.num_layers * layer.num_directions
        return {
            "state": {f: [rows, "batch", s] for f, s in zip(self.fields, layer.cell.state_sizes())},
            "state_init": "zeros; feed each chunk the *_next outputs of the previous one",
        }


def cross_entropy_sum(logits: Tensor, targets: Tensor, *, ignore_index: int = -100) -> float:
    """Summed cross-entropy (nats) of ``logits`` (…, V) against ``targets`` (…)."""
    import torch.nn.functional as F

    return float(
        F.cross_entropy(
            torch.as_tensor(logits).reshape(-1, logits.shape[-1]).float(),
            targets.reshape(-1),
            ignore_index=ignore_index,
            reduction="sum",
        )
    )
