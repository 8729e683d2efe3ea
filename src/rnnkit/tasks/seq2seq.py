r"""Sequence to sequence with attention: an encoder reads the source, a decoder writes the target.

Pipeline (S source length, T target length, B batch, E embedding size, H encoder hidden size,
D directions, M = D·H memory size, G decoder hidden size, V target vocabulary)::

    m_1..m_S, (h_n, c_n) = Encoder(Embed(x))        any rnnkit layer, uni- or bidirectional
    s_0 = tanh(W_h [h_n(fwd); h_n(bwd)] + b_h)       bridge: top layer's final states -> G
    c_0 =      W_c [c_n(fwd); c_n(bwd)] + b_c        LSTM decoder (h_n if the encoder has no c)
    s_t = Decoder(Embed(y_{t-1}), s_{t-1})           LSTM or GRU, y_0 = <S>
    a_t = attention(s_t, m)                          Luong dot / general: query s_t
    õ_t = tanh(W_o [s_t; a_t] + b_o)                 attentional hidden state
    p(y_t | y_<t, x) = softmax(W_v õ_t + b_v)        (without attention: softmax(W_v s_t + b_v))

Bahdanau additive attention reads the *previous* state instead and feeds the context to the
decoder: ``a_t = attention(s_{t-1}, m)``, ``s_t = Decoder([Embed(y_{t-1}); a_t], s_{t-1})``.
See :mod:`rnnkit.tasks.attention` for the scores.

Training minimises the mean cross-entropy of ``y_1 … y_T <E>`` with the true previous token fed
in (teacher forcing). With ``scheduled_sampling = p``, each example at each step is fed the
model's own previous prediction with probability p instead (Bengio et al. 2015), which trains
the model on the inputs it meets at inference. Without scheduled sampling and with Luong or no
attention, the decoder runs over the whole target in one call; otherwise step by step.

Inference feeds the model its own predictions and stops at ``<E>``: greedy (argmax each step)
or beam search with K hypotheses, ranked at the end by length-normalised log-probability
``log p(y) / |y|^α`` (α = ``length_penalty``, |y| counts the ``<E>``). Outputs never contain
``<pad>``, ``<unk>`` or ``<S>``; after ``max_length`` characters ``<E>`` is the only choice (and
its probability counts in the score).

Metrics (:func:`sequence_metrics`): exact match (share of outputs equal to the target), character
accuracy (characters equal at the same position, over the longer of output and target, summed
over the corpus), and corpus BLEU-4 over characters (Papineni et al. 2002: geometric mean of
clipped 1..4-gram precisions times the brevity penalty ``min(1, exp(1 - r/c))``).

Example::

    >>> model = Seq2Seq(source_vocab_size=20, target_vocab_size=15, hidden_size=16)
    >>> src = torch.randint(4, 20, (3, 7)); lengths = torch.tensor([7, 5, 2])
    >>> outputs, _ = model.greedy(src, lengths, max_length=6)
    >>> len(outputs), all(len(o) <= 6 for o in outputs)
    (3, True)
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.config import Config
from rnnkit.data.pairs import (
    PairBatch,
    PairBatches,
    PairCharVocab,
    PairVocab,
    collate,
    read_pairs,
)
from rnnkit.data.split import split_indices
from rnnkit.devices import device_of, to_device
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
from rnnkit.tasks.attention import ATTENTIONS, make_attention
from rnnkit.tasks.base import CELLS, StepOutput, Task, check_field_types, check_positive_ints
from rnnkit.train import Callback, TrainConfig, TrainResult

log = logging.getLogger(__name__)

ENCODER_CELLS = CELLS
DECODER_CELLS = ("lstm", "gru")
PAD, UNK = PairCharVocab.pad_id, PairCharVocab.unk_id
START, END = PairCharVocab.start_id, PairCharVocab.end_id


def _decodable(logits: Tensor) -> Tensor:
    """Logits with the tokens an output may not contain (``<pad>``, ``<unk>``, ``<S>``) at -inf."""
    logits = logits.clone()
    logits[..., [PAD, UNK, START]] = float("-inf")
    return logits


def _log_probs(logits: Tensor, last: bool) -> Tensor:
    """Log-probabilities of the next token for decoding, (B, V) float64. At the ``last`` step
    (``max_length`` characters written) only ``<E>`` stays possible, at its own probability."""
    logp = torch.log_softmax(_decodable(logits).double(), -1)
    if last:
        end = logp[..., END].clone()
        logp = torch.full_like(logp, float("-inf"))
        logp[..., END] = end
    return logp


class Seq2Seq(Task):
    """Encoder–decoder with attention over character ids (see the module docstring).

    Args:
        source_vocab_size, target_vocab_size: vocabulary sizes, specials included (ids 0-3
            are ``<pad>``, ``<unk>``, ``<S>``, ``<E>``, as
            :class:`rnnkit.data.pairs.PairCharVocab`).
        embedding_size: E, for source and target characters.
        encoder_cell: ``lstm``, ``gru``, ``rnn`` or ``irnn``; ``hidden_size``: H;
            ``encoder_layers``; ``bidirectional``.
        decoder_cell: ``lstm`` or ``gru``; ``decoder_hidden_size``: G (default D·H, so dot
            attention works); ``decoder_layers``.
        attention: ``dot``, ``general``, ``additive`` or ``none``.
        dropout: on embeddings, between stacked layers and on the attentional state.
        scheduled_sampling: probability of feeding the model's own previous prediction while
            training (0 = pure teacher forcing).
        max_length: default longest output, in characters, for decoding.
        length_penalty: α of beam search's length normalisation.
        beam: beam size used by evaluation (1 = greedy).
        encoder_options: extra keyword arguments of the encoder layer (``peephole``, ``init``,
            ``backend``, …).
    """

    name = "seq2seq"

    def __init__(
        self,
        source_vocab_size: int,
        target_vocab_size: int,
        *,
        embedding_size: int = 64,
        encoder_cell: str = "lstm",
        hidden_size: int = 128,
        encoder_layers: int = 1,
        bidirectional: bool = True,
        decoder_cell: str = "lstm",
        decoder_hidden_size: int | None = None,
        decoder_layers: int = 1,
        attention: str = "general",
        dropout: float = 0.0,
        scheduled_sampling: float = 0.0,
        max_length: int = 50,
        length_penalty: float = 1.0,
        beam: int = 1,
        encoder_options: dict | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("source_vocab_size", source_vocab_size),
            ("target_vocab_size", target_vocab_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= END:
                raise ValueError(
                    f"{name} must be an integer > {END} (specials included), got {value!r}"
                )
        if encoder_cell not in ENCODER_CELLS:
            raise ValueError(
                f"encoder_cell must be one of {', '.join(ENCODER_CELLS)}; got {encoder_cell!r}"
            )
        if decoder_cell not in DECODER_CELLS:
            raise ValueError(
                f"decoder_cell must be one of {', '.join(DECODER_CELLS)}; got {decoder_cell!r}"
            )
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}; got {attention!r}")
        if not 0.0 <= scheduled_sampling <= 1.0:
            raise ValueError(f"scheduled_sampling must be in [0, 1], got {scheduled_sampling!r}")
        if not length_penalty >= 0.0:
            raise ValueError(f"length_penalty must be >= 0, got {length_penalty!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        check_positive_ints(max_length=max_length, beam=beam)
        encoder_options = dict(encoder_options or {})
        self._config = {
            "source_vocab_size": source_vocab_size,
            "target_vocab_size": target_vocab_size,
            "embedding_size": embedding_size,
            "encoder_cell": encoder_cell,
            "hidden_size": hidden_size,
            "encoder_layers": encoder_layers,
            "bidirectional": bool(bidirectional),
            "decoder_cell": decoder_cell,
            "decoder_hidden_size": decoder_hidden_size,
            "decoder_layers": decoder_layers,
            "attention": attention,
            "dropout": dropout,
            "scheduled_sampling": scheduled_sampling,
            "max_length": max_length,
            "length_penalty": length_penalty,
            "beam": beam,
            "encoder_options": encoder_options,
        }
        self.attention_kind = attention
        self.decoder_cell = decoder_cell
        self.scheduled_sampling = scheduled_sampling
        self.max_length = max_length
        self.length_penalty = length_penalty
        self.beam = beam
        layer_dropout = dropout if encoder_layers > 1 else 0.0

        self.source_embedding = nn.Embedding(source_vocab_size, embedding_size, padding_idx=PAD)
        self.target_embedding = nn.Embedding(target_vocab_size, embedding_size, padding_idx=PAD)
        self.encoder = make_layer(
            encoder_cell,
            embedding_size,
            hidden_size,
            num_layers=encoder_layers,
            bidirectional=bidirectional,
            batch_first=True,
            dropout=layer_dropout,
            **encoder_options,
        )
        D = 2 if bidirectional else 1
        memory_size = D * self.encoder.output_size
        G = decoder_hidden_size or memory_size
        self.decoder_hidden_size = G
        self.decoder_layers = decoder_layers
        self.drop = nn.Dropout(dropout)

        # Bridge: the top encoder layer's final states (both directions) -> decoder's initial.
        bridge_h = D * self.encoder.output_size
        bridge_c = D * hidden_size if encoder_cell == "lstm" else bridge_h
        self.bridge_h = nn.Linear(bridge_h, decoder_layers * G)
        self.bridge_c = nn.Linear(bridge_c, decoder_layers * G) if decoder_cell == "lstm" else None

        decoder_input = embedding_size + (memory_size if attention == "additive" else 0)
        self.decoder = make_layer(
            decoder_cell,
            decoder_input,
            G,
            num_layers=decoder_layers,
            batch_first=True,
            dropout=dropout if decoder_layers > 1 else 0.0,
        )
        self.attention = make_attention(attention, G, memory_size)
        if self.attention is not None:
            self.combine = nn.Linear(G + memory_size, G)
        self.output = nn.Linear(G, target_vocab_size)

    # -- configuration --------------------------------------------------------------------------
    def config(self) -> dict:
        return {**self._config, "encoder_options": dict(self._config["encoder_options"])}

    @classmethod
    def from_config(cls, config: dict) -> Seq2Seq:
        config = dict(config)
        return cls(config.pop("source_vocab_size"), config.pop("target_vocab_size"), **config)

    @classmethod
    def for_vocab(cls, vocab: PairVocab, **options) -> Seq2Seq:
        """A model sized for ``vocab``'s source and target vocabularies."""
        return cls(len(vocab.source), len(vocab.target), **options)

    # -- encoder --------------------------------------------------------------------------------
    def encode(self, source: Tensor, lengths: Tensor):
        """Read the source; returns ``memory`` (B,S,M), ``mask`` (B,S), ``keys``, decoder state.

        The decoder state is a tuple of (L_dec, B, G) tensors: ``(h,)`` for GRU, ``(h, c)`` LSTM.
        """
        B, S = source.shape
        lengths = lengths.to("cpu", torch.int64)
        memory, final = self.encoder(self.drop(self.source_embedding(source)), lengths=lengths)
        mask = torch.arange(S).unsqueeze(0) < lengths.unsqueeze(1)  # (B, S): valid positions
        finals = final if isinstance(final, tuple) else (final,)
        D = self.encoder.num_directions
        top = slice((self.encoder.num_layers - 1) * D, self.encoder.num_layers * D)

        def top_layer(s):  # (L*D, B, X) -> (B, D*X): the top layer's directions side by side
            return s[top].transpose(0, 1).reshape(B, -1)

        L, G = self.decoder_layers, self.decoder_hidden_size
        h0 = torch.tanh(self.bridge_h(top_layer(finals[0])))
        state = (h0.view(B, L, G).transpose(0, 1).contiguous(),)
        if self.bridge_c is not None:
            c_source = finals[1] if len(finals) == 2 else finals[0]
            c0 = self.bridge_c(top_layer(c_source))
            state = (*state, c0.view(B, L, G).transpose(0, 1).contiguous())
        keys = self.attention.keys(memory) if self.attention is not None else None
        return memory, mask, keys, state

    # -- decoder --------------------------------------------------------------------------------
    def _run_decoder(self, inputs: Tensor, state: tuple[Tensor, ...]):
        hx = state if self.decoder_cell == "lstm" else state[0]
        output, final = self.decoder(inputs, hx)
        return output, (tuple(final) if self.decoder_cell == "lstm" else (final,))

    def _readout(self, output: Tensor, context: Tensor | None) -> Tensor:
        if context is None:
            return self.output(self.drop(output))
        return self.output(self.drop(torch.tanh(self.combine(torch.cat([output, context], -1)))))

    def decode_step(self, tokens: Tensor, state, memory, mask, keys):
        """One decoder step: previous tokens (B,) -> logits (B,V), new state, weights (B,S)|None."""
        inputs = self.drop(self.target_embedding(tokens)).unsqueeze(1)  # (B, 1, E)
        context = weights = None
        if self.attention_kind == "additive":
            query = state[0][-1].unsqueeze(1)  # top layer's previous h: (B, 1, G)
            context, weights = self.attention(query, keys, memory, mask)
            inputs = torch.cat([inputs, context], -1)
        output, state = self._run_decoder(inputs, state)
        if self.attention_kind in ("dot", "general"):
            context, weights = self.attention(output, keys, memory, mask)
        logits = self._readout(output, context).squeeze(1)
        return logits, state, (weights.squeeze(1) if weights is not None else None)

    def forward(self, source: Tensor, lengths: Tensor, target_in: Tensor) -> Tensor:
        """Logits (B, T+1, V) of ``y_1 … <E>`` given ``target_in = <S> y_1 …`` (teacher forcing,
        with scheduled sampling while training)."""
        memory, mask, keys, state = self.encode(source, lengths)
        sampling = self.training and self.scheduled_sampling > 0
        if self.attention_kind != "additive" and not sampling:
            # All decoder inputs are known: one call over the whole target.
            output, _ = self._run_decoder(self.drop(self.target_embedding(target_in)), state)
            context = None
            if self.attention is not None:
                context, _ = self.attention(output, keys, memory, mask)
            return self._readout(output, context)
        logits = []
        tokens = target_in[:, 0]
        for t in range(target_in.shape[1]):
            if t > 0:
                tokens = target_in[:, t]
                if sampling:
                    own = _decodable(logits[-1].detach()).argmax(-1)
                    use_own = (
                        torch.rand(tokens.shape, device=tokens.device) < self.scheduled_sampling
                    )
                    tokens = torch.where(use_own, own, tokens)
            step_logits, state, _ = self.decode_step(tokens, state, memory, mask, keys)
            logits.append(step_logits)
        return torch.stack(logits, 1)

    def loss(self, batch: PairBatch) -> tuple[Tensor, Tensor, int]:
        """(mean cross-entropy over target characters and ``<E>``, logits, count)."""
        logits = self(batch.source, batch.source_lengths, batch.target_in)
        count = int((batch.target_out != PAD).sum())
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            batch.target_out.reshape(-1),
            ignore_index=PAD,
            reduction="sum",
        ) / max(count, 1)
        return loss, logits, count

    # -- task contract --------------------------------------------------------------------------
    def step(self, batch: PairBatch, state=None) -> StepOutput:
        """Training: the teacher-forced loss. Evaluation also decodes (greedy or ``self.beam``)
        and returns the sums behind exact match, character accuracy and BLEU."""
        loss, logits, count = self.loss(batch)
        stats = None
        if not self.training:
            valid = batch.target_out != PAD
            correct = ((logits.argmax(-1) == batch.target_out) & valid).sum()
            outputs = self.decode(batch.source, batch.source_lengths)
            # Decoded ids -> text through the target vocabulary is not known here: compare ids.
            stats = {
                "token_correct": float(correct),
                **sequence_stats(
                    [tuple(o) for o in outputs],
                    [
                        tuple(t[: n - 1].tolist())
                        for t, n in zip(batch.target_out, batch.target_lengths.tolist())
                    ],
                ),
            }
        return StepOutput(loss=loss, count=count, stats=stats)

    def summarize(self, loss_sum: float, count: int, stats: dict[str, float]) -> dict[str, float]:
        if count == 0:
            return {"loss": float("nan")}
        metrics = {"loss": loss_sum / count}
        if "token_correct" in stats:
            metrics["token_accuracy"] = stats["token_correct"] / count
        if "sequences" in stats:
            metrics.update(metrics_from_stats(stats))
        return metrics

    # -- decoding -------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(
        self,
        source: Tensor,
        lengths: Tensor,
        *,
        beam: int | None = None,
        max_length: int | None = None,
    ) -> list[list[int]]:
        """Output ids (without ``<E>``) of each source: greedy for beam 1, else beam search."""
        beam = self.beam if beam is None else beam
        if beam == 1:
            return self.greedy(source, lengths, max_length=max_length)[0]
        return self.beam_search(source, lengths, beam, max_length=max_length)[0]

    @torch.no_grad()
    def greedy(self, source: Tensor, lengths: Tensor, *, max_length: int | None = None):
        """Argmax decoding. Returns (ids per source, attention (T_out+1, S) per source or None).

        The attention rows cover every output character and the ``<E>`` step, if reached.
        """
        max_length = max_length or self.max_length
        memory, mask, keys, state = self.encode(source, lengths)
        B = source.shape[0]
        tokens = torch.full((B,), START, dtype=torch.int64, device=source.device)
        finished = torch.zeros(B, dtype=torch.bool)
        steps, weights = [], []
        for t in range(max_length + 1):
            logits, state, w = self.decode_step(tokens, state, memory, mask, keys)
            tokens = _log_probs(logits, last=t == max_length).argmax(-1)
            steps.append(tokens)
            if w is not None:
                weights.append(w)
            finished |= tokens.cpu() == END
            if bool(finished.all()):
                break
        ids = torch.stack(steps, 1).tolist()
        outputs, attention = [], []
        for b in range(B):
            row = ids[b]
            n = row.index(END) if END in row else min(len(row), max_length)
            outputs.append(row[:n])
            if weights:
                rows = min(n + 1, len(row))
                attention.append(torch.stack(weights, 1)[b, :rows, : int(lengths[b])])
        return outputs, (attention if weights else None)

    @torch.no_grad()
    def beam_search(
        self,
        source: Tensor,
        lengths: Tensor,
        beam: int,
        *,
        max_length: int | None = None,
        length_penalty: float | None = None,
    ):
        """Beam search with K = ``beam`` hypotheses per source.

        The beam holds K hypotheses, finished ones included. Each step extends every live
        hypothesis by every token and keeps the best ``K - finished`` by total log-probability;
        those ending in ``<E>`` finish with score ``log p / |y|^α``, the others go on. A source
        is done when K have finished or when no live hypothesis can beat its best finished one
        (log p only falls, so a live one scores at best ``log p / (max_length + 1)^α``); after
        ``max_length`` characters only ``<E>`` remains. The best normalised score wins; K = 1 is
        greedy search.

        Returns (ids per source, attention (T_out+1, S) per source or None, scores).
        """
        if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
            raise ValueError(f"beam must be a positive integer, got {beam!r}")
        max_length = max_length or self.max_length
        alpha = self.length_penalty if length_penalty is None else length_penalty
        if alpha < 0:
            raise ValueError(f"length_penalty must be >= 0, got {alpha!r}")
        K, longest = beam, max_length + 1
        memory, mask, keys, state = self.encode(source, lengths)
        B, S = source.shape
        V = self.output.out_features

        def expand(x, dim=0):
            return x.repeat_interleave(K, dim=dim)

        memory, mask = expand(memory), expand(mask)
        keys = expand(keys) if keys is not None else None
        state = tuple(expand(s, 1) for s in state)
        tokens = torch.full((B * K,), START, dtype=torch.int64, device=source.device)
        scores = torch.full((B, K), float("-inf"), dtype=torch.float64)
        scores[:, 0] = 0.0  # one live hypothesis per source at the start
        history = torch.zeros(B * K, 0, dtype=torch.int64)
        attn_history = torch.zeros(B * K, 0, S)
        finished: list[list[tuple[float, list[int], Tensor | None]]] = [[] for _ in range(B)]
        done = [False] * B
        has_attention = self.attention is not None
        for t in range(max_length + 1):
            logits, state, w = self.decode_step(tokens, state, memory, mask, keys)
            logp = _log_probs(logits, last=t == max_length).cpu().view(B, K, V)
            candidates = (scores.unsqueeze(2) + logp).view(B, K * V)
            top_scores, top_index = candidates.topk(K, dim=1)
            origin_of, token_of = top_index // V, top_index % V
            w_cpu = w.cpu() if has_attention else None
            new_scores = torch.full((B, K), float("-inf"), dtype=torch.float64)
            new_origin = torch.zeros(B, K, dtype=torch.int64)
            new_token = torch.full((B, K), PAD, dtype=torch.int64)
            for b in range(B):
                if done[b]:
                    continue
                kept = 0
                # The beam holds K hypotheses, finished ones included: the best K - finished
                # candidates go on (those ending in <E> finish), so K = 1 is greedy search.
                for rank in range(K - len(finished[b])):
                    score = float(top_scores[b, rank])
                    if score == float("-inf"):
                        break
                    origin, token = int(origin_of[b, rank]), int(token_of[b, rank])
                    row = b * K + origin
                    if token == END:
                        attn = None
                        if has_attention:
                            attn = torch.cat([attn_history[row], w_cpu[row : row + 1]], 0)
                        finished[b].append((score / (t + 1) ** alpha, history[row].tolist(), attn))
                    else:
                        new_scores[b, kept] = score
                        new_origin[b, kept] = origin
                        new_token[b, kept] = token
                        kept += 1
                # Done when K have finished, or when no live hypothesis can beat the best finished
                # one any more: log p only falls, so a live one scores at best s / longest^α.
                live = float(new_scores[b].max())
                if (
                    len(finished[b]) >= K
                    or live == float("-inf")
                    or (finished[b] and max(f[0] for f in finished[b]) >= live / longest**alpha)
                ):
                    done[b] = True
            if all(done):
                break
            rows = (torch.arange(B).unsqueeze(1) * K + new_origin).view(-1)
            scores = new_scores
            history = torch.cat([history[rows], new_token.view(-1, 1)], 1)
            if has_attention:
                attn_history = torch.cat([attn_history[rows], w_cpu[rows].unsqueeze(1)], 1)
            state = tuple(s.index_select(1, rows.to(s.device)) for s in state)
            tokens = new_token.view(-1).to(source.device)
        for b in range(B):  # sources still going at max_length: their live hypotheses, as is
            if done[b]:
                continue
            for k in range(K):
                if scores[b, k] > float("-inf"):
                    row = b * K + k
                    attn = attn_history[row] if has_attention else None
                    n = history.shape[1]
                    finished[b].append(
                        (float(scores[b, k]) / max(n, 1) ** alpha, history[row].tolist(), attn)
                    )
        outputs, attention, best_scores = [], [], []
        for b in range(B):
            score, ids, attn = max(finished[b], key=lambda item: item[0])
            outputs.append(ids[:max_length])
            best_scores.append(score)
            if has_attention:
                attention.append(attn[:, : int(lengths[b])])
        return outputs, (attention if has_attention else None), best_scores


