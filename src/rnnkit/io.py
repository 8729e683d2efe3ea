"""Files on disk: atomic writes, safetensors with a checksum, JSON, and run directories.

Every file is written to a temporary name in the same directory, flushed, fsynced and renamed
over the target with :func:`os.replace`, so a crash or ``SIGKILL`` leaves either the old file or
the new one, never half of one. Nothing is pickled: tensors go to safetensors, everything else to
JSON, and loading never executes code from a file.

Weights written by :func:`save_tensors` carry a SHA-256 of their tensor bytes in the safetensors
metadata; :func:`load_tensors` recomputes it, so a truncated *or* bit-flipped file is reported
instead of silently loaded.

A run directory (see ``DESIGN.md``, "Runs on disk") holds ``config.json``, ``model.safetensors``,
``metrics.jsonl``, the task's encoders (``vocab.json`` …) and ``trainer_state/``.
:class:`RunDir` names those files, creates a run safely (``--force``/``--resume`` rules) and
checks that a directory is a run before anything reads it.

Example::

    >>> import tempfile, torch
    >>> from rnnkit.io import atomic_write_json, read_json, save_tensors, load_tensors
    >>> d = tempfile.mkdtemp()
    >>> atomic_write_json(f"{d}/a.json", {"x": 1})
    >>> read_json(f"{d}/a.json")
    {'x': 1}
    >>> save_tensors(f"{d}/w.safetensors", {"w": torch.ones(2)})
    >>> load_tensors(f"{d}/w.safetensors")["w"]
    tensor([1., 1.])
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from rnnkit import __version__
from rnnkit.errors import InvalidInputError

CHECKSUM_KEY = "rnnkit_sha256"


def cache_root() -> Path | None:
    """rnnkit's cache folder (parsed music, compiled CPU kernels): ``$RNNKIT_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/rnnkit``, else ``~/.cache/rnnkit``; None when ``RNNKIT_CACHE_DIR`` is
    ``off`` (or empty, ``0``, ``none``)."""
    chosen = os.environ.get("RNNKIT_CACHE_DIR")
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "off", "0", "none") else Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rnnkit"


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so that renames inside it survive a power loss (where supported)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory
    finally:
        os.close(fd)


# -- atomic writes ---------------------------------------------------------------------------
def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created with mode 0o666 so the process's umask applies, as for any new file (mkstemp's
    # 0600 would need the umask, and reading it means changing it process-wide).
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)  # the rename itself survives a power loss
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def to_json(obj) -> str:
    """JSON text, UTF-8 kept readable; non-finite floats become ``null`` (strict JSON)."""
    text = json.dumps(_finite(obj), ensure_ascii=False, indent=2, allow_nan=False)
    return _escape_surrogates(text) + "\n"


def _escape_surrogates(text: str) -> str:
    """A file name that is not valid UTF-8 reaches Python as lone surrogates (``\\udcff``,
    PEP 383); write them as JSON escapes so the text is valid UTF-8 and ``json.loads`` gives the
    same name back. JSON has already escaped real backslashes, so each ``\\uXXXX`` is new."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def json_line(obj) -> str:
    """``obj`` as one line of strict JSON (``--json`` output), without the newline.

    A non-finite float becomes ``null``; if ``obj`` is a mapping, the reason is added under
    ``"non_finite"``: the dotted path of each such value and what it was (``"nan"``, ``"inf"``,
    ``"-inf"``), so a script can tell a missing number from a diverged one.

    >>> json_line({"loss": float("nan"), "acc": [0.5, float("inf")]})
    '{"loss": null, "acc": [0.5, null], "non_finite": {"loss": "nan", "acc.1": "inf"}}'
    """
    found: dict[str, str] = {}
    clean = _finite(obj, found, "")
    if found and isinstance(clean, dict):
        clean["non_finite"] = found
    return _escape_surrogates(json.dumps(clean, ensure_ascii=False, allow_nan=False))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON atomically."""
    atomic_write_text(path, to_json(obj))


def read_json(path: str | os.PathLike):
    """Read a JSON file; a missing or malformed file raises :class:`InvalidInputError`."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"{path} is missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{path} is not valid JSON ({exc}); restore or delete it") from None


