r"""Character language model: predict the next character of a text.

Model (batch-first; B batch, T time steps, V vocabulary, E embedding, P recurrent output)::

    e_t = Embedding(x_t)                       (B, T, E)
    h_t = RNN(e_t, h_{t-1})                    (B, T, P)   any rnnkit cell, stacked, dropout
    z_t = W h_t + b                            (B, T, V)   W = embedding weight if tied (P = E)
    loss = -1/N sum_t log softmax(z_t)[y_t]    nats per character, N scored characters

Metrics: ``loss`` (nats/char), ``bpc = loss / ln 2`` (bits per character),
``perplexity = exp(loss)``. Targets that are ``<unk>`` (characters never seen in training) are
not scored; evaluation reports their number as ``unknown``.

Training from a text file or the default corpus is :func:`train_language_model`; sampling is
:func:`generate`; scoring a text is :func:`evaluate_text`.

Example::

    >>> import torch
    >>> lm = LanguageModel(vocab_size=10, embedding_size=8, hidden_size=16, num_layers=2)
    >>> x = torch.randint(1, 10, (3, 5))
    >>> logits, state = lm(x)
    >>> logits.shape
    torch.Size([3, 5, 10])
    >>> out = lm.step((x, x))
    >>> out.count, round(out.loss.item(), 1) > 0
    (15, True)
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit import distributed
from rnnkit.config import Config
from rnnkit.data.text import DEFAULT_CORPUS, StreamBatches, TextSplit, load_corpus, read_text
from rnnkit.data.vocab import CharVocab
from rnnkit.devices import device_of, to_device
from rnnkit.errors import InvalidInputError
from rnnkit.io import RunDir
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
from rnnkit.tasks.base import (
    CELLS,
    StepOutput,
    Task,
    check_field_types,
    check_layer_options,
    check_positive_ints,
)
from rnnkit.tasks.lm_defaults import LM_DEFAULTS, LM_TIME_BUDGET, size_aware
from rnnkit.tasks.ngram import ngram_bpc
from rnnkit.train import Callback, TrainConfig, TrainResult
from rnnkit.train.config import evaluation_interval


class LanguageModel(Task):
    """Embedding -> recurrent layer(s) -> linear decoder over the vocabulary.

    Args:
        vocab_size: V, including ``<unk>`` (id 0).
        embedding_size: E.
        hidden_size: H of every recurrent layer.
        num_layers: stacked recurrent layers.
        cell: ``lstm``, ``gru``, ``rnn`` (Elman) or ``irnn``.
        dropout: on the embeddings, between recurrent layers and before the decoder.
        tie_weights: share the embedding matrix with the decoder (needs E equal to the
            recurrent output size, H or ``proj_size``).
        layer_options: keyword arguments of the rnnkit layer (``peephole``, ``coupled``,
            ``layer_norm``, ``proj_size``, ``forget_bias``, ``reset_after``, ``nonlinearity``,
            ``init``, ``backend``, ``variational_dropout``, ``weight_drop``, ``zoneout``, …).
    """

    name = "lm"

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int = 64,
        hidden_size: int = 256,
        num_layers: int = 2,
        cell: str = "lstm",
        dropout: float = 0.0,
        tie_weights: bool = False,
        layer_options: dict | None = None,
    ) -> None:
        super().__init__()
        check_positive_ints(
            vocab_size=vocab_size,
            embedding_size=embedding_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
        )
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {cell!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.cell = cell
        self.dropout = dropout
        self.tie_weights = bool(tie_weights)
        self.layer_options = dict(layer_options or {})
        check_layer_options(self.layer_options)
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.rnn = make_layer(
            cell,
            embedding_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
            **self.layer_options,
        )
        out_size = self.layer_options.get("proj_size") or hidden_size
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.decoder = nn.Linear(out_size, vocab_size)
        if self.tie_weights:
            if out_size != embedding_size:
                raise ValueError(
                    f"tie_weights needs embedding_size == the recurrent output size, got "
                    f"embedding_size={embedding_size} and output size {out_size}; set "
                    f"--embedding-size {out_size} or drop --tie-weights"
                )
            self.decoder.weight = self.embedding.weight

    def forward(self, inputs: Tensor, state=None) -> tuple[Tensor, object]:
        """``inputs`` (B, T) int64 -> logits (B, T, V) and the new recurrent state."""
        output, state = self.rnn(self.drop(self.embedding(inputs)), state)
        return self.decoder(self.drop(output)), state

    def step(self, batch, state=None) -> StepOutput:
        inputs, targets = batch
        logits, state = self(inputs, state)
        known = targets != CharVocab.unknown_id
        count = int(known.sum())
        loss = F.cross_entropy(
            logits.reshape(-1, self.vocab_size),
            targets.reshape(-1),
            ignore_index=CharVocab.unknown_id,
            reduction="sum",
        ) / max(count, 1)
        unknown = targets.numel() - count
        return StepOutput(
            loss=loss,
            count=count,
            state=state,
            tokens=targets.numel(),
            stats={"unknown": float(unknown)},
        )

    def summarize(self, loss_sum: float, count: int, stats: dict[str, float]) -> dict[str, float]:
        loss = loss_sum / count if count else math.nan
        return {
            "loss": loss,
            "bpc": loss / math.log(2),
            "perplexity": math.exp(loss) if loss < 700 else math.inf,
            "characters": count,
            "unknown": int(stats.get("unknown", 0)),
        }

    def config(self) -> dict:
        return {
            "vocab_size": self.vocab_size,
            "embedding_size": self.embedding_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "cell": self.cell,
            "dropout": self.dropout,
            "tie_weights": self.tie_weights,
            "layer_options": self.layer_options,
        }

    def state_dict(self, *args, **kwargs):
        # Tied weights appear once in the file, under the embedding's name.
        sd = super().state_dict(*args, **kwargs)
        if self.tie_weights:
            sd.pop(kwargs.get("prefix", "") + "decoder.weight", None)
        return sd

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if self.tie_weights and "decoder.weight" not in state_dict:
            state_dict = {**state_dict, "decoder.weight": state_dict.get("embedding.weight")}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


# -- sampling ---------------------------------------------------------------------------------
@torch.no_grad()
def generate(
    model: LanguageModel,
    vocab: CharVocab,
    prime: str = "",
    length: int = 300,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
) -> Iterator[str]:
    """Yield ``length`` sampled characters, one at a time, continuing ``prime``.

    The prime is read through the model first (its characters are not yielded). Each next
    character is drawn from ``softmax(z / temperature)`` restricted to the ``top_k`` most
    likely characters; ``<unk>`` is never drawn. An empty prime starts from a newline (or the
    first character of the vocabulary if the text had none).

    Raises:
        ValueError: temperature <= 0, length < 0, top_k < 1.
        InvalidInputError: the prime has characters the model never saw (they are named).
    """
    if (
        not (isinstance(temperature, int | float) and math.isfinite(temperature))
        or temperature <= 0
    ):
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"length must be an integer >= 0, got {length!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    vocab.check_known(prime, "the prime text")
    if not prime:
        prime = "\n" if "\n" in vocab else vocab.tokens[1]
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else torch.seed())
    model.eval()
    device = device_of(model)
    logits, state = model(vocab.encode(prime).unsqueeze(0).to(device))
    for _ in range(length):
        z = logits[0, -1].double().cpu() / temperature  # drawn on the CPU: the seed's stream
        z[CharVocab.unknown_id] = -math.inf
        if top_k is not None and top_k < z.numel():
            kth = torch.topk(z, top_k).values[-1]
            z = z.masked_fill(z < kth, -math.inf)
        next_id = int(torch.multinomial(torch.softmax(z, dim=-1), 1, generator=generator))
        yield vocab.tokens[next_id]
        logits, state = model(torch.tensor([[next_id]], device=device), state)


# -- evaluation -------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_text(
    model: LanguageModel,
    vocab: CharVocab,
    text: str,
    *,
    batch_size: int = 32,
    bptt: int = 100,
    what: str = "text",
) -> dict:
    """Loss, bpc, perplexity of ``model`` on every character of ``text`` after the first.

    The text is read as ``batch_size`` streams; the few characters left over at the end are
    scored as a continuation of the last stream. Characters outside the vocabulary are fed as
    ``<unk>``, not scored, and counted in ``unknown``; ``unknown_chars`` lists up to 20.
    """
    ids = vocab.encode(text)
    if ids.numel() < 2:
        raise InvalidInputError(f"the {what} has {ids.numel()} character(s); need at least 2")
    streams = max(1, min(batch_size, (ids.numel() - 1) // bptt))
    batches = StreamBatches(ids, streams, bptt, drop_last=False, what=what)
    was_training = model.training
    model.eval()
    device = device_of(model)
    loss_sum, count, unknown, state = 0.0, 0, 0.0, None
    for batch in batches.epoch(0):
        out = model.step(to_device(batch, device), state)
        loss_sum, count = loss_sum + float(out.loss) * out.count, count + out.count
        unknown, state = unknown + out.stats["unknown"], out.state
    used = streams * ((ids.numel() - 1) // streams)
    if used < ids.numel() - 1:  # the tail continues the last stream, from its final state
        last = _select_last(state)
        tail = (ids[used:-1].unsqueeze(0), ids[used + 1 :].unsqueeze(0))
        out = model.step(to_device(tail, device), last)
        loss_sum, count = loss_sum + float(out.loss) * out.count, count + out.count
        unknown += out.stats["unknown"]
    model.train(was_training)
    metrics = model.summarize(loss_sum, count, {"unknown": unknown})
    metrics["unknown_chars"] = vocab.unknown_chars(text)[:20]
    return metrics


def _select_last(state):
    """The last batch row of a layer state ((L, B, H) tensors, possibly in tuples)."""
    if isinstance(state, Tensor):
        return state[:, -1:].contiguous()
    return type(state)(_select_last(s) for s in state)


# -- the language-model run ------------------------------------------------------------------
@dataclass
class TextData(Config):
    """How the text is read: source file (None: default corpus), split and batching."""

    text: str | None = field(
        default=None,
        metadata={"help": "UTF-8 text file (default: the tragedies)", "metavar": "FILE"},
    )
    val_fraction: float = field(
        default=0.1, metadata={"help": "last fraction of the text held out for validation"}
    )
    batch_size: int | None = field(
        default=None,
        metadata={
            "help": "parallel streams per batch (default: from the size of the training text, "
            "8 below 100,000 characters, else 32)",
            "metavar": "N",
        },
    )
    bptt: int = field(default=75, metadata={"help": "truncated-BPTT window, characters per step"})
    shift_windows: bool = field(
        default=True, metadata={"help": "start each epoch's windows at a different offset"}
    )

    def __post_init__(self) -> None:
        check_field_types(self)
        check_positive_ints(bptt=self.bptt)
        if self.batch_size is not None:
            check_positive_ints(batch_size=self.batch_size)
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")


@dataclass
class LMConfig(Config):
    """:class:`LanguageModel` arguments other than ``vocab_size`` (taken from the data)."""

    cell: str = field(default="lstm", metadata={"help": "recurrent cell"})
    embedding_size: int | None = field(
        default=None,
        metadata={
            "help": "embedding size E (default: from the size of the training text, 128 below "
            "100,000 characters, else 64; the hidden size with --tie-weights)",
            "metavar": "N",
        },
    )
    hidden_size: int | None = field(
        default=None,
        metadata={
            "help": "hidden units H per layer (default: from the size of the training text, "
            "128 below 100,000 characters, else 256)"
        },
    )
    num_layers: int | None = field(
        default=None,
        metadata={
            "help": "stacked recurrent layers (default: 1 below 100,000 training characters, "
            "else 2)"
        },
    )
    dropout: float | None = field(
        default=None,
        metadata={
            "help": "dropout on embeddings, between layers, before decoder (default: from the "
            "size of the training text, 0 to 0.3; the summary says which)"
        },
    )
    tie_weights: bool = field(
        default=False,
        metadata={"help": "share embedding and decoder weights (embedding size = hidden size)"},
    )
    layer_options: dict = field(default_factory=dict, metadata={"flag": False})

    def __post_init__(self) -> None:
        check_field_types(self)


@dataclass
class LMData(Prepared):
    """Prepared text: stream batches, the vocabulary (``encoders``) and the validation text."""

    val_text: str = ""
    chosen_batch: bool = False  # the number of streams came from the size of the text

    @property
    def vocab(self) -> CharVocab:
        return self.encoders


def prepare_data(data: TextData, seed: int, vocab: CharVocab | None = None) -> LMData:
    """Read and split the text, build (or reuse) the vocabulary, batch both parts."""
    text, source = load_corpus(data.text)
    if len(text) < data.bptt + 1:
        raise InvalidInputError(
            f"the text has {len(text)} characters, shorter than one window of --bptt "
            f"{data.bptt} + 1; use a longer text or a smaller --bptt"
        )
    split = TextSplit.of(text, data.val_fraction)
    if vocab is None:
        vocab = CharVocab.from_text(split.train)
    batch_size = data.batch_size or size_aware(len(split.train)).batch_size
    if data.batch_size is None and distributed.is_distributed():
        distributed.check_batch_size(batch_size)
    train = StreamBatches(
        vocab.encode(split.train),
        batch_size,
        data.bptt,
        offset_seed=seed if data.shift_windows else None,
        what="training part of the text",
    )
    val_ids = vocab.encode(split.val)
    if val_ids.numel() < 2:
        raise InvalidInputError(
            f"the validation part has {val_ids.numel()} character(s); use a longer text or a "
            "larger --val-fraction"
        )
    streams = max(1, min(batch_size, (val_ids.numel() - 1) // data.bptt))
    val = StreamBatches(
        val_ids, streams, data.bptt, drop_last=False, what="validation part of the text"
    )
    record = {
        "source": source,
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "characters": len(text),
        "train_characters": len(split.train),
        "val_characters": len(split.val),
        "vocab_size": len(vocab),
        "batch_size": batch_size,
    }
    return LMData(
        train=train,
        val=val,
        encoders=vocab,
        record=record,
        val_text=split.val,
        chosen_batch=data.batch_size is None,
    )


class TextStream:
    """Chunk-by-chunk reading of a text with the recurrent state carried: the log-probabilities
    of :meth:`feed` over consecutive chunks equal those of one call on the whole text."""

    def __init__(self, model: LanguageModel, vocab: CharVocab):
        self.model, self.vocab, self.state = model, vocab, None

    @torch.no_grad()
    def feed(self, text: str) -> Tensor:
        """``(len(text), V)`` log-probabilities of the character after each of ``text``'s."""
        if not text:
            raise ValueError("feed needs at least one character")
        self.model.eval()
        ids = self.vocab.encode(text).unsqueeze(0).to(device_of(self.model))
        logits, self.state = self.model(ids, self.state)
        return torch.log_softmax(logits[0].float(), dim=-1).cpu()

    def reset(self) -> None:
        self.state = None


