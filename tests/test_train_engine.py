"""The training engine: TBPTT state carry, clipping, optimisers, schedules, stopping, callbacks."""

from __future__ import annotations

import math
import os
import signal

import pytest
import torch

from rnnkit.io import RunDir, load_tensors, read_jsonl
from rnnkit.tasks.base import StepOutput, Task
from rnnkit.train import (
    Callback,
    LRSchedule,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    build_optimizer,
    detach_state,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and a busy machine makes more threads crawl)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Recurrent(Task):
    """y_t ≈ x_t + x_{t-1}: a tiny stateful regression task (batches of (x, y), (B, T, 1))."""

    name = "recurrent-test"

    def __init__(self, scale: float = 1.0):
        super().__init__()
        torch.manual_seed(0)
        self.rnn = torch.nn.LSTM(1, 4, batch_first=True)
        self.head = torch.nn.Linear(4, 1)
        self.scale = scale
        self.seen_states = []

    def step(self, batch, state=None):
        self.seen_states.append(state)
        x, y = batch
        h, state = self.rnn(x, state)
        loss = self.scale * ((self.head(h) - y) ** 2).mean()
        return StepOutput(loss=loss, count=y.numel(), state=state)


class Streams:
    """A BatchSource of ``n`` windows per epoch over fixed random streams."""

    def __init__(self, n: int = 4, B: int = 2, T: int = 5):
        g = torch.Generator().manual_seed(1)
        x = torch.randn(B, n * T, 1, generator=g)
        y = x + torch.nn.functional.pad(x, (0, 0, 1, 0))[:, :-1]
        self.windows = [(x[:, i * T : (i + 1) * T], y[:, i * T : (i + 1) * T]) for i in range(n)]

    def __len__(self):
        return len(self.windows)

    def epoch(self, epoch, start=0):
        return iter(self.windows[start:])


def test_tbptt_carries_the_detached_state_and_resets_each_epoch():
    task = Recurrent()
    Trainer(task, TrainConfig(steps=8, eval_every=100), Streams(n=4)).fit()
    states = task.seen_states[:8]
    assert states[0] is None and states[4] is None  # epoch starts
    for k in (1, 2, 3, 5, 6, 7):
        h, c = states[k]
        assert h.grad_fn is None and not h.requires_grad  # gradient stops at the window edge
        assert h.shape == (1, 2, 4) and h.abs().sum() > 0


def test_detach_state_keeps_structure():
    from rnnkit.cells import LSTMState

    x = torch.ones(2, requires_grad=True) * 2
    state = {"a": LSTMState(x, x), "b": [x, None]}
    out = detach_state(state)
    assert isinstance(out["a"], LSTMState) and out["a"].h.grad_fn is None
    assert out["b"][1] is None and torch.equal(out["b"][0], x.detach())


class Record(Callback):
    def __init__(self):
        self.events = []
        self.norms = []

    def on_train_start(self, trainer):
        self.events.append("start")

    def on_step_start(self, trainer, step):
        self.events.append(f"step_start {step}")

    def on_after_backward(self, trainer, info):
        grads = [p.grad for p in trainer.task.parameters() if p.grad is not None]
        raw = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        self.norms.append((info.grad_norm, float(raw)))
        self.events.append(f"after_backward {info.step}")

    def on_step_end(self, trainer, info):
        grads = [p.grad for p in trainer.task.parameters() if p.grad is not None]
        clipped = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g) for g in grads])
        )
        self.norms[-1] += (float(clipped),)
        self.events.append(f"step_end {info.step}")
        trainer.log(custom=info.step)

    def on_evaluate(self, trainer, metrics):
        self.events.append(f"evaluate {trainer.step}")

    def on_checkpoint(self, trainer):
        self.events.append(f"checkpoint {trainer.step}")

    def on_train_end(self, trainer, result):
        self.events.append(f"end {result.stop_reason}")


def test_callbacks_order_grad_norm_before_clipping_and_extra_metric_fields(tmp_path):
    run = RunDir(tmp_path / "run").create()
    cb = Record()
    task = Recurrent(scale=1e4)  # large gradients, so clipping acts
    cfg = TrainConfig(steps=2, eval_every=2, clip_norm=0.5)
    Trainer(task, cfg, Streams(), Streams(), run=run, callbacks=[cb]).fit()
    assert cb.events == [
        "start",
        "checkpoint 0",
        "step_start 0",
        "after_backward 1",
        "step_end 1",
        "step_start 1",
        "after_backward 2",
        "step_end 2",
        "evaluate 2",
        "checkpoint 2",
        "end steps",
    ]
    for reported, raw, clipped in cb.norms:
        assert reported == pytest.approx(raw, rel=1e-5)
        assert raw > 0.5 and clipped == pytest.approx(0.5, rel=1e-4)
    (line,) = read_jsonl(run.metrics_path)
    assert line["custom"] == 2 and line["step"] == 2
    assert {"train_loss", "val_loss", "lr", "tokens_per_s", "elapsed"} <= set(line)


