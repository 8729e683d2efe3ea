"""--device, --precision and --nproc on the training commands (rnnkit.cli.options)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rnnkit.cli.main import main
from rnnkit.io import load_tensors

TEXT = Path(__file__).parent / "fixtures" / "runs" / "hamlet.txt"
LM = ["train", "lm", "--text", str(TEXT), "--steps", "6", "--eval-every", "3", "--hidden-size",
      "8", "--embedding-size", "4", "--num-layers", "1", "--bptt", "10", "--batch-size", "4",
      "--no-progress", "--threads", "1"]  # fmt: skip


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--device", "cuda:7"], "available here: cpu"),
        (["--device", "tpu"], "--device"),
        (["--precision", "16"], "unsupported on CPU; use --precision bf16"),
        (["--nproc", "0"], "--nproc must be >= 1, got 0"),
        (["--nproc", "3"], "--batch-size 4 (the global batch) must divide by --nproc 3"),
    ],
)
def test_bad_device_precision_and_process_count(tmp_path, capsys, extra, message):
    if torch.cuda.is_available() and extra[:2] == ["--device", "cuda:7"]:
        pytest.skip("this machine has CUDA")
    assert main([*LM, "--out", str(tmp_path / "run"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (tmp_path / "run").exists()


def test_bf16_training_on_the_cpu(tmp_path, capsys):
    assert main([*LM, "--out", str(tmp_path / "run"), "--precision", "bf16", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 6 and summary["test"]["loss"] > 0


def test_two_processes_make_the_run_one_process_makes(tmp_path):
    """--nproc 2 (torchrun underneath, gloo) with the global batch of a 1-process run; dropout
    off, since each rank draws its own masks."""
    same = ["--schedule", "constant", "--dropout", "0"]
    assert main([*LM, "--out", str(tmp_path / "one"), *same]) == 0
    assert main([*LM, "--out", str(tmp_path / "two"), *same, "--nproc", "2"]) == 0
    one, two = (load_tensors(tmp_path / d / "model.safetensors") for d in ("one", "two"))
    assert one.keys() == two.keys()
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 1e-5
    assert (tmp_path / "two" / "test_metrics.json").is_file()


def test_nproc_leaves_the_signal_handlers_as_they_were(tmp_path):
    import signal

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert main([*LM, "--out", str(tmp_path / "two"), "--nproc", "2"]) == 0
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
