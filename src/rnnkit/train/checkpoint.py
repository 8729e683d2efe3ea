"""Exact-resume checkpoints without pickle: tensors in safetensors, everything else in JSON.

``trainer_state/`` holds everything needed to continue a run bit for bit::

    model.safetensors       weights at the checkpoint (the last ones, from which training resumes)
    best.safetensors        weights of the best validation loss so far (with validation data);
                            the run's top-level model.safetensors is a copy (it may lag on a crash)
    optimizer.safetensors   every optimiser state tensor, named "<param index>.<key>"
    tensors.safetensors     the torch CPU RNG state and the carried recurrent state (TBPTT)
    state.json              step, epoch, data position, elapsed time, schedule and early-stopping
                            state, the optimiser's non-tensor state, python and numpy RNG states

A checkpoint is written to ``trainer_state.tmp/`` and swapped in by renaming
(``trainer_state`` -> ``trainer_state.old``, ``trainer_state.tmp`` -> ``trainer_state``, then
``trainer_state.old`` is removed), so a kill at any moment leaves one complete checkpoint:
:func:`find_checkpoint` falls back to ``trainer_state.old`` if the kill came between the renames.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnkit.errors import InvalidInputError
from rnnkit.io import atomic_write_json, fsync_dir, load_tensors, read_json, save_tensors

FORMAT = 1


# -- nested recurrent state ----------------------------------------------------------------
def detach_state(state):
    """Detach every tensor of a nested state (tensor, tuple, NamedTuple, list, dict or None).

    Truncated BPTT: the next window starts from these values but its gradient stops here.
    """
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # NamedTuple (LSTMState)
        return type(state)(*(detach_state(s) for s in state))
    if isinstance(state, list | tuple):
        return type(state)(detach_state(s) for s in state)
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    raise TypeError(f"cannot detach a recurrent state of type {type(state).__name__}")


def flatten_state(state, prefix: str, tensors: dict[str, torch.Tensor]):
    """JSON structure of a nested state; its tensors are added to ``tensors`` by name."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        name = f"{prefix}"
        tensors[name] = state.detach()
        return {"tensor": name}
    if isinstance(state, list | tuple):
        return {"list": [flatten_state(s, f"{prefix}.{i}", tensors) for i, s in enumerate(state)]}
    if isinstance(state, dict):
        return {"dict": {k: flatten_state(v, f"{prefix}.{k}", tensors) for k, v in state.items()}}
    raise TypeError(f"cannot save a recurrent state of type {type(state).__name__}")


def unflatten_state(structure, tensors: dict[str, torch.Tensor]):
    """Inverse of :func:`flatten_state`; sequences come back as tuples."""
    if structure is None:
        return None
    if "tensor" in structure:
        return tensors[structure["tensor"]]
    if "list" in structure:
        return tuple(unflatten_state(s, tensors) for s in structure["list"])
    return {k: unflatten_state(v, tensors) for k, v in structure["dict"].items()}