def test_clip_value_clamps_every_element():
    class Check(Callback):
        def on_step_end(self, trainer, info):
            self.max = max(p.grad.abs().max().item() for p in trainer.task.parameters())

    cb = Check()
    cfg = TrainConfig(steps=1, eval_every=5, clip_norm=None, clip_value=1e-3)
    Trainer(Recurrent(scale=1e4), cfg, Streams(), callbacks=[cb]).fit()
    assert cb.max == pytest.approx(1e-3)


def test_clip_groups_are_clipped_each_on_its_own():
    """A task's ``clip_groups`` are clipped separately: the large group to the norm, the small
    one untouched (one global norm would have shrunk both)."""

    class TwoGroups(Task):
        name = "two-groups"

        def __init__(self, grouped):
            super().__init__()
            self.a = torch.nn.Parameter(torch.ones(4))
            self.b = torch.nn.Parameter(torch.ones(4))
            self.grouped = grouped

        def step(self, batch, state=None):
            return StepOutput(loss=50.0 * self.a.sum() + 0.01 * self.b.sum(), count=1)

        def clip_groups(self):
            return [[self.a], [self.b]] if self.grouped else None

    for grouped in (True, False):
        task = TwoGroups(grouped)
        cfg = TrainConfig(steps=1, eval_every=5, optimizer="sgd", momentum=0.0, lr=1.0,
                          clip_norm=1.0, warmup_steps=0)  # fmt: skip
        Trainer(task, cfg, [torch.zeros(1)]).fit()
        step_a = torch.linalg.vector_norm(1.0 - task.a.detach())
        step_b = torch.linalg.vector_norm(1.0 - task.b.detach())
        if grouped:
            assert step_a == pytest.approx(1.0, rel=1e-5) and step_b == pytest.approx(0.02)
        else:
            assert float(torch.hypot(step_a, step_b)) == pytest.approx(1.0, rel=1e-5)
            assert step_b < 1e-3


def test_sgd_step_is_w_minus_lr_grad():
    task = Recurrent()
    before = {n: p.detach().clone() for n, p in task.named_parameters()}

    class Grab(Callback):
        def on_after_backward(self, trainer, info):
            self.grads = {n: p.grad.clone() for n, p in trainer.task.named_parameters()}

    cb = Grab()
    cfg = TrainConfig(
        optimizer="sgd",
        lr=0.1,
        momentum=0.0,
        clip_norm=None,
        schedule="constant",
        steps=1,
        eval_every=5,
    )
    Trainer(task, cfg, Streams(), callbacks=[cb]).fit()
    for n, p in task.named_parameters():
        torch.testing.assert_close(p.detach(), before[n] - 0.1 * cb.grads[n])


@pytest.mark.parametrize(
    "name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)]
)
def test_build_optimizer(name, cls):
    opt = build_optimizer(
        TrainConfig(optimizer=name, lr=0.01, weight_decay=0.1, steps=1),
        [torch.nn.Parameter(torch.zeros(2))],
    )
    assert isinstance(opt, cls) and opt.param_groups[0]["weight_decay"] == 0.1


def test_schedules():
    cos = LRSchedule(TrainConfig(schedule="cosine", min_lr_ratio=0.1, steps=10))
    assert cos.factor(0, 0.0) == 1.0
    assert cos.factor(5, 0.5) == pytest.approx(0.1 + 0.9 * 0.5)
    assert cos.factor(10, 1.0) == pytest.approx(0.1)
    warm = LRSchedule(TrainConfig(schedule="constant", warmup_steps=4, steps=10))
    assert [warm.factor(s, 0) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    # a warm-up longer than 5% of the planned run ends there: 100 warm-up steps of 200
    short = LRSchedule(TrainConfig(schedule="constant", warmup_steps=100, steps=200))
    got = [short.factor(s, s / 200) for s in (0, 4, 9, 10, 50)]
    assert got == pytest.approx([0.01, 0.4, 0.9, 1.0, 1.0])
    step = LRSchedule(TrainConfig(schedule="step", step_size=3, gamma=0.5, steps=10))
    assert [step.factor(s, 0) for s in (0, 2, 3, 6)] == [1.0, 1.0, 0.5, 0.25]
    plateau = LRSchedule(
        TrainConfig(schedule="plateau", plateau_patience=2, plateau_factor=0.1, steps=10)
    )
    for loss in (1.0, 0.9, 0.95, 0.92):  # two evaluations without improvement -> x0.1
        plateau.observe(loss)
    assert plateau.factor(0, 0) == pytest.approx(0.1)
    state = plateau.state_dict()
    again = LRSchedule(plateau.config)
    again.load_state_dict(state)
    assert again.state_dict() == state


def test_learning_rate_follows_the_schedule_in_the_loop():
    lrs = []

    class Lr(Callback):
        def on_step_end(self, trainer, info):
            lrs.append(info.lr)

    cfg = TrainConfig(lr=0.1, schedule="cosine", warmup_steps=2, steps=4, eval_every=10)
    Trainer(Recurrent(), cfg, Streams(), callbacks=[Lr()]).fit()
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4)]
    expected[0] *= 0.5
    assert lrs == pytest.approx(expected)


