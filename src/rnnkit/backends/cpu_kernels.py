r"""Compiled LSTM and GRU recurrences for inference on the CPU.

The fused kernels' forward-only loops (inference: nothing needs a backward pass) for the cells
torch has no kernel for spent most of their time outside arithmetic: a peephole LSTM step was a
matmul called from Python and ten eager element-wise operations, each a dispatch and a pass over
the (B, 4H) gates. Here a small C++ file (``cpu_kernels.cpp``) runs whole sequences:

- the recurrent matmul ``W_hh h_{t-1}`` with W packed once per call into panels of 64 bytes of
  columns (:func:`panels`), eight batch rows at a time with their accumulators in registers;
- each step's element-wise part (gates, peepholes, the layer norms, the cell update, ``keep``
  for lengths and zoneout) in one pass over a row;
- the batch rows split between torch's threads (the same OpenMP runtime) for all T steps: a
  row's recurrence never reads another row, so the threads never wait for each other;
- the LSTM's input projection (torch's oneDNN matmul) made a chunk of steps at a time
  (:data:`CHUNK_VALUES`) just before the kernel reads them, while they are in cache.

It serves what torch's own kernels cannot: LSTM with peephole, layer norm, coupled gates and
``keep`` in any combination, and the GRU's ``reset_after=False`` form; and both GRU forms with or
without ``keep``, where it is faster than torch's GRU kernel. With ``proj_size`` the LSTM's
steps run one call each between torch's matmuls.

Build. The file is compiled once per machine with the system C++ compiler (``$CXX``, else
``c++``, ``g++`` or ``clang++``), without torch's headers, in about a second. The library is
cached under ``kernels/`` in rnnkit's cache folder (:func:`rnnkit.io.cache_root`), named by a
hash of the source, the compiler, its flags and the CPU (with ``RNNKIT_CACHE_DIR=off``, in a
temporary folder). Where no compiler is found or the build fails, one warning is logged and the
eager loops run instead: the same function either way (tests hold both to the readable
reference). ``RNNKIT_CPU_KERNELS=0`` turns the compiled kernels off.

They run only on plain CPU tensors in float32 or float64 outside tracing (``torch.compile``,
``torch.export`` and fake tensors see the eager loops), see :func:`serves`. Float32 uses a
polynomial ``exp`` (relative error about 2e-7) that the compiler vectorises; float64 uses libm.

Example::

    >>> layer = rnnkit.LSTM(8, 16, peephole=True)  # no torch kernel: the fused backend
    >>> with torch.no_grad():  # inference: the compiled sequence kernel where it serves
    ...     out, (h, c) = layer(torch.randn(5, 3, 8))
    >>> out.shape
    torch.Size([5, 3, 16])
    >>> status().startswith(("built", "off", "unavailable", "not built"))
    True
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from rnnkit.backends.kernel_parts import input_projection, step_matmul
from rnnkit.cells.lstm import LAYER_NORM_EPS
from rnnkit.io import cache_root

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_kernels.cpp")
ABI = 5  # rnnkit_kernels_abi() in the source; a library answering otherwise is not used
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno", "-fno-trapping-math")
# OpenMP splits the rows between threads; a compiler without an OpenMP runtime (Apple's clang)
# builds the same file for one thread, keeping only the vectorisation hints.
THREADS_FLAGS = (("-fopenmp",), ("-fopenmp-simd",))
BUILD_TIMEOUT_S = 120
KEEP_BUILDS = 8  # libraries kept in the cache folder (other versions, compilers, CPUs)
# The input projection for about this many gate pre-activations (T·B·G) at a time, just before
# the sequence kernel reads them: (6,400 × 512) · (512 × 2,048) took 82 ms at once and 68 ms in
# chunks of 16 steps, 2²¹ values (B = 64; at B = 32, H = 256: 11.5 ms at once, 8.3 ms in chunks
# of 16 steps; two threads, AMD EPYC), and a chunk is still in cache when the kernel reads it.
# Small sequences go in one chunk: each chunk costs two calls from Python.
CHUNK_VALUES = 2**21

_LSTM_FIELDS = ("batch", "hidden", "blocks", "coupled", "threads")
_LSTM_POINTERS_1 = ("gain_ih", "bias", "gain_hh", "w_ci", "w_cf", "w_co", "gain_c", "bias_c")
_LSTM_POINTERS_2 = ("c", "keep_c", "m", "h", "h0", "keep_h", "row")
_GRU_FIELDS = ("batch", "hidden", "reset_before", "threads")


def _struct(name: str, real, layout) -> type[ctypes.Structure]:
    """A ctypes mirror of one of the source's step structs (same fields, same order)."""
    fields = []
    for kind, names in layout:
        ctype = {"int": ctypes.c_int64, "ptr": ctypes.c_void_p, "real": real}[kind]
        fields += [(n, ctype) for n in names]
    return type(name, (ctypes.Structure,), {"_fields_": fields})