# -- strings in, strings out ----------------------------------------------------------------------
def check_vocab(model: Seq2Seq, vocab: PairVocab) -> None:
    """Raise :class:`InvalidInputError` if ``vocab``'s sizes are not the model's."""
    sizes = (model.source_embedding.num_embeddings, model.target_embedding.num_embeddings)
    if (len(vocab.source), len(vocab.target)) != sizes:
        raise InvalidInputError(
            f"the vocabularies have {len(vocab.source)} source and {len(vocab.target)} target "
            f"entries, the model {sizes[0]} and {sizes[1]}; vocab.json does not belong to it"
        )


@torch.no_grad()
def translate(
    model: Seq2Seq,
    vocab: PairVocab,
    texts: Sequence[str],
    *,
    beam: int = 1,
    max_length: int | None = None,
    batch_size: int = 256,
) -> list[dict]:
    """Translate ``texts``; one dict per text: ``output``, ``attention`` ((T_out+1) x S list or
    None), and ``score`` (beam search's normalised log-probability, beam > 1 only)."""
    check_vocab(model, vocab)
    was_training = model.training
    model.eval()
    results = []
    try:
        for i in range(0, len(texts), batch_size):
            chunk = list(texts[i : i + batch_size])
            for j, text in enumerate(chunk):
                vocab.check_source(text, what=f"input {i + j + 1}" if len(texts) > 1 else "--text")
            batch = to_device(collate([(t, "?") for t in chunk], vocab), device_of(model))
            if beam == 1:
                ids, attention = model.greedy(
                    batch.source, batch.source_lengths, max_length=max_length
                )
                scores = [None] * len(chunk)
            else:
                ids, attention, scores = model.beam_search(
                    batch.source, batch.source_lengths, beam, max_length=max_length
                )
            for j, out in enumerate(ids):
                results.append(
                    {
                        "output": vocab.target.decode(out),
                        "attention": attention[j].tolist() if attention is not None else None,
                        "score": scores[j],
                    }
                )
    finally:
        model.train(was_training)
    return results


