"""Run-directory safety: what --force may replace, resume checks, untrusted runs, locks,
preemption and durability (issue 13). Faults are injected by monkeypatching and signals."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rnnkit import runs
from rnnkit.cli.main import main
from rnnkit.errors import InvalidInputError
from rnnkit.io import RunDir
from rnnkit.tasks.lm import LMConfig, TextData
from rnnkit.train import Callback, TrainConfig

FIXTURES = Path(__file__).parent / "fixtures" / "runs"
TEXT = FIXTURES / "hamlet.txt"
LM_ARGV = ["train", "lm", "--text", str(TEXT), "--embedding-size", "4", "--hidden-size", "8",
           "--num-layers", "1", "--bptt", "10", "--batch-size", "2", "--eval-every", "2",
           "--no-progress", "--threads", "1"]  # fmt: skip


def small_lm(path, steps=2, callbacks=(), force=False, **train):
    return runs.train_run(
        "lm",
        path,
        data=TextData(text=str(TEXT), batch_size=2, bptt=10),
        model=LMConfig(embedding_size=4, hidden_size=8, num_layers=1),
        train=TrainConfig(steps=steps, **{"eval_every": 2, **train}),
        force=force,
        callbacks=callbacks,
    )


def snapshot(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` by relative path (what 'nothing lost' compares)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != RunDir.LOCK  # the lock records its holder's pid
    }


# -- item 1: --force replaces only rnnkit runs, atomically --------------------------------------
@pytest.mark.parametrize(
    "config",
    [
        {"model_type": "bert", "hidden_size": 768},  # another library's model folder
        {"task": "lm"},  # no rnnkit version: not written by rnnkit
        {"task": "poetry", "versions": {"rnnkit": "0.1.0"}},  # unknown task
        [1, 2, 3],
    ],
)
def test_force_refuses_a_folder_that_is_not_an_rnnkit_run(tmp_path, capsys, config):
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text(json.dumps(config))
    (project / "notes.txt").write_text("months of work")
    before = snapshot(project)
    assert main([*LM_ARGV, "--steps", "1", "--out", str(project), "--force"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "not an rnnkit run" in err
    assert err.count("\n") == 1
    assert snapshot(project) == before


def test_force_refuses_the_working_directory(tmp_path, monkeypatch, capsys):
    small_lm(tmp_path / "run")
    before = snapshot(tmp_path / "run")
    monkeypatch.chdir(tmp_path / "run")
    assert main([*LM_ARGV, "--steps", "1", "--out", ".", "--force"]) == 2
    assert "working directory" in capsys.readouterr().err
    assert snapshot(tmp_path / "run") == before


def test_runs_written_by_earlier_versions_count_as_runs():
    configs = sorted(FIXTURES.rglob("config.json"))
    assert len(configs) >= 6
    for config in configs:
        assert RunDir(config.parent).is_rnnkit_run(runs.SPECS), config


class _FailAtStep(Callback):
    def __init__(self, step: int, exc: BaseException) -> None:
        self.step, self.exc = step, exc

    def on_step_start(self, trainer, step):
        if step == self.step:
            raise self.exc


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_replacement_that_fails_at_step_one_leaves_the_old_run(tmp_path, exc):
    small_lm(tmp_path / "run")
    before = snapshot(tmp_path / "run")
    with pytest.raises(type(exc)):
        small_lm(tmp_path / "run", force=True, callbacks=[_FailAtStep(0, exc)], seed=1)
    assert snapshot(tmp_path / "run") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing left aside


def test_a_replacement_killed_at_step_one_keeps_the_old_run_aside(tmp_path):
    small_lm(tmp_path / "run")
    before = snapshot(tmp_path / "run")
    script = (
        "import os, signal, sys\n"
        "from rnnkit.train import trainer\n"
        "step = trainer.Trainer._train_step\n"
        "def die(self, batch):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "trainer.Trainer._train_step = die\n"
        "from rnnkit.cli.main import main\n"
        "main(sys.argv[1:])\n"
    )
    argv = [*LM_ARGV, "--steps", "2", "--out", str(tmp_path / "run"), "--force"]
    killed = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, timeout=60)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(aside) == 1 and snapshot(aside[0]) == before


def test_a_successful_replacement_removes_the_old_run(tmp_path):
    small_lm(tmp_path / "run")
    done = small_lm(tmp_path / "run", force=True, steps=4)
    assert done.result.step == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# -- item 5: untrusted runs cannot exhaust memory; the checksum is mandatory --------------------
def old_lm(tmp_path) -> Path:
    run = tmp_path / "lm"
    shutil.copytree(FIXTURES / "lm", run)
    config = json.loads((run / "config.json").read_text())
    config["data"]["source"] = config["data"]["text"] = str(TEXT.resolve())
    (run / "config.json").write_text(json.dumps(config))
    return run


UNDER_4_GIB = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from rnnkit.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", ["evaluate", "sample"])
def test_a_config_asking_for_a_huge_model_is_refused_before_allocating(tmp_path, command):
    run = old_lm(tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["model"]["hidden_size"] = 200_000  # 4 * 200000**2 floats: 640 GB for weight_hh
    (run / "config.json").write_text(json.dumps(config))
    before = snapshot(run)
    done = subprocess.run(
        [sys.executable, "-c", UNDER_4_GIB, command, str(run)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "does not match model.safetensors" in lines[0] and "hidden" not in lines[0][:7]
    assert snapshot(run) == before


def test_weights_without_checksum_need_trust(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    run = old_lm(tmp_path)
    save_file(load_file(run / "model.safetensors"), run / "model.safetensors")  # no metadata
    assert main(["evaluate", str(run), "--json"]) == 2
    err = capsys.readouterr().err
    assert "has no rnnkit checksum" in err and "--trust" in err and err.count("\n") == 1
    assert main(["sample", str(run), "--length", "3", "--seed", "0"]) == 2
    assert "--trust" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--json", "--trust"]) == 0
    assert main(["sample", str(run), "--length", "3", "--seed", "0", "--trust"]) == 0
    with pytest.raises(InvalidInputError, match="no rnnkit checksum"):
        runs.load_run(run)
    assert runs.load_run(run, trust=True).spec.name == "lm"


READ_VERBS = [
    ("classify/text", ["predict", "--text", "a fine film"]),
    ("tag/run", ["tag", "--text", "我 吃 苹果"]),
    ("seq2seq/run", ["translate", "--text", "5 March 2023"]),
    ("forecast", ["forecast", "--csv", str(FIXTURES / "forecast" / "sales.csv")]),
    ("lm", ["diagnose", "--length", "5", "--no-plot"]),
]


@pytest.mark.parametrize("fixture, argv", READ_VERBS, ids=[a[0] for _, a in READ_VERBS])
def test_every_read_verb_takes_trust_for_weights_without_checksum(tmp_path, capsys, fixture, argv):
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(FIXTURES / fixture, run)
    save_file(load_file(run / "model.safetensors"), run / "model.safetensors")  # no metadata
    command = [argv[0], str(run), *argv[1:]]
    capsys.readouterr()
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "has no rnnkit checksum" in err and "--trust" in err and err.count("\n") == 1
    assert main([*command, "--trust"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out


def test_a_crafted_safetensors_header_is_one_error(tmp_path, capsys):
    run = old_lm(tmp_path)
    for header in (
        b"\xff" * 8,
        (10**12).to_bytes(8, "little"),
        (5).to_bytes(8, "little") + b"[1,2]",
    ):
        (run / "model.safetensors").write_bytes(header)
        assert main(["evaluate", str(run)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1


# -- item 3: preemption (SIGTERM, SIGHUP) and time-based checkpoints ------------------------------
SIGNAL_AT_STEP = """
import os, signal, sys
from rnnkit.train import trainer