class LMPredictor(Predictor):
    """A language model's run: :meth:`sample`, :meth:`generate` (characters as drawn),
    :meth:`score` (loss, bpc, perplexity of a text) and :meth:`stream`."""

    def generate(
        self,
        prime: str = "",
        length: int = 300,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
    ) -> Iterator[str]:
        """The characters :func:`generate` draws after ``prime``, one at a time."""
        if self.model.vocab_size != len(self.encoders):
            raise InvalidInputError(
                f"{self.run.path}: vocab.json has {len(self.encoders)} entries, the model "
                f"{self.model.vocab_size}"
            )
        self.encoders.check_known(prime, "the prime text")
        return generate(
            self.model, self.encoders, prime, length, temperature=temperature, top_k=top_k,
            seed=seed,
        )  # fmt: skip

    def sample(self, prime: str = "", length: int = 300, **options) -> str:
        """``length`` characters drawn after ``prime`` (options as :meth:`generate`)."""
        return "".join(self.generate(prime, length, **options))

    def score(self, text: str, *, batch_size: int = 32, bptt: int = 100) -> dict:
        """Loss (nats/char), bpc and perplexity of ``text`` (:func:`evaluate_text`)."""
        return evaluate_text(self.model, self.encoders, text, batch_size=batch_size, bptt=bptt)

    def stream(self) -> TextStream:
        return TextStream(self.model, self.encoders)