@torch.no_grad()
def evaluate_pairs(
    model: Seq2Seq,
    vocab: PairVocab,
    pairs: Sequence[tuple[str, str]],
    *,
    beam: int = 1,
    batch_size: int = 256,
    max_length: int | None = None,
) -> dict:
    """Loss and decoding metrics (exact match, character accuracy, BLEU) on ``pairs``."""
    check_vocab(model, vocab)
    was_training = model.training
    model.eval()
    loss_sum, count, predictions = 0.0, 0, []
    try:
        for i in range(0, len(pairs), batch_size):
            batch = to_device(collate(pairs[i : i + batch_size], vocab), device_of(model))
            loss, _, n = model.loss(batch)
            loss_sum += float(loss) * n
            count += n
            ids = model.decode(batch.source, batch.source_lengths, beam=beam, max_length=max_length)
            predictions.extend(vocab.target.decode(o) for o in ids)
    finally:
        model.train(was_training)
    metrics = sequence_metrics(predictions, [t for _, t in pairs])
    return {
        "loss": loss_sum / max(count, 1),
        **metrics,
        "pairs": len(pairs),
        "beam": beam,
        "predictions": predictions,
    }


# -- metrics --------------------------------------------------------------------------------------
def _ngrams(seq: Sequence, n: int) -> Counter:
    return Counter(tuple(seq[i : i + n]) for i in range(len(seq) - n + 1))


