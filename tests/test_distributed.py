"""Data parallelism under torchrun: 2 gloo processes make the same updates as 1 process.

Every multi-process test launches ``torch.distributed.run`` in a subprocess with a timeout
(and a process-group timeout), so a broken collective fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnkit import distributed
from rnnkit.errors import InvalidInputError
from rnnkit.io import RunDir, load_tensors, read_jsonl
from rnnkit.train import Trainer
from rnnkit.train.checkpoint import read_checkpoint

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from ddp_worker import build, run_job  # noqa: E402

LAUNCH_TIMEOUT = 60


def start(*args):
    """Launch tests/ddp_worker.py on 2 local processes (a session of its own, to kill it all)."""
    env = {
        **os.environ,
        "RNNKIT_DIST_TIMEOUT": "30",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", str(HERE / "ddp_worker.py"), *map(str, args)]  # fmt: skip
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip


def finish(process, timeout=LAUNCH_TIMEOUT):
    """(return code, output) of a launch; the launcher and its workers are killed on timeout."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.communicate()
        pytest.fail(f"{' '.join(process.args[-4:])} did not finish in {timeout} s")
    return process.returncode, output


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """Two launches at once: the language model and the padded-batch regression each trained
    by 2 processes, and the same language model run with rank 0 SIGKILLed at step 7."""
    base = tmp_path_factory.mktemp("ddp")
    full = start("lm+regress", base)
    killed = start("lm", base / "killed", "--kill-at", 7)
    code, output = finish(full)
    assert code == 0, output[-3000:]
    killed_code, output = finish(killed)
    assert killed_code != 0, output[-3000:]  # the job ended (no hang) with an error
    return base


def close(a: dict, b: dict, tol: float) -> float:
    assert a.keys() == b.keys()
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    assert worst <= tol, worst
    return worst


@pytest.mark.parametrize("kind", ["lm", "regress"])
def test_two_processes_make_the_updates_of_one(kind, two_process_runs, tmp_path):
    single = tmp_path / kind
    run_job(kind, single)
    multi = two_process_runs / kind
    close(
        load_tensors(multi / "model.safetensors"), load_tensors(single / "model.safetensors"), 1e-5
    )
    # Evaluation aggregated over the ranks equals one process's, every 4 steps.
    lines_multi, lines_single = (
        read_jsonl(multi / "metrics.jsonl"),
        read_jsonl(single / "metrics.jsonl"),
    )
    assert [r["step"] for r in lines_multi] == [r["step"] for r in lines_single] == [4, 8, 12]
    for m, s in zip(lines_multi, lines_single):
        for key in s:
            if key.startswith("val_") or key == "train_loss":
                assert m[key] == pytest.approx(s[key], rel=1e-5, abs=1e-6), key
    # Rank 0 wrote one run; its checkpoint has rank 1's carried state and RNG state.
    state = read_checkpoint(multi)
    assert state["state"]["world_size"] == 2 and len(state["ranks"]) == 1
    if kind == "lm":  # B = 4 streams: each rank carries its 2, together one process's 4
        first = lambda state: next(iter(_tensors(state)))  # noqa: E731
        h0, h1 = first(state["carry"]), first(state["ranks"][0]["carry"])
        whole = first(read_checkpoint(single)["carry"])
        dim = [a == b for a, b in zip(h0.shape, whole.shape)].index(False)
        assert h0.shape[dim] == h1.shape[dim] == 2 and whole.shape[dim] == 4
        torch.testing.assert_close(torch.cat([h0, h1], dim), whole, atol=1e-5, rtol=0)


def _tensors(state):
    if isinstance(state, torch.Tensor):
        yield state
    elif isinstance(state, tuple | list):
        for s in state:
            yield from _tensors(s)
    elif isinstance(state, dict):
        for s in state.values():
            yield from _tensors(s)


def test_kill_a_worker_then_resume_is_bit_identical(two_process_runs):
    """SIGKILL of rank 0 at step 7 ended the job; resuming from the step-6 checkpoint gives the
    uninterrupted 2-process run's weights byte for byte, and its metrics."""
    run = two_process_runs / "killed"
    assert read_checkpoint(run)["state"]["step"] == 6
    code, output = finish(start("lm", run, "--resume"))
    assert code == 0, output[-3000:]
    full = load_tensors(two_process_runs / "lm" / "model.safetensors")
    again = load_tensors(run / "model.safetensors")
    assert all(torch.equal(full[k], again[k]) for k in full)
    timing = ("elapsed", "tokens_per_s")
    lines = [
        [{k: v for k, v in r.items() if k not in timing} for r in read_jsonl(path)]
        for path in (run / "metrics.jsonl", two_process_runs / "lm" / "metrics.jsonl")
    ]
    assert lines[0] == lines[1]


def test_resume_with_another_world_size_is_refused(two_process_runs):
    task, config, train, val = build("lm")
    trainer = Trainer(task, config, train, val, run=RunDir(two_process_runs / "lm"))
    with pytest.raises(InvalidInputError, match=r"trained by 2 process\(es\) and is resumed by 1"):
        trainer.fit(resume=True)


def test_shard_batch_gives_contiguous_row_blocks():
    x = torch.arange(12).view(6, 2)
    lengths, scalar = torch.arange(6), torch.tensor(3.0)
    parts = [distributed.shard_batch((x, lengths, scalar), r, 3) for r in range(3)]
    assert torch.equal(torch.cat([p[0] for p in parts]), x)
    assert torch.equal(parts[1][1], torch.tensor([2, 3])) and parts[2][2] is scalar
    # A short last batch splits unevenly, every row once.
    assert [distributed.shard_bounds(5, r, 2) for r in range(2)] == [(0, 3), (3, 5)]


def test_batch_size_must_divide_by_the_world_size():
    distributed.check_batch_size(8, 2)
    with pytest.raises(
        InvalidInputError, match="--batch-size 7 .* must divide by the world size 2"
    ):
        distributed.check_batch_size(7, 2)
    source = distributed.ShardedBatches([(torch.zeros(1, 3),)], 0, 2)
    with pytest.raises(InvalidInputError, match="a batch of 1 rows cannot be split over 2"):
        list(source.epoch(0))
    skipped = distributed.ShardedBatches([(torch.zeros(1, 3),)], 1, 2, skip_small=True)
    assert list(skipped.epoch(0)) == []


def test_one_process_is_not_distributed():
    assert not distributed.is_distributed() and distributed.world_size() == 1
    assert distributed.is_main() and distributed.init("cpu") is False
    assert distributed.backend_for(torch.device("cuda", 0)) == "nccl"
    assert distributed.backend_for(torch.device("cpu")) == "gloo"
