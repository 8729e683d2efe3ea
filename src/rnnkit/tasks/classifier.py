r"""Sequence classification (many-to-one): encoder of any rnnkit layer, pooling, linear head.

Pipeline, for token ids or numeric series of variable length::

    e = Embedding(ids)            or   e = x                         (B, T, E) or (B, T, C)
                                  (training: each id -> <unk> with prob. token_dropout)
    e = ReLU(Conv1d_stride(e))    (optional front end: T' = ⌊(T + 2⌊k/2⌋ − k) / s⌋ + 1)
    h = RNN(e, lengths)           any rnnkit layer, stacked, uni- or bidirectional   (B, T', D·H)
    z = pool(h)                   last | mean | max | attention over the valid steps  (B, D·H)
    logits = W dropout(z) + b                                                          (B, K)

Pooling over valid steps ``t < L_b``:

- ``last``: the layer's final state — forward direction after step L_b − 1, backward direction
  after reading back to step 0 (both top layer, concatenated);
- ``mean``: ``(1/L_b) Σ_t h_t``; ``max``: ``max_t h_t`` per feature;
- ``attention``: ``α = softmax_t(vᵀ tanh(W h_t + b))``, ``z = Σ_t α_t h_t`` (Yang et al. 2016).

Loss: cross-entropy with optional class weights (``balanced``: ``w_k = N / (K · N_k)``).

Members (``members = M > 1``, an ensemble for small data): M copies of the whole pipeline,
initialised independently; the logits are the log of their mean probabilities,
``log (1/M) Σ_m softmax(logits_m)``, so softmax and argmax give the averaged prediction. In
training each member reads its own batch order (a :class:`~rnnkit.data.batching.MemberBatch`
per step; one plain batch serves them all), the loss is the sum of the members' own losses and
each member's gradient is clipped on its own (:meth:`Classifier.clip_groups`), so every member
learns as if it trained alone (Lakshminarayanan et al. 2017). Evaluation scores the averaged
prediction.

Metrics: accuracy, macro-F1 (mean of ``2TP / (2TP + FP + FN)`` over the classes that occur as
a true or a predicted label), and the
confusion matrix (rows true class, columns predicted).

Shapes: B batch, T padded length, E embedding size, C channels, H hidden size, D directions,
K classes.

Example::

    >>> model = Classifier(ClassifierConfig(num_classes=3, vocab_size=100, hidden_size=16))
    >>> ids = torch.randint(1, 100, (4, 7)); lengths = torch.tensor([7, 5, 3, 1])
    >>> model(ids, lengths).shape
    torch.Size([4, 3])
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.config import Config
from rnnkit.data.batching import MemberBatch
from rnnkit.devices import device_of
from rnnkit.layers import make_layer
from rnnkit.tasks.base import CELLS, StepOutput, Task, check_field_types, check_layer_options

log = logging.getLogger(__name__)

POOLINGS = ("last", "mean", "max", "attention")


@dataclass
class ClassifierConfig(Config):
    """Everything that defines a :class:`Classifier`; saved in a run's ``config.json``.

    Exactly one of ``vocab_size`` (token input, an embedding layer) and ``input_size`` (numeric
    series with that many channels) is set. ``layer_options`` go to
    :func:`rnnkit.layers.make_layer` (``peephole``, ``layer_norm``, ``backend``, …).
    """

    num_classes: int
    vocab_size: int | None = None
    input_size: int | None = None
    embedding_size: int = 128
    padding_idx: int = 0
    unknown_idx: int = 1
    token_dropout: float = 0.0  # training: each token becomes unknown_idx with this probability
    freeze_embeddings: bool = False
    cell: str = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.0  # between stacked recurrent layers
    input_dropout: float = 0.0  # on embeddings / inputs
    output_dropout: float = 0.0  # on the pooled vector
    pooling: str = "last"
    conv_channels: int = 0  # 0: no convolutional front end
    conv_kernel_size: int = 3
    conv_stride: int = 1
    members: int = 1  # > 1: an ensemble of this many independently initialised copies
    layer_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_field_types(self)
        if (self.vocab_size is None) == (self.input_size is None):
            raise ValueError("set exactly one of vocab_size (token input) and input_size (series)")
        for name in ("num_classes", "embedding_size", "hidden_size", "num_layers", "members"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; got {self.num_classes}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}; got {self.pooling!r}")
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}; got {self.cell!r}")
        if self.conv_channels < 0 or self.conv_kernel_size < 1 or self.conv_stride < 1:
            raise ValueError(
                "conv_channels must be >= 0, conv_kernel_size and conv_stride >= 1; got "
                f"{self.conv_channels}, {self.conv_kernel_size}, {self.conv_stride}"
            )
        for name in ("dropout", "input_dropout", "output_dropout", "token_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {getattr(self, name)}")
        if self.vocab_size is not None:
            for name in ("padding_idx", "unknown_idx"):
                if not 0 <= getattr(self, name) < self.vocab_size:
                    raise ValueError(
                        f"{name} must be in [0, vocab_size {self.vocab_size}); "
                        f"got {getattr(self, name)}"
                    )

    @classmethod
    def from_dict(cls, obj: dict, *, strict: bool = True) -> ClassifierConfig:
        known = set(cls.field_names())
        unknown = sorted(set(obj) - known)
        if unknown and strict:
            raise ValueError(
                f"unknown classifier config keys {unknown}; known keys are {sorted(known)}"
            )
        return cls(**{k: v for k, v in obj.items() if k in known})


class Classifier(Task):
    """Sequence classifier; see the module docstring for the equations and shapes.

    As a :class:`~rnnkit.tasks.base.Task`, a batch is ``(inputs, lengths, targets)``;
    evaluation reports ``loss``, ``accuracy`` and ``macro_f1`` (:meth:`summarize`).

    Args:
        config: a :class:`ClassifierConfig` (kept as ``self.settings``; ``self.config()``
            returns it as a dict, the :class:`~rnnkit.tasks.base.Task` contract).
        class_weights: optional (K,) weights for the cross-entropy (see :func:`class_weights`).
        embeddings: optional (V, E) pretrained rows for the embedding (token input only).
    """

    def __init__(
        self,
        config: ClassifierConfig,
        class_weights: Tensor | None = None,
        embeddings: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.settings = c = config
        if c.members > 1:
            one = c.replace(members=1)
            self.members = nn.ModuleList(
                Classifier(one, class_weights, embeddings) for _ in range(c.members)
            )
            self.register_buffer("class_weights", self.members[0].class_weights.clone())
            return
        self.members = None
        if c.vocab_size is not None:
            self.embedding = nn.Embedding(c.vocab_size, c.embedding_size, padding_idx=c.padding_idx)
            if embeddings is not None:
                if tuple(embeddings.shape) != (c.vocab_size, c.embedding_size):
                    raise ValueError(
                        f"embeddings must have shape ({c.vocab_size}, {c.embedding_size}); "
                        f"got {tuple(embeddings.shape)}"
                    )
                with torch.no_grad():
                    self.embedding.weight.copy_(embeddings)
            self.embedding.weight.requires_grad_(not c.freeze_embeddings)
            features = c.embedding_size
        else:
            self.embedding = None
            features = c.input_size
        self.input_dropout = nn.Dropout(c.input_dropout)
        if c.conv_channels:
            self.conv = nn.Conv1d(
                features,
                c.conv_channels,
                c.conv_kernel_size,
                stride=c.conv_stride,
                padding=c.conv_kernel_size // 2,
            )
            features = c.conv_channels
        else:
            self.conv = None
        check_layer_options(c.layer_options)
        self.encoder = make_layer(
            c.cell,
            features,
            c.hidden_size,
            num_layers=c.num_layers,
            bidirectional=c.bidirectional,
            dropout=c.dropout,
            batch_first=True,
            **c.layer_options,
        )
        directions = 2 if c.bidirectional else 1
        proj = int(c.layer_options.get("proj_size", 0) or 0)
        pooled = directions * (proj or c.hidden_size)
        if c.pooling == "attention":
            self.attention = nn.Sequential(
                nn.Linear(pooled, pooled), nn.Tanh(), nn.Linear(pooled, 1, bias=False)
            )
        else:
            self.attention = None
        self.output_dropout = nn.Dropout(c.output_dropout)
        self.head = nn.Linear(pooled, c.num_classes)
        if class_weights is not None:
            class_weights = torch.as_tensor(class_weights, dtype=torch.float32)
            if class_weights.shape != (c.num_classes,):
                raise ValueError(
                    f"class_weights must have shape ({c.num_classes},); "
                    f"got {tuple(class_weights.shape)}"
                )
        # Saved with the weights so a loaded model computes the same loss.
        self.register_buffer(
            "class_weights",
            class_weights if class_weights is not None else torch.ones(c.num_classes),
        )

    name = "classify"

    def config(self) -> dict:
        return self.settings.to_dict()

    @classmethod
    def from_config(cls, config: dict) -> Classifier:
        return cls(ClassifierConfig.from_dict(config))

    def step(self, batch, state=None) -> StepOutput:
        """Loss on one ``(inputs, lengths, targets)`` batch, with confusion counts as stats."""
        if isinstance(batch, MemberBatch):  # an ensemble in training: a batch per member
            return self._member_step(batch)
        inputs, lengths, targets = batch
        if self.members is not None and self.training:  # one batch for every member
            return self._member_step(MemberBatch([batch] * len(self.members)))
        logits = self(inputs, lengths)
        loss = self.loss(logits, targets)
        K = self.settings.num_classes
        predictions = logits.detach().argmax(dim=-1)
        cells = torch.bincount(targets * K + predictions, minlength=K * K).tolist()
        stats = {f"confusion_{i // K}_{i % K}": float(n) for i, n in enumerate(cells) if n}
        return StepOutput(
            loss=loss,
            count=len(targets),
            stats=stats,
            tokens=int(torch.as_tensor(lengths).sum()),
        )

    def _member_step(self, batches: MemberBatch) -> StepOutput:
        """Training an ensemble: member m's loss on ``batches[m]``, summed (see the module
        docstring); ``count`` is the first member's batch, ``tokens`` every member's steps."""
        if self.members is None or len(batches) != len(self.members):
            have = 1 if self.members is None else len(self.members)
            raise ValueError(f"{len(batches)} member batches for {have} members")
        losses = [
            member.loss(member(inputs, lengths), targets)
            for member, (inputs, lengths, targets) in zip(self.members, batches)
        ]
        return StepOutput(
            loss=torch.stack(losses).sum(),
            count=len(batches[0][2]),
            tokens=sum(int(torch.as_tensor(b[1]).sum()) for b in batches),
        )

    def clip_groups(self) -> list[list[nn.Parameter]] | None:
        """One group per member (None without members): each member's gradient is clipped
        alone, as it would be if it trained alone."""
        if self.members is None:
            return None
        return [list(member.parameters()) for member in self.members]

    def summarize(self, loss_sum: float, count: int, stats: dict[str, float]) -> dict:
        """``loss`` (mean per sequence), ``accuracy`` and ``macro_f1`` from evaluation sums."""
        cm = self.confusion_from_stats(stats)
        scores = metrics_from_confusion(cm)
        return {
            "loss": loss_sum / count if count else float("nan"),
            "accuracy": scores["accuracy"],
            "macro_f1": scores["macro_f1"],
        }

    def confusion_from_stats(self, stats: dict[str, float]) -> np.ndarray:
        K = self.settings.num_classes
        cm = np.zeros((K, K), dtype=np.int64)
        for key, value in stats.items():
            if key.startswith("confusion_"):
                i, j = (int(v) for v in key.split("_")[1:])
                cm[i, j] = int(value)
        return cm

    def conv_lengths(self, lengths: Tensor) -> Tensor:
        """Valid lengths after the front end: ``⌊(L + 2p − k)/s⌋ + 1``, at least 1."""
        if self.conv is None:
            return lengths
        k, s = self.settings.conv_kernel_size, self.settings.conv_stride
        p = k // 2
        return torch.clamp(torch.div(lengths + 2 * p - k, s, rounding_mode="floor") + 1, min=1)

    def forward(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Logits (B, K) for ``inputs`` (B, T) token ids or (B, T, C) series, padded after
        ``lengths`` (B,) valid steps (all T when None). With members, the log of their mean
        probabilities."""
        if self.members is not None:
            return _mean_probabilities([member(inputs, lengths) for member in self.members])
        B, T = inputs.shape[:2]
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.int64)
        lengths = torch.as_tensor(lengths, dtype=torch.int64).cpu()
        if self.embedding is not None and self.training and self.settings.token_dropout > 0:
            # Word dropout (Iyyer et al. 2015): whole tokens become unknown, padding stays.
            drop = torch.rand(inputs.shape, device=inputs.device) < self.settings.token_dropout
            inputs = inputs.masked_fill(
                drop & (inputs != self.settings.padding_idx), self.settings.unknown_idx
            )
        x = self.embedding(inputs) if self.embedding is not None else inputs
        x = self.input_dropout(x)
        if self.conv is not None:
            valid = _mask(lengths, T, x.device).unsqueeze(-1)
            x = x * valid  # padding is zero, exactly the conv's own zero padding
            short = self.settings.conv_kernel_size - 2 * (self.settings.conv_kernel_size // 2) - T
            if short > 0:
                x = F.pad(x, (0, 0, 0, short))
            x = F.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
            lengths = self.conv_lengths(lengths)
            if not torch.compiler.is_exporting():  # an exported graph keeps the padded T'
                x = x[:, : int(lengths.max())]  # trailing padding only: every step is masked
        output, state = self.encoder(x, lengths=lengths)
        pooled = self.pool(output, state, lengths)
        return self.head(self.output_dropout(pooled))

    def pool(self, output: Tensor, state, lengths: Tensor) -> Tensor:
        """(B, T, D·H) outputs and final state -> (B, D·H) by ``settings.pooling``."""
        how = self.settings.pooling
        if how == "last":
            h_n = state[0] if isinstance(state, tuple) else state  # LSTM: (h_n, c_n)
            D = 2 if self.settings.bidirectional else 1
            return torch.cat(list(h_n[-D:]), dim=-1)  # top layer, every direction
        valid = _mask(lengths, output.shape[1], output.device)  # (B, T)
        if how == "mean":
            total = (output * valid.unsqueeze(-1)).sum(dim=1)
            return total / lengths.to(output.device, output.dtype).unsqueeze(-1)
        if how == "max":
            return output.masked_fill(~valid.unsqueeze(-1), float("-inf")).amax(dim=1)
        scores = self.attention(output).squeeze(-1).masked_fill(~valid, float("-inf"))
        weights = torch.softmax(scores, dim=1)  # (B, T)
        return torch.einsum("bt,btf->bf", weights, output)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean (class-weighted) cross-entropy."""
        return F.cross_entropy(logits, targets, weight=self.class_weights.to(logits.dtype))

    @torch.no_grad()
    def predict_proba(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, K) class probabilities (eval mode is the caller's choice)."""
        return torch.softmax(self(inputs, lengths), dim=-1)


def _mean_probabilities(logits: list[Tensor]) -> Tensor:
    """``log (1/M) Σ_m softmax(logits_m)`` for M (B, K) logits: normalised log-probabilities."""
    stacked = torch.stack([F.log_softmax(x, dim=-1) for x in logits])
    return torch.logsumexp(stacked, dim=0) - math.log(len(logits))


def _mask(lengths: Tensor, T: int, device) -> Tensor:
    return torch.arange(T, device=device).unsqueeze(0) < lengths.to(device).unsqueeze(1)


# -- metrics ---------------------------------------------------------------------------------
def class_weights(targets: Sequence[int], num_classes: int) -> Tensor:
    """``balanced`` weights ``w_k = N / (K · N_k)`` (classes absent from ``targets`` get 0).

    >>> class_weights([0, 0, 0, 1], 2).tolist()
    [0.6666666865348816, 2.0]
    """
    counts = torch.bincount(torch.as_tensor(targets, dtype=torch.int64), minlength=num_classes)
    n = counts.sum().item()
    weights = torch.where(counts > 0, n / (num_classes * counts.clamp(min=1).float()), 0.0)
    return weights.float()


def confusion_matrix(targets, predictions, num_classes: int) -> np.ndarray:
    """(K, K) int counts: row = true class, column = predicted class."""
    t = np.asarray(targets, dtype=np.int64)
    p = np.asarray(predictions, dtype=np.int64)
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def metrics_from_confusion(cm: np.ndarray) -> dict:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support from a confusion matrix.

    Macro-F1 averages over the classes that occur as a true or a predicted label (as
    scikit-learn does without ``labels=``); a class that never occurs in either has no F1 and
    is left out of the mean (its ``f1`` entry is 0).
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    total = cm.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    seen = (tp + fp + fn) > 0
    return {
        "accuracy": float(tp.sum() / total) if total else float("nan"),
        "macro_f1": float(f1[seen].mean()) if seen.any() else float("nan"),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": cm.sum(axis=1).astype(int).tolist(),
    }


def format_confusion_matrix(cm: np.ndarray, classes: Sequence[str]) -> str:
    """The confusion matrix as an aligned text table (rows true, columns predicted).

    >>> print(format_confusion_matrix(np.array([[3, 1], [0, 2]]), ["neg", "pos"]))
    true\\pred neg pos
    neg         3   1
    pos         0   2
    """
    names = [str(c) for c in classes]
    corner = "true\\pred"
    first = max(len(corner), *(len(n) for n in names))
    width = max(3, *(len(n) for n in names), len(str(int(np.max(cm)))) if np.size(cm) else 1)
    lines = [corner.ljust(first) + "".join(" " + n.rjust(width) for n in names)]
    for name, row in zip(names, cm):
        lines.append(name.ljust(first) + "".join(" " + str(int(v)).rjust(width) for v in row))
    return "\n".join(lines)


def plot_confusion_matrix(cm: np.ndarray, classes: Sequence[str], path, title: str = "") -> None:
    """Write the confusion matrix as a PNG heat map (matplotlib Agg), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rnnkit.io import atomic_write_bytes

    k = len(classes)
    size = max(3.5, 0.45 * k + 2.0)
    fig, ax = plt.subplots(figsize=(size, size))
    try:
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(k), [str(c) for c in classes], rotation=45, ha="right")
        ax.set_yticks(range(k), [str(c) for c in classes])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if title:
            ax.set_title(title)
        peak = cm.max() if np.size(cm) else 0
        for i in range(k):
            for j in range(k):
                colour = "white" if peak and cm[i, j] > peak / 2 else "black"
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", color=colour)
        fig.tight_layout()
        import io

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(fig)
    atomic_write_bytes(os.fspath(path), buffer.getvalue())


def classification_report(model: Classifier, batches, classes: Sequence[str]) -> dict:
    """Loss, accuracy, macro-F1, per-class scores and the confusion matrix over ``batches``."""
    was_training = model.training
    model.eval()
    K = len(classes)
    cm = np.zeros((K, K), dtype=np.int64)
    loss_sum, count = 0.0, 0
    device = device_of(model)
    with torch.no_grad():
        for inputs, lengths, targets in batches:
            logits = model(inputs.to(device), lengths.to(device))
            loss_sum += float(model.loss(logits, targets.to(device))) * len(targets)
            count += len(targets)
            cm += confusion_matrix(targets.numpy(), logits.argmax(-1).cpu().numpy(), K)
    model.train(was_training)
    scores = metrics_from_confusion(cm)
    return {
        "loss": loss_sum / count if count else float("nan"),
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "count": count,
        "classes": list(classes),
        "confusion_matrix": cm.tolist(),
        "per_class": {
            c: {
                "precision": scores["precision"][k],
                "recall": scores["recall"][k],
                "f1": scores["f1"][k],
                "support": scores["support"][k],
            }
            for k, c in enumerate(classes)
        },
    }