def sequence_stats(
    predictions: Sequence[Sequence], targets: Sequence[Sequence], max_n: int = 4
) -> dict[str, float]:
    """Additive sums behind :func:`metrics_from_stats` (sum them over batches, then convert)."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    stats = Counter(
        {
            "sequences": 0.0,
            "exact": 0.0,
            "chars_correct": 0.0,
            "chars_total": 0.0,
            "hyp_length": 0.0,
            "ref_length": 0.0,
        }
    )
    for n in range(1, max_n + 1):
        stats[f"match_{n}"] = 0.0
        stats[f"total_{n}"] = 0.0
    for hyp, ref in zip(predictions, targets):
        hyp, ref = list(hyp), list(ref)
        stats["sequences"] += 1
        stats["exact"] += float(hyp == ref)
        stats["chars_correct"] += sum(a == b for a, b in zip(hyp, ref))
        stats["chars_total"] += max(len(hyp), len(ref))
        stats["hyp_length"] += len(hyp)
        stats["ref_length"] += len(ref)
        for n in range(1, max_n + 1):
            h, r = _ngrams(hyp, n), _ngrams(ref, n)
            stats[f"match_{n}"] += sum(min(c, r[g]) for g, c in h.items())
            stats[f"total_{n}"] += max(len(hyp) - n + 1, 0)
    return dict(stats)


def metrics_from_stats(stats: dict[str, float], max_n: int = 4) -> dict[str, float]:
    """Exact match, character accuracy and corpus BLEU-``max_n`` from :func:`sequence_stats`."""
    n_seq = stats["sequences"]
    precisions = [
        stats[f"match_{n}"] / stats[f"total_{n}"] if stats[f"total_{n}"] else 0.0
        for n in range(1, max_n + 1)
    ]
    c, r = stats["hyp_length"], stats["ref_length"]
    if min(precisions) == 0.0 or c == 0:
        bleu = 0.0
    else:
        brevity = 1.0 if c > r else math.exp(1.0 - r / c)
        bleu = brevity * math.exp(sum(math.log(p) for p in precisions) / max_n)
    return {
        "exact_match": stats["exact"] / n_seq if n_seq else float("nan"),
        "char_accuracy": (
            stats["chars_correct"] / stats["chars_total"] if stats["chars_total"] else float("nan")
        ),
        "bleu": bleu,
    }


def sequence_metrics(predictions: Sequence[str], targets: Sequence[str]) -> dict[str, float]:
    """Exact match, character accuracy and character BLEU-4 of ``predictions`` against ``targets``.

    >>> sequence_metrics(["2020-01-02", "1999-12-31"], ["2020-01-02", "1999-12-30"])["exact_match"]
    0.5
    """
    return metrics_from_stats(sequence_stats(predictions, targets))


# -- the seq2seq run --------------------------------------------------------------------------
ATTENTION_PLOT = "attention.png"
DEFAULT_EPOCHS = 3


def _check_fraction(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


@dataclass
class PairData(Config):
    """Where pairs come from, how they are split and batched, and how the held-out pairs are
    tested.

    ``pairs``: the TSV file. Without a ``test`` file, a seeded random ``test_fraction`` of the
    pairs is held out for testing; ``val_fraction`` is always held out for validation (indices
    saved in the run's ``split.json``). ``max_length`` (longest output when decoding) defaults
    to the longest training target plus 10 characters. The test report is greedy, plus beam
    search of width ``beam`` when ``beam`` > 1.

    >>> PairData("dates.tsv", val_fraction=0.1).test_fraction
    0.1
    >>> PairData("dates.tsv", batch_size=0)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be an integer >= 1, got 0
    """

    pairs: str = field(metadata={"help": "SOURCE<TAB>TARGET lines", "metavar": "FILE"})
    test: str | None = field(
        default=None,
        metadata={"help": "test pairs (default: hold out --test-fraction)", "metavar": "FILE"},
    )
    val_fraction: float = field(default=0.05, metadata={"help": "held out for validation"})
    test_fraction: float = field(
        default=0.1, metadata={"help": "held out for testing, without --test"}
    )
    batch_size: int = field(default=64, metadata={"help": "pairs per batch"})
    max_length: int | None = field(
        default=None,
        metadata={"help": "longest output when decoding (default: longest training target + 10)"},
    )
    beam: int = field(
        default=1,
        metadata={"help": "also test with beam search of this width; 1: greedy only"},
    )

    def __post_init__(self) -> None:
        check_field_types(self)
        if not isinstance(self.pairs, str | os.PathLike) or not os.fspath(self.pairs):
            raise ValueError(
                f"pairs must be the path of a SOURCE<TAB>TARGET file, got {self.pairs!r}"
            )
        for name in ("batch_size", "beam", "max_length"):
            value = getattr(self, name)
            if name == "max_length" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        _check_fraction("val_fraction", self.val_fraction)
        _check_fraction("test_fraction", self.test_fraction)
        if self.val_fraction + (0 if self.test else self.test_fraction) >= 1:
            raise ValueError("val_fraction plus test_fraction must be < 1")


@dataclass
class Seq2SeqConfig(Config):
    """:class:`Seq2Seq` arguments other than the vocabulary sizes and ``max_length`` (taken from
    the data) and ``beam`` (validation decodes greedily; the test beam is :attr:`PairData.beam`).
    """

    embedding_size: int = field(default=64, metadata={"help": "embedding size E"})
    encoder_cell: str = field(default="lstm", metadata={"help": "encoder cell"})
    hidden_size: int = field(default=128, metadata={"help": "encoder hidden size, per direction"})
    encoder_layers: int = field(default=1, metadata={"help": "stacked encoder layers"})
    bidirectional: bool = field(default=True, metadata={"help": "bidirectional encoder"})
    decoder_cell: str = field(
        default="lstm", metadata={"help": "decoder cell", "choices": DECODER_CELLS}
    )
    decoder_hidden_size: int | None = field(
        default=None,
        metadata={
            "help": "default: the encoder's output size (2 x --hidden-size when bidirectional)"
        },
    )
    decoder_layers: int = field(default=1, metadata={"help": "stacked decoder layers"})
    attention: str = field(
        default="general",
        metadata={
            "help": "Luong general/dot, Bahdanau additive, or none",
            "choices": ("general", "dot", "additive", "none"),
        },
    )
    dropout: float = field(
        default=0.0, metadata={"help": "on embeddings, between layers, on the attentional state"}
    )
    scheduled_sampling: float = field(
        default=0.0,
        metadata={
            "help": "feed the model's own previous prediction with probability P",
            "metavar": "P",
        },
    )
    length_penalty: float = field(
        default=1.0,
        metadata={"help": "beam search ranks by log p / length^ALPHA", "metavar": "ALPHA"},
    )
    encoder_options: dict = field(default_factory=dict, metadata={"flag": False})

    def __post_init__(self) -> None:
        check_field_types(self)
        check_positive_ints(
            embedding_size=self.embedding_size,
            hidden_size=self.hidden_size,
            encoder_layers=self.encoder_layers,
            decoder_layers=self.decoder_layers,
        )
        if self.decoder_hidden_size is not None:
            check_positive_ints(decoder_hidden_size=self.decoder_hidden_size)
        if self.decoder_cell not in DECODER_CELLS:
            raise ValueError(
                f"decoder_cell must be one of {', '.join(DECODER_CELLS)}; got {self.decoder_cell!r}"
            )
        if self.attention not in ATTENTIONS:
            raise ValueError(
                f"attention must be one of {', '.join(ATTENTIONS)}; got {self.attention!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not 0.0 <= self.scheduled_sampling <= 1.0:
            raise ValueError(
                f"scheduled_sampling must be in [0, 1], got {self.scheduled_sampling!r}"
            )
        if not self.length_penalty >= 0.0:
            raise ValueError(f"length_penalty must be >= 0, got {self.length_penalty!r}")


@dataclass
class PreparedPairs(Prepared):
    """Prepared pairs: batch sources, the vocabularies (``encoders``) and the test pairs."""

    test: list = field(default_factory=list)
    train_pairs: list = field(default_factory=list)

    @property
    def vocab(self) -> PairVocab:
        return self.encoders


def _checked_split(split: dict, n: int, source: str) -> dict:
    """A run's saved split, checked against the ``n`` pairs read now."""
    try:
        parts = {name: [int(i) for i in split[name]] for name in ("train", "val", "test")}
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"the run's split.json is malformed ({exc!r})") from None
    if any(not 0 <= i < n for indices in parts.values() for i in indices):
        raise InvalidInputError(
            f"the run's split.json does not fit {source} ({n} pairs); the file changed since "
            "the run was trained"
        )
    return parts


