"""rnnkit.backends.cpu_kernels: the compiled recurrences of CPU inference.

Their float64 agreement with the readable reference over every LSTM option and keep kind is in
test_inference_paths.py (each test there runs compiled and eager). Here: float32 at sizes whose
rows do not fill a vector register, the rows split between threads, the build and its cache,
and the fall-back to the eager loops when the library cannot be had or must not be used.
"""

from __future__ import annotations

import logging
import os

import pytest
import torch

import rnnkit
from rnnkit.backends import cpu_kernels, fused_gru, fused_lstm, kernel_parts
from rnnkit.backends.reference import scan
from rnnkit.cells import GRUCell, LSTMCell


@pytest.fixture(autouse=True)
def _built():
    """Every test here needs the library (built at first use, into the session's cache)."""
    if cpu_kernels.library() is None:
        pytest.skip(f"rnnkit's CPU kernels: {cpu_kernels.status()}")


LSTM_OPTIONS = [
    {"peephole": True},
    {"peephole": True, "coupled": True, "forget_bias": 1.0},
    {"layer_norm": True},
    {"layer_norm": True, "peephole": True, "proj_size": 5},
    {"coupled": True},
]


def random_cell_weights(cell, seed):
    gen = torch.Generator().manual_seed(seed)
    return {n: 0.3 * torch.randn(p.shape, generator=gen) for n, p in cell.weights().items()}


def lengths_keep(T, B, size, seed):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    mask = (torch.arange(T)[:, None] >= lengths[None, :]).float().unsqueeze(-1)
    return mask.expand(T, B, size)


@pytest.fixture
def compiled_calls(monkeypatch):
    """Counts the sequences the compiled loops run."""
    ran = []
    for name in ("lstm_forward_only", "gru_forward_only"):
        compiled = getattr(cpu_kernels, name)

        def counted(*args, _compiled=compiled, _name=name, **kwargs):
            ran.append(_name)
            return _compiled(*args, **kwargs)

        monkeypatch.setattr(cpu_kernels, name, counted)
    return ran


def force_onednn(monkeypatch):
    """oneDNN for every per-step product, whatever its size: new products the steps add."""
    if kernel_parts._ONEDNN_LINEAR is None:
        pytest.skip("torch built without oneDNN")
    monkeypatch.setattr(kernel_parts, "STEP_MATMUL_MIN_WORK", 0)
    monkeypatch.setattr(kernel_parts, "STEP_MATMUL_MIN_STEPS", 0)
    assert not kernel_parts.step_matmul(torch.zeros(4, 2), 1, 1).adds_in_place


PROJECTED = LSTM_OPTIONS[3]