step = trainer.Trainer._train_step


def step_then_signal(self, batch):
    if self.step == 3:
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))  # arrives mid-step, like a scheduler's
    step(self, batch)


trainer.Trainer._train_step = step_then_signal
from rnnkit.cli.main import main

sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize(("name", "code"), [("SIGTERM", 143), ("SIGHUP", 129), ("SIGINT", 130)])
def test_sigterm_and_sighup_checkpoint_and_exit_like_ctrl_c(tmp_path, name, code):
    out = tmp_path / "run"
    argv = [*LM_ARGV, "--steps", "1000", "--eval-every", "500", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-c", SIGNAL_AT_STEP, name, *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == code, done.stderr[-2000:]
    assert "interrupted" in done.stderr and f"--resume {out}" in done.stderr
    state = json.loads((out / "trainer_state" / "state.json").read_text())
    assert state["step"] == 4  # the step under way was finished, then checkpointed
    assert main(["train", "lm", "--resume", str(out), "--steps", "6", "--no-progress"]) == 0
    assert json.loads((out / "trainer_state" / "state.json").read_text())["step"] == 6


class _Checkpoints(Callback):
    def __init__(self):
        self.steps = []

    def on_checkpoint(self, trainer):
        self.steps.append(trainer.step)


@pytest.mark.parametrize(("seconds", "timed"), [(None, False), (250.0, True), (1e9, False)])
def test_time_based_checkpoints(tmp_path, monkeypatch, seconds, timed):
    import time
    from types import SimpleNamespace

    from rnnkit.train import trainer

    clock = iter(range(0, 10**6, 50))  # the trainer's monotonic clock: 50 s per reading
    fake = SimpleNamespace(monotonic=lambda: float(next(clock)), perf_counter=time.perf_counter)
    monkeypatch.setattr(trainer, "time", fake)
    spy = _Checkpoints()
    small_lm(
        tmp_path / "run", steps=10, eval_every=100, callbacks=[spy], checkpoint_seconds=seconds
    )
    assert spy.steps[0] == 0 and spy.steps[-1] == 10
    between = spy.steps[1:-1]
    assert bool(between) == timed and between == sorted(set(between))


def test_checkpoint_flags(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [*LM_ARGV, "--steps", "2", "--out", str(out), "--checkpoint-every", "60"]
    assert main([*argv, "--checkpoint-every-steps", "1"]) == 0
    train = json.loads((out / "config.json").read_text())["train"]
    assert train["checkpoint_seconds"] == 60 and train["checkpoint_every"] == 1
    assert main([*LM_ARGV, "--steps", "2", "--out", str(tmp_path / "b"), "--checkpoint-every",
                 "-1"]) == 2  # fmt: skip
    assert "error: --checkpoint-every must be >= 0" in capsys.readouterr().err


# -- item 4: --resume checks what it resumes ----------------------------------------------------
TASK_ARGS = {
    "lm": ["--text", str(TEXT)],
    "tag": ["--data", str(FIXTURES / "tag" / "train.txt")],
    "seq2seq": ["--pairs", str(FIXTURES / "seq2seq" / "dates.tsv")],
    "classify": ["--csv", str(FIXTURES / "classify" / "text" / "reviews.csv")],
    "forecast": ["--csv", str(FIXTURES / "forecast" / "sales.csv"), "--target", "sales"],
}


@pytest.mark.parametrize("task", sorted(TASK_ARGS))
def test_out_with_resume_is_refused_for_every_task(tmp_path, capsys, task):
    argv = ["train", task, *TASK_ARGS[task], "--resume", str(tmp_path / "run")]
    assert main([*argv, "--out", str(tmp_path / "other"), "--steps", "9"]) == 2
    assert "--resume writes into the run it continues; drop --out" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_resume_refuses_changed_training_options_unless_override(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*LM_ARGV, "--steps", "2", "--lr", "0.01", "--out", str(out)]) == 0
    before = snapshot(out)
    resume = ["train", "lm", "--resume", str(out), "--steps", "4", "--no-progress"]
    assert main([*resume, "--lr", "0.1", "--clip-norm", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lr: run 0.01, given 0.1" in err and "clip_norm" in err
    assert "--override" in err and snapshot(out) == before
    assert main([*resume, "--lr", "0.01"]) == 0  # the same value is no difference
    assert main([*resume, "--steps", "6", "--lr", "0.1", "--override"]) == 0
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == 0.1


def test_resume_refuses_model_options_that_differ(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*LM_ARGV, "--steps", "2", "--out", str(out)]) == 0
    before = snapshot(out)
    argv = ["train", "lm", "--resume", str(out), "--steps", "4", "--hidden-size", "16"]
    assert main([*argv, "--override"]) == 2
    err = capsys.readouterr().err
    assert "hidden_size: run 8, given 16" in err and err.count("\n") == 1
    assert snapshot(out) == before
    same = ["train", "lm", "--resume", str(out), "--steps", "4", "--hidden-size", "8"]
    assert main([*same, "--text", str(TEXT), "--no-progress"]) == 0


def test_resume_refuses_a_config_edited_since_the_checkpoint(tmp_path):
    done = small_lm(tmp_path / "run", steps=2, lr=0.01)
    config = json.loads(done.run.config_path.read_text())
    config["train"]["lr"] = 0.5
    done.run.config_path.write_text(json.dumps(config))
    with pytest.raises(InvalidInputError, match="lr: checkpoint 0.01, config.json 0.5"):
        runs.resume_run(done.run.path, limits={"steps": 4})
    assert runs.resume_run(done.run.path, limits={"steps": 4}, override=True).result.step == 4


def test_a_run_stopped_by_its_time_budget_resumes_to_the_given_steps(tmp_path, monkeypatch):
    import time
    from types import SimpleNamespace

    from rnnkit.train import trainer

    clock = iter(range(0, 10**6, 100))  # 100 s per reading: the 180 s budget is gone at once
    fake = SimpleNamespace(monotonic=lambda: float(next(clock)), perf_counter=time.perf_counter)
    monkeypatch.setattr(trainer, "time", fake)
    part = runs.train_run(
        "lm",
        tmp_path / "run",
        data=TextData(text=str(TEXT), batch_size=2, bptt=10),
        model=LMConfig(embedding_size=4, hidden_size=8, num_layers=1),
        train=TrainConfig(time_budget=180, eval_every=2, checkpoint_seconds=None),
    )
    assert part.result.stop_reason == "time_budget" and part.result.step < 6
    monkeypatch.undo()
    done = runs.resume_run(part.run.path, limits={"steps": 6})
    assert done.result.step == 6 and done.result.stop_reason == "steps"


def test_raising_the_limit_of_a_cosine_run_does_not_jump_the_learning_rate(tmp_path):
    done = small_lm(tmp_path / "run", steps=4, lr=0.01, schedule="cosine")
    lrs = [json.loads(x)["lr"] for x in done.run.metrics_path.read_text().splitlines()]
    runs.resume_run(done.run.path, limits={"steps": 8})
    records = [json.loads(line) for line in done.run.metrics_path.read_text().splitlines()]
    after = [r["lr"] for r in records if r["step"] > 4]
    assert after and max(after) <= lrs[-1] + 1e-12  # finished cosine: stays at its floor
    # stopped part-way on its way to a floor of half the peak: it anneals on, never rises
    half = small_lm(tmp_path / "half", steps=4, lr=0.01, schedule="cosine", min_lr_ratio=0.5)
    runs.resume_run(half.run.path, limits={"steps": 8})
    lr = [json.loads(x)["lr"] for x in half.run.metrics_path.read_text().splitlines()]
    assert all(b <= a + 1e-12 for a, b in zip(lr, lr[1:]))  # never rises again


# -- item 2: one writer per run -------------------------------------------------------------------
HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(os.path.join(sys.argv[1], ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, f"{os.getpid()}\\n".encode())
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_writer_is_refused_while_a_process_holds_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*LM_ARGV, "--steps", "2", "--out", str(out)]) == 0
    before = snapshot(out)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        message = f"error: {out} is in use by pid {holder.pid}"
        resume = ["train", "lm", "--resume", str(out), "--steps", "4", "--no-progress"]
        assert main(resume) == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1
        assert main([*LM_ARGV, "--steps", "2", "--out", str(out), "--force"]) == 2
        assert capsys.readouterr().err.startswith(message)
        assert snapshot(out) == before
        assert runs.evaluate_run(out)["loss"] > 0  # readers need no lock
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert main(resume) == 0  # the lock went with its process


# -- item 9 (checkpoints): a poisoned step never replaces the last good checkpoint ---------------
class _Poison(Callback):
    def on_step_end(self, trainer, info):
        if trainer.step == 3:
            import torch

            with torch.no_grad():
                next(iter(trainer.task.parameters())).view(-1)[0] = float("inf")


def test_non_finite_weights_are_not_checkpointed(tmp_path):
    from rnnkit.train import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match="non-finite weights .* step 4 .*from step 2"):
        small_lm(tmp_path / "run", steps=6, callbacks=[_Poison()])
    state = json.loads((tmp_path / "run" / "trainer_state" / "state.json").read_text())
    assert state["step"] == 2
    weights = runs.load_model(tmp_path / "run").state_dict()
    assert all(bool(t.isfinite().all()) for t in weights.values())