# -- RNG --------------------------------------------------------------------------------------
def capture_rng(device: torch.device | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """(JSON part, tensor part) of the python, numpy and torch CPU RNG states.

    With a CUDA ``device`` the tensor part also holds that device's generator (``rng.cuda``),
    which draws the dropout masks of a GPU run.
    """
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    json_part = {
        "python": [version, list(internal), gauss],
        "numpy": [
            np_state[0],
            np_state[1].tolist(),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
    }
    tensors = {"rng.torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    return json_part, tensors


def restore_rng(json_part: dict, tensors: dict[str, torch.Tensor]) -> None:
    version, internal, gauss = json_part["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = json_part["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng.torch"])
    # A GPU run resumed on a GPU continues its CUDA stream; elsewhere there is none to set.
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch's CPU RNG."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- optimiser --------------------------------------------------------------------------------
def flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict, dict[str, torch.Tensor]]:
    """Split ``optimizer.state_dict()`` into JSON and named tensors."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    state_json: dict[str, dict] = {}
    for pid, entry in sd["state"].items():
        out = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                name = f"{pid}.{key}"
                tensors[name] = value
                out[key] = {"tensor": name}
            else:
                out[key] = {"value": value}
        state_json[str(pid)] = out
    return {"state": state_json, "param_groups": sd["param_groups"]}, tensors


def load_optimizer(optimizer: torch.optim.Optimizer, json_part: dict, tensors) -> None:
    state = {}
    for pid, entry in json_part["state"].items():
        state[int(pid)] = {
            key: tensors[v["tensor"]] if "tensor" in v else v["value"] for key, v in entry.items()
        }
    groups = []
    for saved, current in zip(json_part["param_groups"], optimizer.param_groups):
        group = dict(saved)
        for key, value in group.items():  # JSON turned tuples (betas) into lists
            if isinstance(current.get(key), tuple) and isinstance(value, list):
                group[key] = tuple(value)
        groups.append(group)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# -- the checkpoint directory -----------------------------------------------------------------
def find_checkpoint(run_path: Path) -> Path | None:
    """The complete checkpoint folder of a run, or None."""
    for name in ("trainer_state", "trainer_state.old"):
        folder = run_path / name
        if (folder / "state.json").is_file():
            return folder
    return None


def write_checkpoint(
    run_path: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    carry: Any,
    state: dict,
    device: torch.device | None = None,
    ranks: Sequence[tuple[Any, dict, dict[str, torch.Tensor]]] = (),
    best: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write ``trainer_state/`` atomically (see module docstring); ``state`` is JSON-able.

    ``carry`` and the RNG states captured here are this process's (rank 0's). Under data
    parallelism ``ranks`` holds ``(carry, rng_json, rng_tensors)`` of ranks 1, 2, …: their
    tensors are stored as ``rank<r>.<name>`` and their structure in ``state.json``'s ``ranks``.
    ``best``: the weights of the best validation loss so far (``best.safetensors``), if any.
    """
    tmp, final, old = (run_path / f"trainer_state{s}" for s in (".tmp", "", ".old"))
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_tensors(tmp / "model.safetensors", model.state_dict())
    if best is not None:
        save_tensors(tmp / "best.safetensors", best)
    opt_json, opt_tensors = flatten_optimizer(optimizer)
    save_tensors(tmp / "optimizer.safetensors", opt_tensors)
    tensors: dict[str, torch.Tensor] = {}
    rng_json, rng_tensors = capture_rng(device)
    tensors.update(rng_tensors)
    carry_json = flatten_state(carry, "carry", tensors)
    others = []
    for r, (rank_carry, rank_rng_json, rank_rng_tensors) in enumerate(ranks, start=1):
        tensors.update({f"rank{r}.{k}": v for k, v in rank_rng_tensors.items()})
        others.append(
            {"carry": flatten_state(rank_carry, f"rank{r}.carry", tensors), "rng": rank_rng_json}
        )
    save_tensors(tmp / "tensors.safetensors", tensors)
    record = {
        "format": FORMAT,
        **state,
        "carry": carry_json,
        "rng": rng_json,
        "optimizer": opt_json,
    }
    if others:
        record["ranks"] = others
    atomic_write_json(tmp / "state.json", record)
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
    tmp.rename(final)
    fsync_dir(run_path)  # both renames reach the disk before the old checkpoint goes
    if old.exists():
        shutil.rmtree(old)


def read_checkpoint(run_path: Path) -> dict:
    """Load a checkpoint: ``{"state", "model", "best", "optimizer", "tensors", "carry",
    "ranks"}`` (``best``: the best weights so far, or None).

    RNG states are returned in ``state["rng"]`` / ``tensors`` and restored by the caller with
    :func:`restore_rng` at the moment training continues. ``ranks`` lists, for ranks 1, 2, …
    of a data-parallel run, ``{"carry", "rng", "tensors"}`` (its RNG tensors without prefix).
    """
    folder = find_checkpoint(run_path)
    if folder is None:
        raise InvalidInputError(
            f"{run_path} has no trainer_state/ to resume from; start a new run with --force"
        )
    state = read_json(folder / "state.json")
    if state.get("format") != FORMAT:
        raise InvalidInputError(
            f"{folder} has checkpoint format {state.get('format')!r}, "
            f"this rnnkit reads format {FORMAT}"
        )
    tensors = load_tensors(folder / "tensors.safetensors")
    best = folder / "best.safetensors"
    return {
        "state": state,
        "model": load_tensors(folder / "model.safetensors"),
        "best": load_tensors(best) if best.is_file() else None,
        "optimizer": load_tensors(folder / "optimizer.safetensors"),
        "tensors": tensors,
        "carry": unflatten_state(state["carry"], tensors),
        "ranks": [
            {
                "carry": unflatten_state(part["carry"], tensors),
                "rng": part["rng"],
                "tensors": {
                    k.split(".", 1)[1]: v
                    for k, v in tensors.items()
                    if k.startswith(f"rank{r}.rng.")
                },
            }
            for r, part in enumerate(state.get("ranks", []), start=1)
        ],
    }