@pytest.mark.parametrize("masked", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize(
    "options, onednn",
    [(o, False) for o in LSTM_OPTIONS] + [(PROJECTED, True)],
    ids=[*("-".join(o) for o in LSTM_OPTIONS), "projected-onednn"],
)
def test_lstm_float32_matches_reference(monkeypatch, compiled_calls, options, masked, onednn):
    """H = 37 and B = 5: vector loops and matmul panels with remainders; float32 within 1e-5 of
    float64. With a projection the steps run between torch's matmuls (BLAS, or oneDNN's new
    products that the step adds); without, the sequence kernel does its own."""
    if onednn:
        force_onednn(monkeypatch)
    T, B, I, H = 20, 5, 11, 37
    cell = LSTMCell(I, H, **options)
    weights = random_cell_weights(cell, seed=0)
    x = 2 * torch.randn(T, B, I, generator=torch.Generator().manual_seed(1))
    state = cell.initial_state(B)
    P = cell.output_size
    keep = (lengths_keep(T, B, P, 2), lengths_keep(T, B, H, 2)) if masked else None
    double = {n: w.double() for n, w in weights.items()}
    want, (_, c_want) = scan(
        cell.double(), double, x.double(), type(state)(*(s.double() for s in state)),
        None if keep is None else tuple(k.double() for k in keep),
    )  # fmt: skip
    with torch.no_grad():
        got, (_, c_got) = fused_lstm.lstm_scan(cell.float(), weights, x, state, keep)
    torch_kernel = not masked and not (cell.peephole or cell.layer_norm)
    assert compiled_calls == ([] if torch_kernel else ["lstm_forward_only"])
    torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c_got, c_want.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options", [{"peephole": True}, {"layer_norm": True}], ids=["ph", "ln"])
def test_lstm_input_side_in_chunks(monkeypatch, options):
    """The input projection made a few steps at a time (here 3, and a last chunk of 2) gives the
    whole sequence's result."""
    cell = LSTMCell(7, 16, **options)
    x = torch.randn(11, 4, 7)
    state = cell.initial_state(4)
    with torch.no_grad():
        whole, (_, c_whole) = fused_lstm.lstm_scan(cell, cell.weights(), x, state)
        monkeypatch.setattr(cpu_kernels, "CHUNK_VALUES", 3 * 4 * 64)
        chunked, (_, c_chunked) = fused_lstm.lstm_scan(cell, cell.weights(), x, state)
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(c_chunked, c_whole, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("masked", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_gru_float32_matches_reference(compiled_calls, reset_after, masked):
    T, B, I, H = 20, 5, 11, 37
    cell = GRUCell(I, H, reset_after=reset_after)
    weights = random_cell_weights(cell, seed=3)
    x = 2 * torch.randn(T, B, I, generator=torch.Generator().manual_seed(4))
    state = cell.initial_state(B)
    keep = (lengths_keep(T, B, H, 5),) if masked else None
    double = {n: w.double() for n, w in weights.items()}
    want, _ = scan(
        cell.double(), double, x.double(), type(state)(state.h.double()),
        None if keep is None else (keep[0].double(),),
    )  # fmt: skip
    with torch.no_grad():
        got, last = fused_gru.gru_scan(cell.float(), weights, x, state, keep)
    assert compiled_calls == ["gru_forward_only"]
    torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "cell",
    [LSTMCell(24, 128, peephole=True, layer_norm=True), GRUCell(24, 128, reset_after=False)],
    ids=["lstm", "gru"],
)
def test_rows_split_between_threads_give_the_same_bits(cell):
    """B·H = 4096 is above the threshold at which rows are split between threads."""
    x = torch.randn(30, 32, 24)
    state = cell.initial_state(32)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with torch.no_grad():
                results.append(cell.fused_kernel()(cell, cell.weights(), x, state)[0])
    finally:
        torch.set_num_threads(before)
    assert torch.equal(*results)


def test_a_layer_in_eval_gives_its_training_forward():
    """A user's view: a stacked bidirectional peephole/layer-norm LSTM on padded sequences, under
    inference_mode, as the forward that records the hand-written backward."""
    torch.manual_seed(0)
    layer = rnnkit.LSTM(6, 20, num_layers=2, bidirectional=True, peephole=True, layer_norm=True,
                        batch_first=True)  # fmt: skip
    x = torch.randn(4, 15, 6)
    lengths = torch.tensor([15, 9, 3, 1])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True)
    train_out, (h_train, c_train) = layer(packed)
    assert train_out.data.requires_grad
    with torch.inference_mode():
        out, (h, c) = layer(packed)
    torch.testing.assert_close(out.data, train_out.data.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h, h_train.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c, c_train.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda: rnnkit.LSTM(4, 8, peephole=True),
        lambda: rnnkit.LSTM(4, 8, layer_norm=True, proj_size=3),
        lambda: rnnkit.GRU(4, 8, reset_after=False),
    ],
    ids=["peephole", "layer_norm-proj", "gru-reset_before"],
)
def test_an_empty_batch(make):
    """B = 0 gives empty outputs in inference and in training, gradients included."""
    layer = make()
    x = torch.randn(5, 0, 4, requires_grad=True)
    with torch.no_grad():
        out, _ = layer(x)
    assert out.shape == (5, 0, layer.proj_size or layer.hidden_size)
    out, _ = layer(x)
    out.sum().backward()
    assert x.grad.shape == x.shape