def prepare_pairs(
    data: PairData, seed: int, *, vocab: PairVocab | None = None, split: dict | None = None
) -> PreparedPairs:
    """Read and split the pairs (or reuse a run's ``split``), build (or reuse) the vocabularies
    from the training pairs, batch training and validation pairs; validate everything first."""
    pairs = read_pairs(data.pairs)
    n = len(pairs)
    test_pairs = read_pairs(data.test) if data.test else None
    if split is None:
        try:
            split = split_indices(
                n,
                data.val_fraction,
                0 if test_pairs is not None else data.test_fraction,
                seed=seed,
                what="pairs",
            )
        except InvalidInputError as exc:
            raise InvalidInputError(f"{data.pairs}: {exc}") from None
    else:
        split = _checked_split(split, n, data.pairs)
    train = [pairs[i] for i in split["train"]]
    val = [pairs[i] for i in split["val"]]
    test = test_pairs if test_pairs is not None else [pairs[i] for i in split["test"]]
    vocab = vocab or PairVocab.build(train)
    max_length = data.max_length or max(len(t) for _, t in train) + 10
    # absolute paths, so the run can be evaluated and resumed from any working directory
    source = str(Path(data.pairs).resolve())
    record = {
        "pairs": source,
        "test": str(Path(data.test).resolve()) if data.test else None,
        "max_length": max_length,
        "source": source,
        "sha256": file_sha256(data.pairs),
        "pairs_count": n,
        "train_pairs": len(train),
        "val_pairs": len(val),
        "test_pairs": len(test),
    }
    if data.test:
        record["test_source"] = record["test"]
        record["test_sha256"] = file_sha256(data.test)
    return PreparedPairs(
        train=PairBatches(train, vocab, data.batch_size, seed=seed),
        val=PairBatches(val, vocab, 256, shuffle=False) if val else None,
        encoders=vocab,
        split=split,
        record=record,
        test=test,
        train_pairs=train,
    )