def append_jsonl(path: str | os.PathLike, record: Mapping) -> None:
    """Append one JSON object as a line and fsync it (one line per call, never partial JSON)."""
    line = json.dumps(_finite(dict(record)), ensure_ascii=False, allow_nan=False) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def write_jsonl(path: str | os.PathLike, records) -> None:
    """Replace ``path`` atomically with one JSON line per record."""
    lines = (json.dumps(_finite(dict(r)), ensure_ascii=False, allow_nan=False) for r in records)
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All complete JSON lines of ``path`` (a torn last line from a crash is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _finite(obj, found: dict[str, str] | None = None, where: str = ""):
    """``obj`` with non-finite floats (numpy and torch scalars too) as None; their dotted paths
    and values go into ``found`` when given."""
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:
        obj = obj.item()  # numpy / torch scalars
    if isinstance(obj, float) and not math.isfinite(obj):
        if found is not None:
            found[where or "value"] = str(obj)
        return None
    if isinstance(obj, Mapping):
        return {
            str(k): _finite(v, found, f"{where}.{k}" if where else str(k)) for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [_finite(v, found, f"{where}.{i}" if where else str(i)) for i, v in enumerate(obj)]
    return obj


# -- safetensors -----------------------------------------------------------------------------
def _digest(tensors: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode("utf-8"))
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_tensors(
    path: str | os.PathLike,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Save named tensors to safetensors atomically, with a checksum in the metadata.

    Tensors that share storage (tied weights) are cloned so each name is stored in full.
    """
    plain = {name: t.detach().cpu().contiguous().clone() for name, t in tensors.items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta[CHECKSUM_KEY] = _digest(plain)
    atomic_write_bytes(path, _st_save(plain, metadata=meta))


def load_tensors(path: str | os.PathLike, *, trust: bool = False) -> dict[str, torch.Tensor]:
    """Load a safetensors file written by :func:`save_tensors`, verifying its checksum.

    A file without rnnkit's checksum (written elsewhere, or edited) is refused unless
    ``trust`` (``--trust`` on the command line).

    Raises:
        InvalidInputError: the file is missing, truncated, corrupted, has no checksum (without
            ``trust``) or its checksum differs.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path} is missing")
    data = path.read_bytes()
    try:
        tensors = _st_load(data)
        meta = _read_metadata(data)
    except (SafetensorError, ValueError, RuntimeError, OSError) as exc:
        raise InvalidInputError(
            f"{path} is truncated or corrupted ({str(exc).splitlines()[0]}); "
            "restore it or train again"
        ) from None
    expected = meta.get(CHECKSUM_KEY)
    if expected is None and not trust:
        raise InvalidInputError(
            f"{path} has no rnnkit checksum ({CHECKSUM_KEY}): rnnkit did not write it or it "
            "was altered; pass --trust to load it anyway"
        )
    if expected is not None and expected != _digest(tensors):
        raise InvalidInputError(
            f"{path} is corrupted (checksum mismatch); restore it or train again"
        )
    return tensors


def _read_metadata(data: bytes) -> dict[str, str]:
    if len(data) < 8:
        raise ValueError("file shorter than its 8-byte header length")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError("header longer than the file")
    header = json.loads(data[8 : 8 + n])
    return header.get("__metadata__", {}) or {}


# Safetensors caps its JSON header at 100 MB; a larger length is a crafted or corrupted file.
_MAX_HEADER = 100_000_000


def tensor_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` from a safetensors file's header, reading only the header (a crafted
    file cannot make this allocate more than its header's size).

    Raises:
        InvalidInputError: the file is missing or its header is malformed.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            size = os.fstat(f.fileno()).st_size
            if n < 2 or n > min(size - 8, _MAX_HEADER):
                raise ValueError("bad header length")
            header = json.loads(f.read(n))
        shapes = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            shape = entry["shape"]
            if not all(isinstance(d, int) and d >= 0 for d in shape):
                raise ValueError(f"bad shape for {name}")
            shapes[name] = tuple(shape)
        return shapes
    except FileNotFoundError:
        raise InvalidInputError(f"{path} is missing") from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InvalidInputError(
            f"{path} is truncated or corrupted ({exc}); restore it or train again"
        ) from None


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- run directories -------------------------------------------------------------------------
class RunDir:
    """A training run on disk and the names of its files.

    ``config.json`` marks a directory as a run: it records the task (``config["task"]``), every
    hyperparameter, the data source, and the rnnkit and torch versions.
    """

    CONFIG = "config.json"
    MODEL = "model.safetensors"
    METRICS = "metrics.jsonl"
    TRAINER_STATE = "trainer_state"
    SPLIT = "split.json"  # which examples are train / val / test
    TEST_METRICS = "test_metrics.json"  # the held-out report
    # Names earlier runs used for the same files; read when the current name is absent.
    LEGACY = {SPLIT: ("splits.json",), TEST_METRICS: ("report.json",)}

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def model_path(self) -> Path:
        return self.path / self.MODEL

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def trainer_state_path(self) -> Path:
        return self.path / self.TRAINER_STATE

    @property
    def split_path(self) -> Path:
        return self._existing(self.SPLIT)

    @property
    def test_metrics_path(self) -> Path:
        return self._existing(self.TEST_METRICS)

    def _existing(self, name: str) -> Path:
        """``name`` in the run, or the earlier name of that file if only it exists."""
        path = self.path / name
        if not path.exists():
            for old in self.LEGACY.get(name, ()):
                if (self.path / old).exists():
                    return self.path / old
        return path

    def is_run(self) -> bool:
        return self.config_path.is_file()

    def is_rnnkit_run(self, tasks=None) -> bool:
        """Whether this directory is a run rnnkit wrote: ``config.json`` is a JSON object with
        a ``task`` (one of ``tasks`` when given) and the rnnkit version (``versions.rnnkit``),
        which every run records. Only such a directory may be replaced by ``--force``."""
        try:
            config = json.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return False
        if not isinstance(config, dict) or not isinstance(config.get("task"), str):
            return False
        if tasks is not None and config["task"] not in tasks:
            return False
        versions_ = config.get("versions")
        return isinstance(versions_, dict) and isinstance(versions_.get("rnnkit"), str)

    def check(self) -> RunDir:
        """Raise :class:`InvalidInputError` unless this is a run directory with weights."""
        if not self.path.exists():
            raise InvalidInputError(f"run directory {self.path} does not exist")
        if not self.path.is_dir():
            raise InvalidInputError(f"{self.path} is not a directory; pass a run directory")
        if not self.is_run():
            raise InvalidInputError(
                f"{self.path} is not a run directory (no {self.CONFIG}); "
                "pass the --out directory of a training run"
            )
        if not self.model_path.is_file():
            raise InvalidInputError(
                f"{self.path} has no {self.MODEL}; the run never reached a checkpoint"
            )
        return self

    # -- config -------------------------------------------------------------------------------
    def read_config(self) -> dict:
        config = read_json(self.config_path)
        if not isinstance(config, dict) or "task" not in config:
            raise InvalidInputError(f"{self.config_path} has no 'task'; it is not an rnnkit run")
        return config

    def write_config(self, config: Mapping) -> None:
        record = dict(config)
        record.setdefault("versions", versions())
        atomic_write_json(self.config_path, record)

    def load_weights(self, *, trust: bool = False) -> dict[str, torch.Tensor]:
        return load_tensors(self.model_path, trust=trust)

    def save_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        save_tensors(self.model_path, state_dict)

    # -- creation -----------------------------------------------------------------------------
    @classmethod
    def prepare(cls, path: str | os.PathLike, *, force: bool = False, tasks=None) -> RunDir:
        """Check that a new run may be written to ``path``; nothing is changed yet.

        Raises :class:`InvalidInputError` if ``path`` exists and is not empty without ``force``,
        or exists and is not a run directory; ``--force`` never replaces the working directory.
        Call :meth:`check_replaceable` once the inputs have been validated, then :meth:`create`.
        """
        run = cls(path)
        run.tasks = tasks
        p = run.path
        if p.exists() and not p.is_dir():
            raise InvalidInputError(f"--out {p} is a file; choose a directory")
        if p.is_dir() and any(p.iterdir()):
            if not run.is_run():
                raise InvalidInputError(
                    f"--out {p} exists, is not empty and is not a run directory; "
                    "choose another --out"
                )
            if not force:
                raise InvalidInputError(
                    f"--out {p} already holds a run; pass --force to replace it "
                    f"or --resume {p} to continue it"
                )
            cwd = Path.cwd().resolve()
            if p.resolve() == cwd or p.resolve() in cwd.parents:
                raise InvalidInputError(
                    f"--out {p} is the working directory or holds it; --force cannot replace "
                    "it, choose another --out"
                )
        return run

    def check_replaceable(self) -> None:
        """Raise :class:`InvalidInputError` if the directory holds files and is not a run rnnkit
        wrote (:meth:`is_rnnkit_run`): ``--force`` never deletes arbitrary folders (a project
        with a ``config.json``, another library's model folder)."""
        p = self.path
        if p.is_dir() and any(p.iterdir()) and not self.is_rnnkit_run(getattr(self, "tasks", None)):
            raise InvalidInputError(
                f"--out {p} is not an rnnkit run directory (its config.json has no known task "
                "and rnnkit version), so --force does not replace it; choose another --out"
            )

    @classmethod
    def for_resume(cls, path: str | os.PathLike) -> RunDir:
        """The run at ``path`` to continue; :class:`InvalidInputError` if it is not a run."""
        run = cls(path)
        if not run.path.is_dir() or not run.is_run():
            raise InvalidInputError(
                f"--resume {run.path} is not a run directory (no config.json); "
                "pass the --out directory of an earlier run"
            )
        return run

    def create(self) -> RunDir:
        """Make the directory. A run being replaced (checked by :meth:`prepare`) is moved
        aside to ``<path>.replaced-<pid>`` (:attr:`replaced`), not deleted: call
        :meth:`discard_replaced` once the new run has a checkpoint, or
        :meth:`restore_replaced` if it fails first."""
        self.replaced: Path | None = None
        if self.path.is_dir() and self.is_run():
            self.check_replaceable()
            self.lock()  # nobody trains or resumes the run being replaced
            aside = self.path.with_name(f"{self.path.name}.replaced-{os.getpid()}")
            if aside.exists():
                shutil.rmtree(aside)
            os.replace(self.path, aside)
            fsync_dir(self.path.parent)
            self.replaced = aside
            self.unlock()
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    # -- one writer ---------------------------------------------------------------------------
    LOCK = ".lock"

    def lock(self) -> RunDir:
        """Take the run's advisory lock (``flock`` on ``.lock``, which records the holder's pid)
        for as long as this process writes it; :meth:`unlock` releases it (so does exit).

        Raises:
            InvalidInputError: another process holds it (``RUN is in use by pid N``).
        """
        if getattr(self, "_lock_fd", None) is not None:
            return self
        try:
            import fcntl
        except ImportError:  # no flock on this platform: one writer is the user's care
            return self
        fd = os.open(self.path / self.LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise InvalidInputError(
                f"{self.path} is in use by pid {holder}; wait for that process to finish or "
                "stop it, then try again"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        self.clean_stale()
        return self

    def clean_stale(self) -> None:
        """Remove what a killed writer left: temporary files of atomic writes (``.*.tmp``) and
        a half-written ``trainer_state.tmp/``. Only the lock holder calls this."""
        for folder in (self.path, self.path / self.TRAINER_STATE, self.path / "trainer_state.old"):
            if folder.is_dir():
                for stale in folder.glob(".*.tmp"):
                    with contextlib.suppress(OSError):
                        stale.unlink()
        shutil.rmtree(self.path / "trainer_state.tmp", ignore_errors=True)

    def unlock(self) -> None:
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            os.close(fd)  # closing the last descriptor releases the flock
            self._lock_fd = None

    def discard_replaced(self) -> None:
        """Delete the run this one replaced (its new run has a checkpoint now)."""
        aside = getattr(self, "replaced", None)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
            self.replaced = None

    def restore_replaced(self) -> None:
        """Put the replaced run back at :attr:`path` (the new one failed before a checkpoint)."""
        aside = getattr(self, "replaced", None)
        if aside is not None and aside.is_dir():
            shutil.rmtree(self.path, ignore_errors=True)
            os.replace(aside, self.path)
            fsync_dir(self.path.parent)
            self.replaced = None


def versions() -> dict[str, str]:
    """Versions recorded in every run's config."""
    import platform

    import numpy

    return {
        "rnnkit": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
