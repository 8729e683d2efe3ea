"""Task-agnostic training: truncated BPTT, clipping, optimisers, schedules, callbacks, resume.

The engine (:class:`Trainer`) knows nothing about language models, tags or forecasts. A task
plugs in by subclassing :class:`rnnkit.train.Task` and implementing one method::

    class Tagger(Task):
        name = "tag"                                   # config.json key; rnnkit.runs.SPECS
        def step(self, batch, state=None) -> StepOutput:
            tokens, lengths, tags = batch              # whatever the batch source yields
            logits = self.head(self.rnn(self.embed(tokens), lengths=lengths)[0])
            loss = cross_entropy(logits[mask], tags[mask])   # mean over scored items
            correct = (logits[mask].argmax(-1) == tags[mask]).sum()
            return StepOutput(loss=loss, count=int(mask.sum()), stats={"correct": correct})
        def summarize(self, loss_sum, count, stats):   # evaluation sums -> metrics
            return {"loss": loss_sum / count, "accuracy": stats["correct"] / count}
        def config(self): return {...constructor arguments...}   # saved in config.json

then trains with::

    seed_everything(0)                                 # before building the model
    task = Tagger(...)
    run = RunDir.prepare("runs/tagger", force=False).create()   # rnnkit.io
    run.write_config({"task": "tag", "model": task.config(), "train": cfg.to_dict(), ...})
    result = Trainer(task, TrainConfig(steps=1000), train_batches, val_batches, run=run,
                     callbacks=[ProgressBar()]).fit()           # fit(resume=True) to continue

Batches: ``train``/``val`` are *batch sources*: objects with ``epoch(e, start) -> iterator``
(batches of epoch ``e`` from index ``start``; shuffle with a generator seeded from ``(seed, e)``
so a resumed run sees the same order) and ``len()`` (batches per epoch), or simply
re-iterable sequences of batches. Batches are passed to ``task.step`` untouched.

Stateful tasks (language models): return the recurrent state in ``StepOutput.state``; the trainer
detaches it (truncated BPTT) and hands it back with the next batch, resets it to None at every
epoch start, and saves it in checkpoints. Stateless tasks return ``state=None``.

What the trainer does per step: set the scheduled learning rate, ``zero_grad``, ``task.step``,
stop with :class:`NonFiniteLossError` on a NaN/Inf loss *before* backward (and on a NaN/Inf
gradient norm before the update), backward, global gradient norm, callbacks'
``on_after_backward``, clip (norm and/or value), ``optimizer.step()``, detach the state,
``on_step_end``. Every ``eval_every`` steps: ``task.evaluate(val)`` -> one line of
``metrics.jsonl`` (``step, epoch, elapsed, lr, train_loss, tokens_per_s, val_<metric>...`` plus
fields callbacks added with ``trainer.log``) and a checkpoint.

Runs on disk (with ``run=``): ``model.safetensors``, ``metrics.jsonl`` and ``trainer_state/``
(:mod:`rnnkit.train.checkpoint`: weights, optimiser, schedule, python/numpy/torch RNG states,
step, data position, carried state). ``fit(resume=True)`` continues a run bit-identically to an
uninterrupted run with the same seed (for runs bounded by steps or epochs; time-bounded runs
anneal by wall-clock time). Ctrl-C finishes the current step, saves a checkpoint and returns
with ``stop_reason="interrupted"``. The caller writes ``config.json`` and its encoders.

Hooks for observers (gradient flow, gate statistics): subclass :class:`Callback`; see
:mod:`rnnkit.train.callbacks` for the order of hooks and :class:`StepInfo` (step, loss,
``grad_norm`` before clipping, lr, the task's output); the model is ``trainer.task``.
"""

from rnnkit.train.callbacks import Callback, ProgressBar, StepInfo, TensorBoard
from rnnkit.train.checkpoint import detach_state, seed_everything
from rnnkit.train.config import OPTIMIZERS, SCHEDULES, TrainConfig
from rnnkit.train.schedules import LRSchedule
from rnnkit.train.task import StepOutput, Task
from rnnkit.train.trainer import NonFiniteLossError, Trainer, TrainResult, build_optimizer

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Callback",
    "LRSchedule",
    "NonFiniteLossError",
    "ProgressBar",
    "StepInfo",
    "StepOutput",
    "Task",
    "TensorBoard",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_optimizer",
    "detach_state",
    "seed_everything",
]