def pair_baselines(train: Sequence, test: Sequence) -> dict:
    """Exact match and character accuracy on ``test`` pairs of two answers that need no model:
    ``copy`` (the source itself) and ``most_frequent`` (the commonest training target)."""
    common = Counter(target for _, target in train).most_common(1)[0][0]
    targets = [target for _, target in test]
    out = {}
    for name, guesses in (("copy", [s for s, _ in test]), ("most_frequent", [common] * len(test))):
        m = sequence_metrics(guesses, targets)
        out[name] = {"exact_match": m["exact_match"], "char_accuracy": m["char_accuracy"]}
    return out


def report_on_pairs(
    model: Seq2Seq, vocab: PairVocab, pairs, *, beam: int = 1, batch_size: int = 256
) -> dict:
    """Greedy metrics on ``pairs`` and, for ``beam`` > 1, beam-search metrics under ``beam``."""
    greedy = evaluate_pairs(model, vocab, pairs, beam=1, batch_size=batch_size)
    report = {k: greedy[k] for k in ("pairs", "loss", "exact_match", "char_accuracy", "bleu")}
    if beam > 1:
        searched = evaluate_pairs(model, vocab, pairs, beam=beam, batch_size=batch_size)
        report["beam"] = {k: searched[k] for k in ("beam", "exact_match", "char_accuracy", "bleu")}
    return report


