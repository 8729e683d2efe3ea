"""Data-parallel training on PyTorch's own engine: processes launched by ``torchrun``.

``torchrun --nproc-per-node N -m rnnkit train <task> …`` starts N processes with the environment
variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init` joins them into one process group (``gloo`` on the CPU, ``nccl`` on CUDA, chosen
from the device) with a timeout, so that a worker that dies does not leave the others waiting
forever. Several machines are plain torchrun: ``--nnodes M --node-rank i --rdzv-endpoint
host:port`` on each (the run directory must be on a file system every node sees).

How the engine splits the work (:class:`rnnkit.train.Trainer` does all of it):

- ``--batch-size`` is the *global* batch. Every rank reads the same batch source and keeps its
  rows ``[rank * b, (rank + 1) * b)`` of each global batch, ``b = B / world_size``
  (:func:`shard_batch`). For the language model's (B, T) stream windows this is fairseq's
  contiguous row-block sharding of the B streams; for shuffled padded batches it is the rank's
  slice of the globally shuffled batch.
- The loss of rank r, a mean over its ``n_r`` scored items, is scaled by ``n_r / N`` (``N`` the
  all-reduced global count) and the gradients are summed over ranks, so every rank holds the
  gradient of the global mean loss: with dropout 0 an N-process run makes the same updates as a
  1-process run with the same global batch, up to float reduction order.
- Evaluation sums (loss × count, count, stats) are added over ranks before the task's
  ``summarize``.
- Rank 0 alone writes the run; checkpoints hold every rank's carried state and RNG state.

Example (one process: nothing is distributed)::

    >>> is_distributed(), rank(), world_size(), is_main()
    (False, 0, 1, True)
    >>> batch = (torch.arange(8).view(4, 2), torch.arange(4))
    >>> shard_batch(batch, 1, 2)
    (tensor([[4, 5],
            [6, 7]]), tensor([2, 3]))
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any

import torch
import torch.distributed as dist

from rnnkit.errors import InvalidInputError

#: Seconds a collective may wait for the other ranks before the job fails (env override).
DEFAULT_TIMEOUT = 600.0
_object_group = None


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher) set ``WORLD_SIZE`` > 1 for this process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def is_distributed() -> bool:
    """True when this process is part of an initialised process group of more than one."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    """The rank on this machine (``LOCAL_RANK``; picks the GPU)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on rank 0, the process that writes the run directory and prints."""
    return rank() == 0


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def init(device: torch.device | str = "cpu", *, timeout: float | None = None) -> bool:
    """Join the process group torchrun described in the environment; False if there is none.

    Chooses ``nccl`` for a CUDA ``device`` (and selects ``cuda:LOCAL_RANK``), ``gloo`` otherwise.
    Collectives time out after ``timeout`` seconds (default ``RNNKIT_DIST_TIMEOUT`` or 600), so a
    dead worker ends the job instead of hanging it. Calling it again is a no-op.
    """
    global _object_group
    if not launched_by_torchrun():
        return False
    if dist.is_initialized():
        return True
    device = torch.device(device)
    if timeout is None:
        timeout = float(os.environ.get("RNNKIT_DIST_TIMEOUT", DEFAULT_TIMEOUT))
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout))
    # Python objects (checkpoint parts, evaluation sums) travel on the CPU: a gloo group beside
    # nccl, the default group itself under gloo.
    _object_group = dist.new_group(backend="gloo") if backend == "nccl" else None
    return True


def destroy(*, wait: bool = False) -> None:
    """Leave the process group (if any); with ``wait``, after every rank has come this far.

    A process that exits still in the group takes gloo's threads down with it unjoined, and the
    C++ runtime aborts it ("terminate called without an active exception", exit -6) after its
    work is done, failing the job; the command line therefore leaves at the end of every command
    (:func:`rnnkit.cli.main.main`), waiting for the others when the command succeeded.
    """
    global _object_group
    if dist.is_available() and dist.is_initialized():
        if wait and is_distributed():
            dist.barrier(group=_object_group)
        dist.destroy_process_group()
    _object_group = None


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if is_distributed():
        dist.barrier(group=_object_group)


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (``[obj]`` in one process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj, group=_object_group)
    return out


def gather_object(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` in rank order on rank 0, None on the others."""
    if not is_distributed():
        return [obj]
    out: list[Any] | None = [None] * world_size() if is_main() else None
    dist.gather_object(obj, out, dst=0, group=_object_group)
    return out