class LanguageModelSpec(TaskSpec):
    """The language model in the run lifecycle (:mod:`rnnkit.runs`): held out is the text's
    last ``val_fraction``; the encoders are ``vocab.json``."""

    name = "lm"
    task_class = LanguageModel
    data_config = TextData
    model_config = LMConfig
    encoders_file = "vocab.json"
    predictor = LMPredictor
    throughput_unit = "chars"

    def default_train(self) -> TrainConfig:
        return TrainConfig(time_budget=LM_TIME_BUDGET, **LM_DEFAULTS)

    def data_defaults(self, model: LMConfig, train: TrainConfig, prepared: LMData) -> tuple:
        """Each setting left None from the number of training characters
        (:func:`rnnkit.tasks.lm_defaults.size_aware`): width and depth, embedding size,
        dropout, weight decay (AdamW only; 0 otherwise) and the streams (chosen by
        :func:`prepare_data`); evaluation (when ``eval_every`` is None) once per epoch, at most
        every 500 steps."""
        chars = prepared.record["train_characters"]
        sized = size_aware(chars)
        chosen = []
        if model.num_layers is None or model.hidden_size is None:
            model = model.replace(
                num_layers=sized.num_layers if model.num_layers is None else model.num_layers,
                hidden_size=sized.hidden_size if model.hidden_size is None else model.hidden_size,
            )
            chosen.append(f"{model.num_layers}×{model.hidden_size} {model.cell}")
        if model.embedding_size is None:
            tied = model.layer_options.get("proj_size") or model.hidden_size
            model = model.replace(
                embedding_size=tied if model.tie_weights else sized.embedding_size
            )
            if not model.tie_weights:
                chosen.append(f"embedding {model.embedding_size}")
        if model.dropout is None:
            model = model.replace(dropout=sized.dropout)
            chosen.append(f"dropout {model.dropout:g}")
        if train.weight_decay is None:
            decay = sized.weight_decay if train.optimizer == "adamw" else 0.0
            train = train.replace(weight_decay=decay)
            if decay:
                chosen.append(f"weight decay {decay:g}")
        if prepared.chosen_batch:
            chosen.append(f"{prepared.record['batch_size']} streams")
        if train.eval_every is None:
            chosen.append(f"evaluation every {evaluation_interval(len(prepared.train)):,} steps")
        model, train, _ = super().data_defaults(model, train, prepared)
        if not chosen:
            return model, train, ""
        return model, train, f"{sized.corpus}: {chars:,} training characters → " + ", ".join(chosen)

    def saved_data(self, record: dict) -> TextData:
        # The text is read again from the absolute path the run recorded as its source.
        data = TextData.from_dict(record, strict=False)
        source = record.get("source")
        return data.replace(text=None if source in (None, DEFAULT_CORPUS) else source)

    def prepare(self, data: TextData, seed: int, *, encoders=None, split=None) -> LMData:
        return prepare_data(data, seed, vocab=encoders)

    def build(self, model: LMConfig, prepared: LMData) -> LanguageModel:
        return LanguageModel(vocab_size=len(prepared.vocab), **model.to_dict())

    def encoders_to_json(self, encoders: CharVocab) -> dict:
        return encoders.to_json()

    def encoders_from_json(self, obj: dict) -> CharVocab:
        return CharVocab.from_json(obj)

    def report(
        self,
        loaded: LoadedRun,
        prepared: LMData | None = None,
        *,
        data_file: str | None = None,
        batch_size: int | None = None,
        bptt: int | None = None,
        **_,
    ) -> dict:
        """Loss, bpc and perplexity on the validation part, or on every character of
        ``data_file``; on the validation part also ``baselines``, the bpc of the unigram and
        bigram models counted on the training part (:mod:`rnnkit.tasks.ngram`)."""
        data = loaded.config.get("data", {})
        if data_file is not None:
            text, what = read_text(data_file), f"text {data_file}"
        elif prepared is not None:
            text, what = prepared.val_text, f"validation part of {data.get('source')}"
        else:
            return {}
        metrics = evaluate_text(
            loaded.task,
            loaded.encoders,
            text,
            batch_size=batch_size or data.get("batch_size", 32),
            bptt=bptt or data.get("bptt", 75),
            what=what,
        )
        report = {"data": what, **metrics}
        if data_file is None:
            val_ids = loaded.encoders.encode(text)
            report["baselines"] = ngram_bpc(prepared.train.ids, val_ids, len(loaded.encoders))
        return report

    def export_model(self, loaded: LoadedRun):
        """Streaming: ``ids`` (B, T) and the state in, ``logits`` (B, T, V) and the next state
        out; checked by bpc (each validation window from a zero state)."""
        from rnnkit.export import StreamingModel, TaskExport, cross_entropy_sum

        stream = StreamingModel(loaded.task)
        V = loaded.task.vocab_size
        ids = torch.zeros(2, 3, dtype=torch.long)
        graph = stream.graph("ids", ids, {0: "batch", 1: "time"}, "logits", ["batch", "time", V])
        return TaskExport(
            [graph],
            sidecar={
                **stream.sidecar(),
                "ids": "token ids of encoders.tokens (0 is <unk>); next-token logits",
            },
            feed=lambda batch: stream.inputs("ids", batch[0]),
            score=lambda out, batch: (
                cross_entropy_sum(out[0], batch[1]) / math.log(2),
                batch[1].numel(),
            ),
            metric="bpc",
        )

    def headline(self, report: dict) -> Headline | None:
        if "bpc" not in report:
            return None
        base = report.get("baselines", {})
        name = min(base, key=base.get, default="bigram")
        return Headline("bpc", report["bpc"], False, name, base.get(name))

    def format_metrics(self, metrics: dict) -> str:
        return ""  # the held-out report scores every validation character; it is printed

    def format_evaluation(self, report: dict) -> dict:
        shown = {k: v for k, v in report.items() if k != "baselines"}
        for name, bpc in report.get("baselines", {}).items():
            shown[f"{name}_bpc"] = bpc
        return shown

    def format_report(self, report: dict) -> str:
        line = (
            f"{report['data']}: loss {report['loss']:.4f} nats/char, {report['bpc']:.3f} bpc, "
            f"perplexity {report['perplexity']:.2f}"
        )
        baselines = report.get("baselines")
        if not baselines:
            return line
        line += "\nbaselines counted on the training part: " + ", ".join(
            f"{name} {bpc:.3f} bpc" for name, bpc in baselines.items()
        )
        lost = [name for name, bpc in baselines.items() if report["bpc"] >= bpc]
        if lost:
            line += f"; the model LOSES to the {' and '.join(lost)} baseline" + "s" * (
                len(lost) > 1
            )
        return line


