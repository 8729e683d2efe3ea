"""Devices: names resolve or fail with what is available; batches and runs move between devices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import pytest
import torch

from rnnkit.data.text import StreamBatches
from rnnkit.devices import available_devices, default_device, resolve_device, to_device
from rnnkit.errors import InvalidInputError
from rnnkit.io import RunDir, load_tensors
from rnnkit.tasks.lm import LanguageModel
from rnnkit.train import TrainConfig, Trainer
from rnnkit.train.checkpoint import read_checkpoint


class Pair(NamedTuple):
    x: torch.Tensor
    n: int


@dataclass
class Batch:
    inputs: torch.Tensor
    parts: list
    name: str = "b"


def test_resolve_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert str(resolve_device("auto")) == expected == default_device()
    assert available_devices()[0] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_names_what_is_available():
    with pytest.raises(InvalidInputError, match=r"CUDA is not available.*available here: cpu"):
        resolve_device("cuda")
    with pytest.raises(InvalidInputError, match="available here: cpu"):
        resolve_device("cuda:3")


def test_bad_name():
    with pytest.raises(InvalidInputError, match=r"--device must be one of auto, cpu.*'gpu0'"):
        resolve_device("gpu0")


@pytest.mark.skipif(
    getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
    reason="needs a machine without MPS",
)
def test_missing_mps():
    with pytest.raises(InvalidInputError, match="MPS is not available"):
        resolve_device("mps")


def test_to_device_walks_containers():
    batch = {
        "a": (torch.ones(2), [torch.zeros(1), 3]),
        "p": Pair(torch.ones(1), 4),
        "d": Batch(torch.ones(3), [torch.ones(1)]),
    }
    moved = to_device(batch, "cpu")
    assert isinstance(moved["p"], Pair) and moved["p"].n == 4
    assert isinstance(moved["d"], Batch) and moved["d"].name == "b"
    assert moved["a"][1][1] == 3 and isinstance(moved["a"][1], list)
    assert torch.equal(moved["d"].inputs, torch.ones(3))


def _lm_trainer(run, steps, device="cpu"):
    torch.manual_seed(0)
    task = LanguageModel(vocab_size=12, embedding_size=8, hidden_size=16, num_layers=1)
    ids = torch.randint(1, 12, (600,), generator=torch.Generator().manual_seed(1))
    train = StreamBatches(ids, 4, 10)
    val = StreamBatches(ids[:200], 2, 10, drop_last=False)
    config = TrainConfig(steps=steps, eval_every=5, lr=0.01, seed=0)
    return Trainer(task, config, train, val, run=run, device=device)


def test_checkpoint_records_device_and_cpu_tensors(tmp_path):
    run = RunDir.prepare(tmp_path / "run", force=False).create()
    _lm_trainer(run, 5).fit()
    state = read_checkpoint(run.path)
    assert state["state"]["device"] == "cpu" and state["state"]["precision"] == "32"
    assert state["state"]["world_size"] == 1
    assert all(t.device.type == "cpu" for t in load_tensors(run.model_path).values())
    assert state["carry"] is not None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_run_moves_between_cuda_and_cpu(tmp_path):
    """Trained on CUDA, resumed on the CPU: weights saved on the CPU, carried state moved."""
    run = RunDir.prepare(tmp_path / "run", force=False).create()
    trainer = _lm_trainer(run, 5, device="cuda")
    trainer.fit()
    assert next(trainer.task.parameters()).device.type == "cuda"
    assert all(t.device.type == "cpu" for t in load_tensors(run.model_path).values())
    resumed = _lm_trainer(run, 10, device="cpu")
    result = resumed.fit(resume=True)
    assert result.step == 10 and torch.isfinite(torch.tensor(result.metrics["val_loss"]))