def check_batch_size(batch_size: int, world: int | None = None, *, option: str = "--batch-size"):
    """Raise unless the global ``batch_size`` divides by the world size.

    Raises:
        InvalidInputError: ``batch_size`` is not a multiple of the world size.
    """
    world = world_size() if world is None else world
    if batch_size % world:
        raise InvalidInputError(
            f"{option} {batch_size} (the global batch) must divide by the world size {world}; "
            f"use a multiple of {world}"
        )


def batch_rows(batch: Any) -> int | None:
    """B of a batch: dim 0 of its first tensor (batches are batch-first), None if none."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.dim() else None
    if isinstance(batch, dict):
        items = list(batch.values())
    elif dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        items = [getattr(batch, f.name) for f in dataclasses.fields(batch)]
    elif isinstance(batch, list | tuple):
        items = list(batch)
    else:
        return None
    for item in items:
        rows = batch_rows(item)
        if rows is not None:
            return rows
    return None


def shard_bounds(rows: int, rank_: int, world: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of rank ``rank_``: equal blocks, the first ``rows % world`` one
    row longer when ``rows`` does not divide (a short last batch)."""
    base, extra = divmod(rows, world)
    start = rank_ * base + min(rank_, extra)
    return start, start + base + (1 if rank_ < extra else 0)


def shard_batch(batch: Any, rank_: int, world: int) -> Any:
    """Rank ``rank_``'s block of rows of every tensor of ``batch`` whose dim 0 is the batch's B.

    Tensors, tuples, lists, dicts, NamedTuples and dataclasses are walked; other values and
    tensors with another leading size (a vocabulary, a scalar) are kept whole.
    """
    rows = batch_rows(batch)
    if rows is None or world == 1:
        return batch
    start, stop = shard_bounds(rows, rank_, world)

    def cut(obj):
        if isinstance(obj, torch.Tensor):
            return obj[start:stop] if obj.dim() and obj.shape[0] == rows else obj
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            return type(obj)(*(cut(v) for v in obj))
        if isinstance(obj, list | tuple):
            return type(obj)(cut(v) for v in obj)
        if isinstance(obj, dict):
            return type(obj)((k, cut(v)) for k, v in obj.items())
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            fields = {f.name: cut(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
            return dataclasses.replace(obj, **fields)
        return obj

    return cut(batch)


class ShardedBatches:
    """A batch source seen by one rank: its rows of every global batch (see module docstring).

    ``epoch(e, start)`` and ``len`` are those of ``source`` (or of a re-iterable of batches).
    Batches with fewer rows than ranks are skipped when ``skip_small`` (evaluation: the ranks
    with no row score nothing), else they raise.
    """

    def __init__(self, source, rank_: int, world: int, *, skip_small: bool = False) -> None:
        self.source = source
        self.rank = rank_
        self.world = world
        self.skip_small = skip_small

    def __len__(self) -> int:
        return len(self.source)

    def epoch(self, epoch: int, start: int = 0):
        if hasattr(self.source, "epoch"):
            batches = iter(self.source.epoch(epoch, start))
        else:
            batches = iter(self.source)
            for _ in range(start):
                next(batches, None)
        for batch in batches:
            rows = batch_rows(batch)
            if rows is not None and rows < self.world:
                if self.skip_small:
                    lo, hi = shard_bounds(rows, self.rank, self.world)
                    if lo == hi:
                        continue
                else:
                    raise InvalidInputError(
                        f"a batch of {rows} rows cannot be split over {self.world} processes; "
                        "use a larger --batch-size or fewer processes"
                    )
            yield shard_batch(batch, self.rank, self.world)

    def __iter__(self):
        return self.epoch(0, 0)
