"""Throughput of the language model's main-job configuration in one process and in several.

Each configuration trains the default language model (2×256 LSTM, 32 streams × 75 characters,
the embedded tragedies) for a fixed number of steps in a fresh ``rnnkit train lm`` process and
reads its characters per second from ``--json``; the first rounds are warm-up. The
configurations are interleaved over ``repeats`` rounds and the median is kept, so machine drift
hits them alike. ``N processes`` runs go through ``--nproc`` (torchrun underneath, gloo on the
CPU, nccl on CUDA) with the same global batch. ``rnnkit bench scale`` is the command.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# A small model for quick checks (the default is the main job's).
TINY = ("--hidden-size", "16", "--embedding-size", "8", "--num-layers", "1", "--bptt", "10")


@dataclass(frozen=True)
class Setting:
    """``processes`` × ``threads`` (torch intra-op threads per process) on ``device``."""

    processes: int
    threads: int
    device: str = "cpu"

    @property
    def label(self) -> str:
        return f"{self.processes} process(es) x {self.threads} thread(s) on {self.device}"


def _train(setting: Setting, steps: int, model: tuple[str, ...], out: Path) -> float:
    argv = [sys.executable, "-m", "rnnkit", "train", "lm", "--steps", str(steps),
            "--eval-every", str(10**6), "--no-progress", "--json", "--force", "--out", str(out),
            "--threads", str(setting.threads), "--device", setting.device,
            "--nproc", str(setting.processes), *model]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{setting.label} failed: {done.stderr.strip().splitlines()[-1:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["tokens_per_second"])


def scale_benchmark(
    settings: list[Setting], *, steps: int = 60, repeats: int = 3, model: tuple[str, ...] = ()
) -> list[dict]:
    """``[{"setting", "chars_per_s", "ratio"}]``: median characters/s of each setting over
    ``repeats`` interleaved rounds, and its ratio to the first setting."""
    rates: dict[Setting, list[float]] = {s: [] for s in settings}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            for i, setting in enumerate(settings):
                rates[setting].append(_train(setting, steps, model, Path(tmp) / f"run{i}"))
    medians = {s: statistics.median(v) for s, v in rates.items()}
    base = medians[settings[0]]
    return [
        {"setting": s.label, "chars_per_s": medians[s], "ratio": medians[s] / base}
        for s in settings
    ]
