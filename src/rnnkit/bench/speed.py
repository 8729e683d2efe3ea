"""Speed of every backend and variant against ``torch.nn.LSTM``, measured in the same run.

Each configuration is timed for training (forward + backward of ``output.sum()``) and inference
(forward under ``torch.no_grad``). Repetitions are interleaved — one call of every configuration
per round — so drift in machine load hits all of them alike; the figure kept is the median.
Ratios are to ``torch.nn.LSTM`` at the same size; vanilla ``auto`` layers are also compared with
their own ``torch.nn`` namesake.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

import rnnkit

SIZES = ((32, 100, 64, 64), (32, 100, 256, 256), (64, 100, 512, 512))


@dataclass(frozen=True)
class Config:
    """A timed module: ``name`` in the table, ``build(I, H)`` makes it, ``namesake`` for ratios."""

    name: str
    build: Callable[[int, int], nn.Module]
    namesake: str = "torch.nn.LSTM"


def _configs() -> list[Config]:
    lstm, gru, rnn = rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN
    return [
        Config("torch.nn.LSTM", lambda i, h: nn.LSTM(i, h)),
        Config("torch.nn.GRU", lambda i, h: nn.GRU(i, h)),
        Config("torch.nn.RNN", lambda i, h: nn.RNN(i, h)),
        Config("LSTM auto", lambda i, h: lstm(i, h), "torch.nn.LSTM"),
        Config("GRU auto", lambda i, h: gru(i, h), "torch.nn.GRU"),
        Config("RNN auto", lambda i, h: rnn(i, h), "torch.nn.RNN"),
        Config("LSTM fused", lambda i, h: lstm(i, h, backend="fused")),
        Config("LSTM reference", lambda i, h: lstm(i, h, backend="reference")),
        Config("peephole fused", lambda i, h: lstm(i, h, peephole=True, backend="fused")),
        Config("peephole reference", lambda i, h: lstm(i, h, peephole=True, backend="reference")),
        Config("coupled fused", lambda i, h: lstm(i, h, coupled=True, backend="fused")),
        Config("coupled reference", lambda i, h: lstm(i, h, coupled=True, backend="reference")),
        Config("layer_norm fused", lambda i, h: lstm(i, h, layer_norm=True, backend="fused")),
        Config(
            "layer_norm reference", lambda i, h: lstm(i, h, layer_norm=True, backend="reference")
        ),
        Config("GRU fused", lambda i, h: gru(i, h, backend="fused"), "torch.nn.GRU"),
        Config(
            "GRU reset_before fused", lambda i, h: gru(i, h, reset_after=False, backend="fused")
        ),
        Config(
            "GRU reset_before reference",
            lambda i, h: gru(i, h, reset_after=False, backend="reference"),
        ),
        Config("IRNN fused", lambda i, h: rnnkit.IRNN(i, h, backend="fused")),
        Config("IRNN reference", lambda i, h: rnnkit.IRNN(i, h, backend="reference")),
        Config("SLSTM fused", lambda i, h: _slstm(i, h, "fused")),
        Config("SLSTM reference", lambda i, h: _slstm(i, h, "reference")),
    ]


def _slstm(input_size: int, hidden_size: int, backend: str) -> nn.Module:
    """The timed sLSTM: 4 heads (the xLSTM paper's block-diagonal recurrence)."""
    return rnnkit.SLSTM(input_size, hidden_size, num_heads=4, backend=backend)


@dataclass
class Result:
    """Medians in milliseconds for one configuration at one size."""

    name: str
    size: tuple[int, int, int, int]
    train_ms: float
    infer_ms: float
    namesake: str
    train_ratio: float = field(default=float("nan"))  # to torch.nn.LSTM
    infer_ratio: float = field(default=float("nan"))
    namesake_train_ratio: float | None = None  # vanilla auto layers only

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "size": dict(zip(("B", "T", "I", "H"), self.size)),
            "train_ms": round(self.train_ms, 3),
            "infer_ms": round(self.infer_ms, 3),
            "train_ratio_to_torch_lstm": round(self.train_ratio, 3),
            "infer_ratio_to_torch_lstm": round(self.infer_ratio, 3),
            "train_ratio_to_namesake": (
                None if self.namesake_train_ratio is None else round(self.namesake_train_ratio, 3)
            ),
        }


