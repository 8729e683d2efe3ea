"""Models that leave the training process: ``torch.export`` programs and ONNX files.

Any module holding rnnkit layers exports with dynamic batch *and* time: under
``torch.export`` every layer runs its recurrence as one traced ``scan`` (see
:mod:`rnnkit.backends.exportable`) instead of loops or kernels that unroll over the example's
length, and the ONNX exporter turns that scan into ONNX's ``Scan``. Streaming models take the
state as explicit inputs and return the next state, the convention of ONNX Runtime (whose
sessions are stateless): feed a chunk and the previous state, get outputs and the next state.

Example (``WordModel`` is any user module holding rnnkit layers; tests/test_export.py runs this)::

    model = WordModel(rnnkit.LSTM(6, 8))
    args = (torch.randint(0, 13, (5, 3)), (torch.zeros(1, 3, 8), torch.zeros(1, 3, 8)))
    program = export_program(model, args)                     # any T and B
    export_onnx(model, args, "model.onnx")
    check_onnx("model.onnx", model, other_args)               # max abs deviation, e.g. 3.5e-07
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

#: pip extra that installs what ONNX export and checking need.
EXTRA_HINT = "install the export extra: pip install 'rnnkit[export]'"


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
    return torch.export.export(module, tuple(example_inputs), dynamic_shapes=dynamic_shapes)


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
) -> Path:
    """Write ``module`` as an ONNX file through torch's exporter (``dynamo=True``).

    Args as :func:`export_program`, plus ``path``, the flat ``input_names`` /
    ``output_names`` and ``opset`` (torch's default when None).

    Raises:
        ImportError: ``onnx`` / ``onnxscript`` missing (names the extra to install).
    """
    _require("onnx")
    _require("onnxscript")
    if dynamic_shapes is None and dynamic:
        dynamic_shapes = auto_dynamic_shapes(example_inputs)
    module = module.eval()
    program = torch.onnx.export(
        module,
        tuple(example_inputs),
        dynamo=True,
        dynamic_shapes=dynamic_shapes,
        input_names=input_names,
        output_names=output_names,
        opset_version=opset,
        verbose=False,
    )
    path = Path(path)
    program.save(str(path))
    return path


def _flat_arrays(values) -> list:
    return [leaf.detach().cpu().numpy() for leaf in pytree.tree_leaves(values)]


def run_onnx(path: str | os.PathLike, inputs: tuple) -> list:
    """Run an ONNX file in onnxruntime (CPU) on ``inputs`` (flattened in order)."""
    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    arrays = _flat_arrays(inputs)
    if len(arrays) != len(names):
        raise ValueError(
            f"{path} takes {len(names)} inputs ({', '.join(names)}), got {len(arrays)}"
        )
    return session.run(None, dict(zip(names, arrays)))


def max_deviation(outputs, expected) -> float:
    """Max abs difference between two equally structured (flattenable) sets of outputs."""
    got = [torch.as_tensor(o) for o in pytree.tree_leaves(outputs)]
    want = [e.detach().cpu() for e in pytree.tree_leaves(expected)]
    if len(got) != len(want):
        raise ValueError(f"{len(got)} outputs to compare with {len(want)} expected")
    return max((float((g - w).abs().max()) for g, w in zip(got, want) if w.numel()), default=0.0)


def check_onnx(path: str | os.PathLike, module: nn.Module, inputs: tuple) -> float:
    """Max abs deviation between onnxruntime running ``path`` and ``module(*inputs)``."""
    with torch.no_grad():
        expected = module.eval()(*inputs)
    return max_deviation(run_onnx(path, inputs), expected)


def check_program(program: torch.export.ExportedProgram, module: nn.Module, inputs: tuple) -> float:
    """Max abs deviation between an exported program and ``module(*inputs)``."""
    with torch.no_grad():
        return max_deviation(program.module()(*inputs), module.eval()(*inputs))


class StreamingLM(nn.Module):
    """A language model with explicit state: ``(ids (B, T), *state) -> (logits, *next_state)``.

    The state is flat (``h`` or ``h, c``, each (L*D, B, ·)) so that an ONNX file has one named
    input and output per field; feed each chunk the state the previous chunk returned (zeros
    at the start).
    """

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm
        self.fields = lm.rnn.cell.state_type._fields

    def forward(self, ids: Tensor, *state: Tensor):
        hx = state if len(state) > 1 else state[0]
        logits, next_state = self.lm(ids, hx)
        next_state = next_state if isinstance(next_state, tuple) else (next_state,)
        return (logits, *next_state)

    def initial_state(self, batch: int) -> tuple[Tensor, ...]:
        layer = self.lm.rnn
        rows = layer.num_layers * layer.num_directions
        weight = next(layer.parameters())
        return tuple(weight.new_zeros(rows, batch, s) for s in layer.cell.state_sizes())

    def example_inputs(self, batch: int = 2, length: int = 3) -> tuple[Tensor, ...]:
        ids = torch.zeros(batch, length, dtype=torch.long)
        return (ids, *self.initial_state(batch))

    def dynamic_shapes(self):
        B = torch.export.Dim("batch", min=1, max=4096)
        T = torch.export.Dim("time", min=1, max=1 << 20)
        # forward's ``*state`` is one argument to torch.export: its shapes are one tuple.
        return ({0: B, 1: T}, tuple({1: B} for _ in self.fields))

    def input_names(self) -> list[str]:
        return ["ids", *(f"{f}0" for f in self.fields)]

    def output_names(self) -> list[str]:
        return ["logits", *(f"{f}_next" for f in self.fields)]


FORMATS = ("onnx", "pt2")


def export_language_model(
    lm: nn.Module, vocab, path: str | os.PathLike, *, format: str = "onnx", opset: int | None = None
) -> tuple[Path, Path]:
    """Export a :class:`rnnkit.tasks.lm.LanguageModel` as a streaming model plus a JSON sidecar.

    Returns ``(model file, sidecar)``; the sidecar (``<file>.json``) holds the vocabulary and
    the input/output names and state shapes a non-Python consumer needs.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    stream = StreamingLM(lm).eval()
    args = stream.example_inputs()
    path = Path(path)
    if format == "onnx":
        export_onnx(
            stream,
            args,
            path,
            dynamic_shapes=stream.dynamic_shapes(),
            input_names=stream.input_names(),
            output_names=stream.output_names(),
            opset=opset,
        )
    else:
        program = export_program(stream, args, dynamic_shapes=stream.dynamic_shapes())
        torch.export.save(program, str(path))
    layer = lm.rnn
    sidecar = path.with_name(path.name + ".json")
    meta = {
        "task": "lm",
        "format": format,
        "inputs": stream.input_names(),
        "outputs": stream.output_names(),
        "ids": "int64 (batch, time), token ids of the vocabulary below; 0 is <unk>",
        "logits": "float32 (batch, time, vocabulary size)",
        "state": {
            f: [layer.num_layers * layer.num_directions, "batch", s]
            for f, s in zip(stream.fields, layer.cell.state_sizes())
        },
        "state_init": "zeros",
        "vocabulary": vocab.to_json(),
    }
    sidecar.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path, sidecar
