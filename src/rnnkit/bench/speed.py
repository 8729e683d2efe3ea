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
        Config(
            "GRU reset_before fused", lambda i, h: gru(i, h, reset_after=False, backend="fused")
        ),
        Config(
            "GRU reset_before reference",
            lambda i, h: gru(i, h, reset_after=False, backend="reference"),
        ),
        Config("IRNN fused", lambda i, h: rnnkit.IRNN(i, h, backend="fused")),
        Config("IRNN reference", lambda i, h: rnnkit.IRNN(i, h, backend="reference")),
    ]


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