SPEC = LanguageModelSpec()


def train_language_model(
    out: str | os.PathLike,
    *,
    data: TextData | None = None,
    model: dict | LMConfig | None = None,
    train: TrainConfig | None = None,
    force: bool = False,
    callbacks: Sequence[Callback] = (),
) -> tuple[TrainResult, RunDir]:
    """Train a character language model into the run directory ``out``
    (:func:`rnnkit.runs.train_run` with :data:`SPEC`); default data: the embedded tragedies."""
    done = train_run(
        SPEC,
        out,
        data=data or TextData(),
        model=model,
        train=train,
        force=force,
        callbacks=callbacks,
    )
    return done.result, done.run


def resume_language_model(
    run_path: str | os.PathLike, *, limits: dict | None = None, callbacks: Sequence[Callback] = ()
) -> tuple[TrainResult, RunDir]:
    """Continue a language-model run (:func:`rnnkit.runs.resume_run`)."""
    done = resume_run(run_path, limits=limits, callbacks=callbacks, task="lm")
    return done.result, done.run


def load_language_model(run_path: str | os.PathLike) -> tuple[LanguageModel, CharVocab, dict]:
    """``(model, vocab, config)`` of a trained run, weights loaded, in eval mode."""
    loaded = load_run(run_path, task="lm")
    if loaded.task.vocab_size != len(loaded.encoders):
        raise InvalidInputError(
            f"{loaded.run.path}: vocab.json has {len(loaded.encoders)} entries, "
            f"the model {loaded.task.vocab_size}"
        )
    return loaded.task, loaded.encoders, loaded.config