# -- item 10: durability ----------------------------------------------------------------------
def test_renames_are_followed_by_a_directory_fsync(tmp_path, monkeypatch):
    from rnnkit import io

    synced = []
    real = os.fsync
    monkeypatch.setattr(io.os, "fsync", lambda fd: synced.append(os.fstat(fd).st_mode) or real(fd))
    io.atomic_write_json(tmp_path / "a.json", {"x": 1})
    import stat

    assert any(stat.S_ISDIR(m) for m in synced) and any(stat.S_ISREG(m) for m in synced)


def test_atomic_writes_respect_the_umask_without_changing_it(tmp_path):
    from rnnkit import io

    probe = (
        "import os\ncalls = []\nreal = os.umask\n"
        "os.umask = lambda mask: calls.append(mask) or real(mask)\n"
        "import rnnkit.io\nprint(calls)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr[-2000:]  # importing changed no umask
    old = os.umask(0o027)
    try:
        io.atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o640


def test_stale_temporary_files_are_cleaned_when_a_run_is_opened_for_writing(tmp_path):
    done = small_lm(tmp_path / "run", steps=2)
    run = done.run.path
    stale = [run / ".config.json.123.abcd.tmp", run / "trainer_state" / ".state.json.9.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    (run / "trainer_state.tmp").mkdir()
    (run / "trainer_state.tmp" / "model.safetensors").write_bytes(b"half")
    keep = run / "notes.tmp"  # not an atomic write's temporary name
    keep.write_text("mine")
    runs.resume_run(run, limits={"steps": 3})
    assert not any(p.exists() for p in stale) and not (run / "trainer_state.tmp").exists()
    assert keep.read_text() == "mine"


@pytest.mark.parametrize("command", [["sample", "--length", "20000"], ["evaluate"]])
def test_output_into_a_closed_pipe_exits_quietly(tmp_path, command):
    run = old_lm(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", command[0], str(run), *command[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.read(1)  # like `| head -c 1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and err == ""


def test_a_full_disk_during_training_is_one_error_line(tmp_path, monkeypatch, capsys):
    import errno
    import os

    from rnnkit.cli.main import main

    text = Path(__file__).parent / "fixtures" / "runs" / "hamlet.txt"
    real = os.replace

    def full(src, dst, *a, **k):
        if str(dst).endswith("model.safetensors"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", full)
    argv = ["train", "lm", "--text", str(text), "--steps", "2", "--eval-every", "2", "--bptt",
            "10", "--hidden-size", "8", "--embedding-size", "4", "--num-layers", "1",
            "--batch-size", "2", "--no-progress", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot write") and "No space" in err[0]