_LSTM_LAYOUT = (("int", _LSTM_FIELDS), ("ptr", _LSTM_POINTERS_1), ("real", ("eps",)),
                ("ptr", _LSTM_POINTERS_2))  # fmt: skip
_GRU_LAYOUT = (("int", _GRU_FIELDS), ("ptr", ("rz", "n", "b_hn", "rh", "h", "keep")))
_STRUCTS = {
    (kind, dtype): _struct(f"{kind}_{suffix}", real, layout)
    for kind, layout in (("lstm", _LSTM_LAYOUT), ("gru", _GRU_LAYOUT))
    for dtype, suffix, real in (
        (torch.float32, "f32", ctypes.c_float),
        (torch.float64, "f64", ctypes.c_double),
    )
}
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_PLAIN = (Tensor, torch.nn.Parameter)  # not fake, functional or other traced subclasses


def _compiler() -> str | None:
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["c++", "g++", "clang++"]
    return next((path for path in map(shutil.which, names) if path), None)


def _machine_flags() -> list[str]:
    # -march=native: the library is built on the machine that runs it and cached per CPU.
    return ["-march=native"] if platform.machine() in ("x86_64", "AMD64") else []


def _cpu_identity() -> str:
    """What the build depends on besides the source: the CPU's instruction sets."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build(force: bool = False) -> Path:
    """Compile ``cpu_kernels.cpp`` into the cache (if not there already) and return its path:
    with OpenMP, else (the compiler refused it) for one thread.

    Raises:
        RuntimeError: no C++ compiler, or the compiler failed (its first error line included).
    """
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++ or clang++)")
    root = cache_root()
    folder = Path(tempfile.mkdtemp(prefix="rnnkit-")) if root is None else root / "kernels"
    failures = []
    for threads in THREADS_FLAGS:
        flags = [*FLAGS, *threads, *_machine_flags()]
        key = hashlib.sha256()
        for part in (SOURCE.read_bytes(), compiler.encode(), " ".join(flags).encode(),
                     _cpu_identity().encode()):  # fmt: skip
            key.update(part)
        target = folder / f"cpu_kernels-{key.hexdigest()[:16]}.so"
        if target.exists() and not force:
            return target
        try:
            _compile(compiler, flags, target)
            return target
        except RuntimeError as failure:
            failures.append(failure)
    raise failures[0]


def _compile(compiler: str, flags: list[str], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=".cpu_kernels-", suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run(
            [compiler, *flags, str(SOURCE), "-o", partial],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
        if done.returncode != 0:
            lines = [ln for ln in done.stderr.splitlines() if "error" in ln] or [done.stderr]
            raise RuntimeError(f"{Path(compiler).name} failed: {lines[0].strip()[:300]}")
        os.replace(partial, target)  # atomic: concurrent builders each write a whole file
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    _prune(target.parent)


def _prune(folder: Path) -> None:
    """Keep the :data:`KEEP_BUILDS` newest libraries: each source, compiler or CPU change adds
    one. A process that loaded an older one keeps its mapping; a later one builds it again."""
    with contextlib.suppress(OSError):  # another process pruning at the same time
        newest_first = sorted(
            folder.glob("cpu_kernels-*.so"), key=lambda p: p.stat().st_mtime, reverse=True
        )
        for old in newest_first[KEEP_BUILDS:]:
            old.unlink(missing_ok=True)


_why_unavailable: dict[str, str] = {}  # library()'s reason for None, under "reason"


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The compiled kernels, built on first use; None where they are off or cannot be built (the
    reason is logged once, and :func:`status` says it)."""
    if os.environ.get("RNNKIT_CPU_KERNELS", "1") == "0":
        _why_unavailable["reason"] = "off (RNNKIT_CPU_KERNELS=0)"
        return None
    if os.name != "posix":
        _why_unavailable["reason"] = f"not built on {os.name}"
        return None
    try:
        try:
            lib = ctypes.CDLL(str(build()))
        except OSError:  # a damaged file in the cache: built again
            lib = ctypes.CDLL(str(build(force=True)))
        if lib.rnnkit_kernels_abi() != ABI:
            raise RuntimeError(f"{lib._name} is not the ABI {ABI} library")
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        _why_unavailable["reason"] = f"unavailable: {error}"
        logger.warning(
            "rnnkit: compiled CPU inference kernels unavailable (%s); using the eager loops", error
        )
        return None
    # Each call: the struct, the step (or the number of steps), then pointers, as ints.
    for kind, steps, pointers in (("lstm_step", 1, 2), ("lstm_sequence", 2, 3),
                                  ("gru_sequence", 1, 3)):  # fmt: skip
        for dtype, suffix in _SUFFIX.items():
            function = getattr(lib, f"rnnkit_{kind}_{suffix}")
            struct = _STRUCTS[(kind.split("_")[0], dtype)]
            function.argtypes = [
                ctypes.POINTER(struct),
                *[ctypes.c_int64] * steps,
                *[ctypes.c_void_p] * pointers,
            ]
            function.restype = None
    return lib