def test_limits_epochs_steps_time_budget():
    task = Recurrent()
    result = Trainer(task, TrainConfig(epochs=2, eval_every=100), Streams(n=3)).fit()
    assert (result.stop_reason, result.step, result.epoch) == ("epochs", 6, 2)
    result = Trainer(Recurrent(), TrainConfig(steps=5, eval_every=100), Streams(n=3)).fit()
    assert (result.stop_reason, result.step) == ("steps", 5)
    result = Trainer(
        Recurrent(), TrainConfig(time_budget=0.2, eval_every=10**6), Streams(n=3)
    ).fit()
    assert result.stop_reason == "time_budget" and result.elapsed >= 0.2 and result.step > 0
    with pytest.raises(ValueError, match="at least one of steps, epochs or time_budget"):
        TrainConfig()


def test_early_stopping_after_patience_evaluations():
    class Constant(Task):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def step(self, batch, state=None):
            return StepOutput(loss=self.w.sum() * 0 + 1.0, count=1)

    cfg = TrainConfig(steps=100, eval_every=2, early_stopping=3)
    result = Trainer(Constant(), cfg, [torch.zeros(1)] * 4, [torch.zeros(1)]).fit()
    # evaluation 1 sets the best; 2, 3, 4 do not improve -> stop at step 8
    assert (result.stop_reason, result.step) == ("early_stopping", 8)


def test_non_finite_loss_stops_before_the_update_and_keeps_the_checkpoint(tmp_path):
    class Explode(Recurrent):
        def step(self, batch, state=None):
            out = super().step(batch, state)
            if len(self.seen_states) == 5:
                out.loss = out.loss * float("nan")
            return out

    run = RunDir(tmp_path / "run").create()
    task = Explode()
    weights = {}

    class Keep(Callback):
        def on_step_end(self, trainer, info):
            weights[info.step] = {k: v.clone() for k, v in trainer.task.state_dict().items()}

    cfg = TrainConfig(steps=10, eval_every=2)
    with pytest.raises(
        NonFiniteLossError, match=r"loss is nan at step 5 .* checkpoint from step 4"
    ):
        Trainer(task, cfg, Streams(n=8), run=run, callbacks=[Keep()]).fit()
    for k, v in task.state_dict().items():  # step 5 did not touch the weights
        assert torch.equal(v, weights[4][k])
    saved = load_tensors(run.model_path)
    for k, v in saved.items():
        assert torch.equal(v, weights[4][k])


def test_ctrl_c_saves_a_checkpoint_and_returns(tmp_path):
    class Interrupt(Callback):
        def on_step_end(self, trainer, info):
            if info.step == 3:
                os.kill(os.getpid(), signal.SIGINT)

    run = RunDir(tmp_path / "run").create()
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when started as a background job
    result = Trainer(
        Recurrent(),
        TrainConfig(steps=10, eval_every=100),
        Streams(),
        run=run,
        callbacks=[Interrupt()],
    ).fit()
    assert (result.stop_reason, result.step) == ("interrupted", 3)
    assert signal.getsignal(signal.SIGINT) == before  # the caller's handler is back
    state = (run.path / "trainer_state" / "state.json").read_text()
    assert '"step": 3' in state


def test_task_evaluate_sums_stats():
    class Count(Task):
        def step(self, batch, state=None):
            return StepOutput(loss=torch.tensor(float(batch)), count=2, stats={"correct": 1})

    assert Count().evaluate([1, 3]) == {"loss": 2.0, "correct": 0.5}


def test_progress_bar_shows_loss_and_tokens_per_second():
    import io

    from rnnkit.train import ProgressBar

    stream = io.StringIO()
    bar = ProgressBar(file=stream, mininterval=0.0)
    Trainer(
        Recurrent(), TrainConfig(steps=6, eval_every=3), Streams(), Streams(), callbacks=[bar]
    ).fit()
    text = stream.getvalue()
    assert "6/6" in text and "loss=" in text and "val_loss" in text


def test_tensorboard_events_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    from rnnkit.train import TensorBoard

    run = RunDir(tmp_path / "run").create()
    Trainer(
        Recurrent(),
        TrainConfig(steps=2, eval_every=1),
        Streams(),
        Streams(),
        run=run,
        callbacks=[TensorBoard()],
    ).fit()
    assert list((run.path / "tensorboard").glob("events.out.tfevents.*"))