class Seq2SeqPredictor(Predictor):
    """A seq2seq run: :meth:`translate`."""

    def translate(
        self, texts, *, beam: int = 1, max_length: int | None = None, details: bool = False
    ):
        """The output for one text (a string) or for each of a list of texts, greedy or with
        a beam of width ``beam``; ``details``: the dicts of :func:`translate` (``output``,
        ``attention``, ``score``) instead of the strings."""
        one = isinstance(texts, str)
        results = translate(
            self.model, self.encoders, [texts] if one else list(texts), beam=beam,
            max_length=max_length,
        )  # fmt: skip
        shown = results if details else [r["output"] for r in results]
        return shown[0] if one else shown


class Seq2SeqSpec(TaskSpec):
    """Seq2seq in the run lifecycle (:mod:`rnnkit.runs`): held out are the test pairs (the
    ``test`` file or the test part of ``split.json``); the encoders are ``vocab.json``; the plot
    is ``attention.png`` (attention weights of the first test pair)."""

    name = "seq2seq"
    task_class = Seq2Seq
    data_config = PairData
    model_config = Seq2SeqConfig
    encoders_file = "vocab.json"
    predictor = Seq2SeqPredictor
    throughput_unit = "chars"

    def default_train(self) -> TrainConfig:
        return TrainConfig(epochs=DEFAULT_EPOCHS, lr=3e-3, clip_norm=1.0, eval_every=500)

    def prepare(self, data: PairData, seed: int, *, encoders=None, split=None) -> PreparedPairs:
        return prepare_pairs(data, seed, vocab=encoders, split=split)

    def build(self, model: Seq2SeqConfig, prepared: PreparedPairs) -> Seq2Seq:
        return Seq2Seq.for_vocab(
            prepared.vocab, max_length=prepared.record["max_length"], **model.to_dict()
        )

    def encoders_to_json(self, encoders: PairVocab) -> dict:
        return encoders.to_json()

    def encoders_from_json(self, obj: dict) -> PairVocab:
        return PairVocab.from_json(obj)

    def export_model(self, loaded: LoadedRun):
        """Two graphs: the ``encoder`` reads ``source`` (B, S) and ``lengths`` once; the
        ``decoder`` takes one step, ``tokens`` (B,) with the encoder's memory and the state,
        to ``logits`` (B, V) and the next state (and attention ``weights`` (B, S)); checked by
        teacher-forced token accuracy."""
        from rnnkit.export import Graph, TaskExport

        model = loaded.task
        fields = ("h", "c") if model.decoder_cell == "lstm" else ("h",)
        attends = model.attention is not None
        keyed = model.attention_kind in ("general", "additive")  # dot attention's keys: memory
        encoded = ["memory", "mask"] * attends + ["keys"] * keyed

        def encode(source, lengths):
            memory, mask, keys, state = model.encode(source, lengths)
            return ((memory, mask) if attends else ()) + ((keys,) if keyed else ()) + state

        def decode(tokens, *rest):
            given = dict(zip([*encoded, *fields], rest))
            memory, mask = given.get("memory"), given.get("mask")
            keys = given.get("keys", memory)
            state = tuple(given[f] for f in fields)
            logits, state, weights = model.decode_step(tokens, state, memory, mask, keys)
            return (logits, *state) + ((weights,) if attends else ())

        source, lengths = torch.full((2, 3), END + 1), torch.tensor([3, 2])
        with torch.no_grad():
            example = dict(zip([*encoded, *fields], encode(source, lengths)))
        M = model.encoder.num_directions * model.encoder.output_size
        G, L = model.decoder_hidden_size, model.decoder_layers
        shapes = {
            "memory": ["batch", "source", M],
            "mask": ["batch", "source"],
            "keys": ["batch", "source", example["keys"].shape[-1]] if keyed else None,
        }
        encoder = Graph(
            fn=encode,
            inputs={"source": source, "lengths": lengths},
            dims={"source": {0: "batch", 1: "source"}, "lengths": {0: "batch"}},
            outputs={
                **{k: shapes[k] for k in encoded},
                **{f"{f}0": [L, "batch", G] for f in fields},
            },
            name="encoder",
            modules=[model],
        )
        step_inputs = {"tokens": torch.full((2,), START), **example}
        decoder = Graph(
            fn=decode,
            inputs=step_inputs,
            dims={
                "tokens": {0: "batch"},
                **{k: {0: "batch", 1: "source"} for k in encoded},
                **{f: {1: "batch"} for f in fields},
            },
            outputs={
                "logits": ["batch", model.output.out_features],
                **{f"{f}_next": [L, "batch", G] for f in fields},
                **({"weights": ["batch", "source"]} if attends else {}),
            },
            name="decoder",
            modules=[model],
        )

        def chain(batch, call):
            out = call("encoder", {"source": batch.source, "lengths": batch.source_lengths})
            memory = dict(zip(encoded, out))
            state = dict(zip(fields, out[len(encoded) :]))
            logits = []
            for t in range(batch.target_in.shape[1]):  # teacher forcing: the given prefix
                out = call("decoder", {"tokens": batch.target_in[:, t], **memory, **state})
                logits.append(torch.as_tensor(out[0]))
                state = dict(zip(fields, out[1 : 1 + len(fields)]))
            return (torch.stack(logits, 1),)

        def score(out, batch):
            valid = batch.target_out != PAD
            return float(((out[0].argmax(-1) == batch.target_out) & valid).sum()), int(valid.sum())

        return TaskExport(
            [encoder, decoder],
            sidecar={
                "specials": {"pad": PAD, "unknown": UNK, "start": START, "end": END},
                "max_length": model.max_length,
                "source": "character ids of encoders.source, padded after lengths",
                "greedy": "run the encoder once; feed the decoder tokens = start with the "
                "encoder's memory (mask, keys) and h0 (c0); each step's argmax over logits "
                "(pad, unknown and start excluded) is the next character and the next tokens, "
                "with the *_next state, until end or max_length characters",
            },
            chain=chain,
            score=score,
            metric="token_accuracy",
        )

    def report(
        self,
        loaded: LoadedRun,
        prepared: PreparedPairs | None = None,
        *,
        data_file: str | None = None,
        beam: int | None = None,
        batch_size: int | None = None,
        **_,
    ) -> dict:
        """Metrics on the run's test pairs, or on the pairs of ``data_file``.

        Without ``beam``: the run's test report (greedy metrics, plus a ``"beam"`` block for the
        run's :attr:`PairData.beam` > 1), as in ``test_metrics.json``. With ``beam``: the
        metrics of decoding with that beam width (1: greedy), ``"beam"`` its width.
        """
        if beam is not None and (isinstance(beam, bool) or not isinstance(beam, int) or beam < 1):
            raise InvalidInputError(f"--beam must be >= 1, got {beam}")
        record = loaded.config.get("data", {})
        if data_file is not None:
            pairs, what = read_pairs(data_file), f"file {data_file}"
        elif prepared is not None and prepared.test:
            pairs = prepared.test
            if record.get("test"):
                what = f"test file {record['test']}"
            else:
                what = f"test part of {record.get('pairs')}"
        else:
            return {}
        model, vocab = loaded.task, loaded.encoders
        batch_size = batch_size or 256
        if beam is None:
            metrics = report_on_pairs(
                model, vocab, pairs, beam=record.get("beam", 1), batch_size=batch_size
            )
        else:
            metrics = evaluate_pairs(model, vocab, pairs, beam=beam, batch_size=batch_size)
            metrics.pop("predictions")
        report = {"data": what, **metrics}
        if data_file is None and prepared.train_pairs:
            report["baselines"] = pair_baselines(prepared.train_pairs, pairs)
        return report

    def headline(self, report: dict) -> Headline | None:
        if "exact_match" not in report:
            return None
        base = report.get("baselines", {})
        name = max(base, key=lambda k: base[k]["exact_match"], default="copy")
        value = base[name]["exact_match"] if name in base else None
        return Headline("exact_match", report["exact_match"], True, name, value)

    def write_plots(self, loaded: LoadedRun, prepared: PreparedPairs, report: dict) -> None:
        if not prepared.test or loaded.task.attention is None:
            return
        first = prepared.test[0][0]
        if loaded.encoders.source.unknown_tokens(first):
            return  # a test file's first source may hold characters never seen in training
        one = translate(loaded.task, loaded.encoders, [first])[0]
        plot_attention(one["attention"], first, one["output"], loaded.run / ATTENTION_PLOT)

    def format_evaluation(self, report: dict) -> dict:
        """The beam-search block as ``beam_*`` lines beside the greedy ones."""
        searched = report.get("beam")
        if not isinstance(searched, dict):
            return report
        rest = {k: v for k, v in report.items() if k != "beam"}
        return {**rest, **{f"beam_{k}" if k != "beam" else "beam": v for k, v in searched.items()}}

    def format_metrics(self, metrics: dict) -> str:
        if "val_exact_match" not in metrics:
            return ""
        return f"validation exact match {metrics['val_exact_match']:.4f}"

    def format_report(self, report: dict) -> str:
        if "exact_match" not in report:
            return super().format_report(report)
        lines = []
        width = report.get("beam") if isinstance(report.get("beam"), int) else 1
        lines.append(
            f"{report['data']} ({report['pairs']:,} pairs, "
            f"{'greedy' if width == 1 else f'beam {width}'}): exact match "
            f"{report['exact_match']:.4f}, character accuracy {report['char_accuracy']:.4f}, "
            f"BLEU {report['bleu']:.4f}"
        )
        if isinstance(report.get("beam"), dict):
            b = report["beam"]
            lines.append(
                f"{report['data']} (beam {b['beam']}): exact match {b['exact_match']:.4f}, "
                f"character accuracy {b['char_accuracy']:.4f}, BLEU {b['bleu']:.4f}"
            )
        return "\n".join(lines)