def _timer(module: nn.Module, x: torch.Tensor, train: bool) -> Callable[[], float]:
    def once() -> float:
        start = time.perf_counter()
        if train:
            module.zero_grad(set_to_none=True)
            output, _ = module(x)
            output.sum().backward()
        else:
            with torch.no_grad():
                module(x)
        return time.perf_counter() - start

    return once


def run(
    sizes=SIZES,
    repeats: int = 7,
    warmup: int = 2,
    only: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Result]:
    """Time every configuration at every size; see the module docstring for the method.

    Args:
        sizes: (B, T, I, H) tuples.
        repeats: timed rounds per configuration (medians are reported).
        warmup: untimed calls per configuration before the rounds.
        only: configuration names to keep (the torch.nn baselines are always timed).
        progress: called with a short text before each size.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    configs = _configs()
    if only is not None:
        unknown = set(only) - {c.name for c in configs}
        if unknown:
            raise ValueError(
                f"unknown configuration(s) {sorted(unknown)}; choose from "
                f"{', '.join(c.name for c in configs)}"
            )
        configs = [c for c in configs if c.name.startswith("torch.nn.") or c.name in only]
    results: list[Result] = []
    for size in sizes:
        B, T, I, H = size
        if progress:
            progress(f"B={B} T={T} I={I} H={H}")
        torch.manual_seed(0)
        x = torch.randn(T, B, I)
        timers = {}
        for config in configs:
            module = config.build(I, H)
            for mode in ("train", "infer"):
                fn = _timer(module, x, mode == "train")
                for _ in range(warmup):
                    fn()
                timers[(config.name, mode)] = fn
        samples: dict[tuple[str, str], list[float]] = {key: [] for key in timers}
        for _ in range(repeats):
            for key, fn in timers.items():
                samples[key].append(fn())
        medians = {key: statistics.median(v) * 1e3 for key, v in samples.items()}
        base_train = medians[("torch.nn.LSTM", "train")]
        base_infer = medians[("torch.nn.LSTM", "infer")]
        for config in configs:
            train, infer = medians[(config.name, "train")], medians[(config.name, "infer")]
            result = Result(
                config.name,
                size,
                train,
                infer,
                config.namesake,
                train / base_train,
                infer / base_infer,
            )
            if config.name.endswith(" auto"):
                result.namesake_train_ratio = train / medians[(config.namesake, "train")]
            results.append(result)
    return results


def format_table(results: list[Result]) -> str:
    """A plain-text table: one block per size, ratios to torch.nn.LSTM (and namesake)."""
    lines = []
    for size in dict.fromkeys(r.size for r in results):
        B, T, I, H = size
        lines.append(f"B={B} T={T} I={I} H={H}   (ratios: time / torch.nn.LSTM time, same run)")
        lines.append(
            f"  {'configuration':<28}{'train ms':>10}{'ratio':>8}{'infer ms':>10}{'ratio':>8}"
            f"{'vs namesake':>13}"
        )
        for r in (r for r in results if r.size == size):
            namesake = "" if r.namesake_train_ratio is None else f"{r.namesake_train_ratio:.2f}"
            lines.append(
                f"  {r.name:<28}{r.train_ms:>10.1f}{r.train_ratio:>8.2f}{r.infer_ms:>10.1f}"
                f"{r.infer_ratio:>8.2f}{namesake:>13}"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# -- long sequences: the parallel-scan and exponential-gating families ------------------------
LONG_SIZES = ((16, 128, 256, 256), (16, 1024, 256, 256), (16, 4096, 256, 256))


@dataclass(frozen=True)
class LongConfig:
    """A timed module of the long-sequence table; ``sequential`` names its own step-loop form."""

    name: str
    build: Callable[[int, int], nn.Module]
    sequential: str | None = None


def _long_configs() -> list[LongConfig]:
    return [
        LongConfig("torch.nn.GRU", lambda i, h: nn.GRU(i, h)),
        LongConfig("torch.nn.LSTM", lambda i, h: nn.LSTM(i, h)),
        LongConfig("MinGRU scan", lambda i, h: rnnkit.MinGRU(i, h), "MinGRU reference"),
        LongConfig("MinGRU reference", lambda i, h: rnnkit.MinGRU(i, h, backend="reference")),
        LongConfig("MinLSTM scan", lambda i, h: rnnkit.MinLSTM(i, h), "MinLSTM reference"),
        LongConfig("MinLSTM reference", lambda i, h: rnnkit.MinLSTM(i, h, backend="reference")),
        LongConfig("SLSTM fused", lambda i, h: _slstm(i, h, "fused"), "SLSTM reference"),
        LongConfig("SLSTM reference", lambda i, h: _slstm(i, h, "reference")),
    ]


@dataclass
class LongResult:
    """Median fwd+bwd milliseconds and saved-tensor megabytes for one configuration and size."""

    name: str
    size: tuple[int, int, int, int]
    train_ms: float
    saved_mb: float
    vs_sequential: float | None
    vs_gru: float
    vs_lstm: float

    def as_dict(self) -> dict:
        def r(v):
            return None if v is None else round(v, 3)

        return {
            "name": self.name,
            "size": dict(zip(("B", "T", "I", "H"), self.size)),
            "train_ms": round(self.train_ms, 3),
            "saved_tensor_mb": round(self.saved_mb, 1),
            "ratio_to_own_sequential": r(self.vs_sequential),
            "ratio_to_torch_gru": r(self.vs_gru),
            "ratio_to_torch_lstm": r(self.vs_lstm),
        }


def saved_tensor_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd keeps for the backward of one forward (distinct storages, counted once)."""
    seen: dict[tuple, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        seen[(storage.data_ptr(), t.device)] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        output, _ = module(x)
    del output
    return sum(seen.values())


def run_long(
    sizes=LONG_SIZES,
    repeats: int = 3,
    warmup: int = 1,
    progress: Callable[[str], None] | None = None,
) -> list[LongResult]:
    """fwd+bwd of minGRU, minLSTM (parallel scan and step loop) and sLSTM against
    ``torch.nn.GRU`` / ``torch.nn.LSTM`` at long T, interleaved rounds, medians, one run."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    configs = _long_configs()
    results: list[LongResult] = []
    for size in sizes:
        B, T, I, H = size
        if progress:
            progress(f"B={B} T={T} I={I} H={H}")
        torch.manual_seed(0)
        x = torch.randn(T, B, I)
        modules = {c.name: c.build(I, H) for c in configs}
        timers = {name: _timer(m, x, True) for name, m in modules.items()}
        for fn in timers.values():
            for _ in range(warmup):
                fn()
        samples: dict[str, list[float]] = {name: [] for name in timers}
        for _ in range(repeats):
            for name, fn in timers.items():
                samples[name].append(fn())
        medians = {name: statistics.median(v) * 1e3 for name, v in samples.items()}
        for config in configs:
            ms = medians[config.name]
            results.append(
                LongResult(
                    config.name,
                    size,
                    ms,
                    saved_tensor_bytes(modules[config.name], x) / 2**20,
                    None if config.sequential is None else ms / medians[config.sequential],
                    ms / medians["torch.nn.GRU"],
                    ms / medians["torch.nn.LSTM"],
                )
            )
    return results


def format_long_table(results: list[LongResult]) -> str:
    """One block per size: ms, saved MB, and ratios to the own step loop and to torch.nn."""
    lines = []
    for size in dict.fromkeys(r.size for r in results):
        B, T, I, H = size
        lines.append(f"B={B} T={T} I={I} H={H}   (fwd+bwd medians, ratios = time / other time)")
        lines.append(
            f"  {'configuration':<20}{'train ms':>11}{'saved MB':>10}{'vs own loop':>13}"
            f"{'vs nn.GRU':>11}{'vs nn.LSTM':>12}"
        )
        for r in (r for r in results if r.size == size):
            own = "" if r.vs_sequential is None else f"{r.vs_sequential:.3f}"
            lines.append(
                f"  {r.name:<20}{r.train_ms:>11.1f}{r.saved_mb:>10.1f}{own:>13}"
                f"{r.vs_gru:>11.2f}{r.vs_lstm:>12.2f}"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