def test_the_build_is_cached_and_rebuilt_on_request(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(tmp_path))
    first = cpu_kernels.build()
    assert first.parent == tmp_path / "kernels" and first.suffix == ".so"
    stamp = first.stat().st_mtime_ns
    assert cpu_kernels.build() == first and first.stat().st_mtime_ns == stamp
    assert cpu_kernels.build(force=True) == first
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no partial files left


def assert_inference_matches_reference(cell, batch: int, atol: float = 1e-5) -> None:
    """The cell's fused kernel under no_grad, nine steps of 5 inputs, against reference.scan."""
    x = torch.randn(9, batch, 5)
    state = cell.initial_state(batch)
    want, _ = scan(cell, cell.weights(), x, state)
    with torch.no_grad():
        got, _ = cell.fused_kernel()(cell, cell.weights(), x, state)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=atol)


def test_old_builds_are_pruned(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(tmp_path))
    folder = tmp_path / "kernels"
    folder.mkdir()
    for i in range(10):  # older libraries of other versions
        old = folder / f"cpu_kernels-old{i}.so"
        old.write_bytes(b"")
        os.utime(old, (1_000_000 + i, 1_000_000 + i))
    built = cpu_kernels.build(force=True)
    kept = sorted(p.name for p in folder.glob("cpu_kernels-*.so"))
    assert len(kept) == cpu_kernels.KEEP_BUILDS and built.name in kept
    assert "cpu_kernels-old9.so" in kept and "cpu_kernels-old0.so" not in kept


@pytest.fixture
def fresh_library(monkeypatch, tmp_path):
    """library() forgets its answer before and after the test, with an empty cache."""
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(tmp_path))
    cpu_kernels.library.cache_clear()
    yield
    monkeypatch.undo()
    cpu_kernels.library.cache_clear()


def test_a_failing_compiler_falls_back_to_the_eager_loops(fresh_library, monkeypatch, caplog):
    monkeypatch.setenv("CXX", "false")  # a compiler that always fails
    with caplog.at_level(logging.WARNING, logger="rnnkit.backends.cpu_kernels"):
        assert cpu_kernels.library() is None
    assert "compiled CPU inference kernels unavailable" in caplog.text
    assert "using the eager loops" in caplog.text
    assert cpu_kernels.status().startswith("unavailable: false failed")
    assert_inference_matches_reference(LSTMCell(5, 7, peephole=True), batch=2)


def test_a_compiler_without_openmp_builds_for_one_thread(fresh_library, monkeypatch, tmp_path):
    real = cpu_kernels._compiler()
    fake = tmp_path / "no-openmp-c++"
    fake.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do [ "$a" = -fopenmp ] && echo "error: no OpenMP" >&2 && exit 1; done\n'
        f'exec {real} "$@"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", str(fake))
    assert cpu_kernels.library() is not None
    assert_inference_matches_reference(GRUCell(5, 64, reset_after=False), batch=32, atol=1e-6)


def test_a_damaged_cached_library_is_built_again(fresh_library):
    path = cpu_kernels.build()
    path.write_bytes(b"not a shared library")
    assert cpu_kernels.library() is not None
    assert path.read_bytes() != b"not a shared library"


def test_turned_off_by_the_environment(fresh_library, monkeypatch):
    monkeypatch.setenv("RNNKIT_CPU_KERNELS", "0")
    assert cpu_kernels.library() is None
    assert not cpu_kernels.serves(torch.zeros(2))
    assert cpu_kernels.status() == "off (RNNKIT_CPU_KERNELS=0)"


def test_env_reports_the_library():
    from rnnkit.cli.env import environment

    assert environment()["cpu_kernels"].startswith("built (")


def test_serves_only_plain_cpu_float_tensors():
    from torch._subclasses.fake_tensor import FakeTensorMode

    a = torch.zeros(2)
    assert cpu_kernels.serves(a, None, torch.nn.Parameter(torch.zeros(3)), True)
    assert cpu_kernels.serves(a.double(), a.double())
    assert not cpu_kernels.serves(a, a.double())  # mixed dtypes
    assert not cpu_kernels.serves(a.half())
    assert not cpu_kernels.serves(None, False)
    with FakeTensorMode():
        fake = torch.zeros(2)
    assert not cpu_kernels.serves(fake)