def status() -> str:
    """One line for ``rnnkit env``: where the library is, or why there is none."""
    lib = library()
    return f"built ({lib._name})" if lib is not None else _why_unavailable["reason"]


def serves(*tensors: Tensor | None) -> bool:
    """Whether the compiled kernels can run on these tensors: plain (not fake, not functional)
    CPU tensors of one dtype, float32 or float64, outside ``torch.compile``/``torch.export``
    tracing, and the library is built."""
    present = [t for t in tensors if isinstance(t, Tensor)]
    if not present or torch.compiler.is_compiling():
        return False
    dtype = present[0].dtype
    plain = all(
        type(t) in _PLAIN
        and t.device.type == "cpu"
        and t.dtype == dtype
        and t.layout == torch.strided
        for t in present
    )
    return plain and dtype in _SUFFIX and library() is not None


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _dense(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous()


def panels(weight: Tensor) -> Tensor:
    """W (N, K) packed for the sequence kernels' matmul: ⌈N / V⌉ panels of (K, V), panel p
    holding W[pV + v, k] at [k, v], V the columns in 64 bytes (16 float32, 8 float64), the last
    panel padded with zeros."""
    N, K = weight.shape
    V = 64 // weight.element_size()
    if N % V:
        padded = weight.new_zeros(N + V - N % V, K)
        padded[:N] = weight
        weight = padded
    return weight.reshape(-1, V, K).transpose(1, 2).contiguous()


def lstm_forward_only(coupled, xi, w_ih, bias, g_ih, w_hh, h0, c0, w_hr, w_ci, w_cf, w_co, g_hh,
                      g_c, b_c, keep_h, keep_c):  # fmt: skip
    """:func:`rnnkit.backends.fused_lstm._lstm_forward_only` compiled: same arguments (the fused
    kernel's internal gate order, candidate rows doubled; ``xi`` the projected input side, or
    ``x`` with ``w_ih``), same ``(h (T, B, P), c_T (B, H))``. Without a projection, whole chunks
    of steps per call; with one, a call per step between torch's matmuls. Call only where
    :func:`serves` says so."""
    T, B = xi.shape[:2]
    G, H, P = w_hh.shape[0], c0.shape[1], h0.shape[1]
    k = G // H
    layer_norm = g_hh is not None
    new = xi.new_empty
    projected = w_hr is not None
    # The input side: W_ih x_t (+ b; with layer norm the step adds b after normalising). Given
    # x, the sequence kernel takes it a chunk of steps at a time, each chunk projected just
    # before and still in cache; the step-by-step loop projects all steps at once.
    x = xi if w_ih is not None else None
    x_bias = None if layer_norm else bias
    if x is None:  # the projection made by lstm_scan: overwritten step by step
        gates = xi.contiguous()
    elif projected:
        gates = input_projection(x.reshape(T * B, x.shape[2]), w_ih, x_bias).view(T, B, G)
    if not layer_norm:
        g_ih = bias = None
    h_all = new(T, B, P)
    c = c0.clone(memory_format=torch.contiguous_format)
    m = new(B, H) if projected else None
    h_mix = new(B, P) if projected and keep_h is not None else None
    keep_h_dense = None if projected else _dense(keep_h)
    h0_dense = h0.contiguous()
    row = new(B, H)
    dense = [_dense(v) for v in (g_ih, bias, g_hh, w_ci, w_cf, w_co, g_c, b_c)]
    keep_c_dense = _dense(keep_c)
    struct = _STRUCTS[("lstm", xi.dtype)](
        B, H, k, int(bool(coupled)), torch.get_num_threads(), *map(_ptr, dense), LAYER_NORM_EPS,
        c.data_ptr(), _ptr(keep_c_dense), _ptr(m), h_all.data_ptr(), h0_dense.data_ptr(),
        _ptr(keep_h_dense), row.data_ptr(),
    )  # fmt: skip
    args = ctypes.byref(struct)
    suffix = _SUFFIX[xi.dtype]
    if not projected:  # whole sequences of steps per call, the recurrent matmul included
        recurrent = new(B, G) if layer_norm else None
        packed = panels(w_hh)  # held: the calls read it through a pointer
        sequence = getattr(library(), f"rnnkit_lstm_sequence_{suffix}")
        chunk = T if x is None else max(1, CHUNK_VALUES // max(1, B * G))
        for first in range(0, T, chunk):
            last = min(T, first + chunk)
            if x is not None:
                rows = x[first:last].reshape((last - first) * B, x.shape[2])
                gates = input_projection(rows, w_ih, x_bias).view(last - first, B, G)
            sequence(args, first, last, gates.data_ptr(), packed.data_ptr(), _ptr(recurrent))
        return h_all, c
    # With a projection, step by step: torch's matmuls around each compiled step.
    step = getattr(library(), f"rnnkit_lstm_step_{suffix}")
    recurrent = step_matmul(w_hh, B, T)
    w_hr_t = w_hr.t()
    hp = h0
    for t, (a, h) in enumerate(zip(gates.unbind(0), h_all.unbind(0))):
        if recurrent.adds_in_place and not layer_norm:  # BLAS: W_hh h_{t-1} added into a
            step(args, t, recurrent(hp, a).data_ptr(), None)
        else:  # a new W_hh h_{t-1} (held while the step reads it), which the step adds
            r = recurrent(hp)
            step(args, t, a.data_ptr(), r.data_ptr())
        if keep_h is None:
            torch.mm(m, w_hr_t, out=h)
        else:
            torch.lerp(torch.mm(m, w_hr_t, out=h_mix), hp, keep_h[t], out=h)
        hp = h
    return h_all, c


def gru_forward_only(gi: Tensor, w_hh: Tensor, b_hh: Tensor | None, h0: Tensor,
                     keep: Tensor | None, reset_after: bool) -> Tensor:  # fmt: skip
    """The forward of :class:`~rnnkit.backends.fused_gru.GRUResetAfterScan` /
    ``GRUResetBeforeScan`` compiled, the whole sequence in one call: same arguments, same ``hs``
    (T + 1, B, H). Call only where :func:`serves` says so."""
    T, B, G = gi.shape
    H = G // 3
    new = gi.new_empty
    hs = new(T + 1, B, H)
    hs[0] = h0
    # The input side with the biases that do not wait for r: rz (T, B, 2H), n (T, B, H).
    rz = gi[..., : 2 * H] if b_hh is None else gi[..., : 2 * H] + b_hh[: 2 * H]
    n = gi[..., 2 * H :] if b_hh is None or reset_after else gi[..., 2 * H :] + b_hh[2 * H :]
    rz, n = rz.contiguous(), n.contiguous()
    b_hn = b_hh[2 * H :].contiguous() if b_hh is not None and reset_after else None
    rh = new(B, H)  # r ⊙ h_{t-1}
    keep_dense = _dense(keep)
    struct = _STRUCTS[("gru", gi.dtype)](
        B, H, int(not reset_after), torch.get_num_threads(), rz.data_ptr(), n.data_ptr(),
        _ptr(b_hn), rh.data_ptr(), hs.data_ptr(), _ptr(keep_dense),
    )  # fmt: skip
    if reset_after:  # W_hh h_{t-1}, all three blocks, into a scratch buffer
        panels_a, panels_b, scratch = panels(w_hh), None, new(B, G)
    else:  # W_hrz h_{t-1} onto rz, W_hn (r ⊙ h_{t-1}) onto n
        panels_a, panels_b, scratch = panels(w_hh[: 2 * H]), panels(w_hh[2 * H :]), None
    sequence = getattr(library(), f"rnnkit_gru_sequence_{_SUFFIX[gi.dtype]}")
    sequence(ctypes.byref(struct), T, panels_a.data_ptr(), _ptr(panels_b), _ptr(scratch))
    return hs