SPEC = Seq2SeqSpec()


def train_seq2seq(
    out: str | os.PathLike,
    *,
    data: PairData,
    model: dict | Seq2SeqConfig | None = None,
    train: TrainConfig | None = None,
    force: bool = False,
    callbacks: Sequence[Callback] = (),
) -> tuple[TrainResult, RunDir, dict]:
    """Train a :class:`Seq2Seq` into the run directory ``out`` and test it on the held-out
    pairs (:func:`rnnkit.runs.train_run` with :data:`SPEC`); default training: 3 epochs.

    Returns ``(result, run, test_metrics)`` (``{}`` when nothing is held out).
    """
    done = train_run(
        SPEC, out, data=data, model=model, train=train, force=force, callbacks=callbacks
    )
    return done.result, done.run, done.report


def resume_seq2seq(
    run_path: str | os.PathLike, *, limits: dict | None = None, callbacks: Sequence[Callback] = ()
) -> tuple[TrainResult, RunDir, dict]:
    """Continue a seq2seq run from its last checkpoint (:func:`rnnkit.runs.resume_run`)."""
    done = resume_run(run_path, limits=limits, callbacks=callbacks, task="seq2seq")
    return done.result, done.run, done.report


def load_seq2seq(run_path: str | os.PathLike) -> tuple[Seq2Seq, PairVocab, dict]:
    """A trained seq2seq model (eval mode), its vocabularies and its ``config.json``."""
    loaded = load_run(run_path, task="seq2seq")
    return loaded.task, loaded.encoders, loaded.config


def plot_attention(attention, source: str, output: str, path, title: str = "") -> None:
    """Write attention weights (rows: output characters and ``<E>``, columns: source characters)
    as a PNG heat map (matplotlib Agg), atomically. Characters missing from matplotlib's font
    (CJK with the default DejaVu Sans) show as boxes."""
    import io
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rnnkit.io import atomic_write_bytes

    weights = torch.as_tensor(attention, dtype=torch.float64).numpy()
    rows = [*output, "<E>"][: weights.shape[0]]
    columns = list(source)[: weights.shape[1]]
    fig, ax = plt.subplots(
        figsize=(max(4.0, 0.32 * len(columns) + 1.8), max(3.0, 0.32 * len(rows) + 1.4))
    )
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Glyph … missing from font(s)"
            image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
            ax.set_xticks(range(len(columns)), [c if c.strip() else "␣" for c in columns])
            ax.set_yticks(range(len(rows)), rows)
            ax.set_xlabel("source")
            ax.set_ylabel("output")
            ax.set_title(title or f"{source} → {output}", fontsize=9)
            fig.colorbar(image, ax=ax, fraction=0.04)
            fig.tight_layout()
            fig.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(fig)
    atomic_write_bytes(os.fspath(path), buffer.getvalue())
