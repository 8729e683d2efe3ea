"""The character language model: architecture, metrics, unknown characters, sampling."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rnnkit.data.vocab import CharVocab
from rnnkit.errors import InvalidInputError
from rnnkit.runs import load_run
from rnnkit.tasks.lm import LanguageModel, evaluate_text, generate


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and a busy machine makes more threads crawl)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**kw) -> LanguageModel:
    torch.manual_seed(0)
    options = dict(vocab_size=7, embedding_size=6, hidden_size=5, num_layers=2)
    options.update(kw)
    return LanguageModel(**options)


@pytest.mark.parametrize(
    "cell,layer_options",
    [
        ("lstm", {}),
        ("lstm", {"peephole": True, "layer_norm": True}),
        ("lstm", {"coupled": True, "proj_size": 3}),
        ("gru", {}),
        ("gru", {"reset_after": False}),
        ("rnn", {"nonlinearity": "relu"}),
        ("irnn", {}),
        ("lstm", {"zoneout": 0.1, "variational_dropout": 0.2, "weight_drop": 0.2}),
    ],
)
def test_every_cell_trains_through_step(cell, layer_options):
    lm = tiny(cell=cell, layer_options=layer_options, dropout=0.1)
    x = torch.randint(1, 7, (3, 4))
    out = lm.step((x, x))
    out.loss.backward()
    assert out.count == 12 and math.isfinite(out.loss.item())
    assert all(p.grad is not None for p in lm.parameters())
    again = LanguageModel.from_config(lm.config())
    assert again.config() == lm.config()


def test_loss_is_mean_cross_entropy_and_metrics_derive_from_it():
    lm = tiny()
    x, y = torch.randint(1, 7, (2, 5)), torch.randint(1, 7, (2, 5))
    logits, _ = lm(x)
    expected = F.cross_entropy(logits.reshape(-1, 7), y.reshape(-1))
    assert lm.step((x, y)).loss.item() == pytest.approx(expected.item(), rel=1e-6)
    metrics = lm.summarize(2.0 * 10, 10, {"unknown": 0})
    assert metrics["bpc"] == pytest.approx(2.0 / math.log(2))
    assert metrics["perplexity"] == pytest.approx(math.exp(2.0))


def test_state_carry_equals_one_long_sequence():
    lm = tiny().eval()
    x = torch.randint(1, 7, (2, 8))
    full, _ = lm(x)
    first, state = lm(x[:, :3])
    second, _ = lm(x[:, 3:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), full)


def test_weight_tying_shares_and_saves_once():
    lm = tiny(embedding_size=5, tie_weights=True)
    assert lm.decoder.weight is lm.embedding.weight
    assert "decoder.weight" not in lm.state_dict()
    other = tiny(embedding_size=5, tie_weights=True)
    other.load_state_dict(lm.state_dict())
    assert torch.equal(other.decoder.weight, lm.embedding.weight)
    with pytest.raises(ValueError, match="tie_weights needs embedding_size == the recurrent"):
        tiny(embedding_size=4, tie_weights=True)


def test_unknown_targets_are_not_scored_but_counted():
    lm = tiny().eval()
    vocab = CharVocab("abcdef")
    with torch.no_grad():
        plain = evaluate_text(lm, vocab, "abcabcab", batch_size=1, bptt=4)
        unknown = evaluate_text(lm, vocab, "abcabcaZ", batch_size=1, bptt=4)
    assert plain["characters"] == 7 and plain["unknown"] == 0
    assert unknown["characters"] == 6 and unknown["unknown"] == 1
    assert unknown["unknown_chars"] == ["Z"]


@pytest.fixture
def trained():
    """A model that has learned to continue 'abcd' cyclically."""
    torch.manual_seed(0)
    vocab = CharVocab("abcd")
    lm = LanguageModel(len(vocab), embedding_size=8, hidden_size=16, num_layers=1)
    ids = vocab.encode("abcd" * 30)
    opt = torch.optim.Adam(lm.parameters(), 0.05)
    for _ in range(60):
        opt.zero_grad()
        lm.step((ids[:-1].unsqueeze(0), ids[1:].unsqueeze(0))).loss.backward()
        opt.step()
    return lm.eval(), vocab


def test_sampling_is_seeded_greedy_with_top_k_1_and_never_unknown(trained):
    lm, vocab = trained
    greedy = "".join(generate(lm, vocab, "ab", 12, top_k=1))
    assert greedy == "cdabcdabcdab"
    a = "".join(generate(lm, vocab, "a", 50, temperature=3.0, seed=5))
    b = "".join(generate(lm, vocab, "a", 50, temperature=3.0, seed=5))
    assert a == b and len(a) == 50 and set(a) <= set("abcd")


def test_sampling_refuses_bad_values_and_unseen_prime(trained):
    lm, vocab = trained
    with pytest.raises(ValueError, match="temperature must be > 0"):
        next(generate(lm, vocab, "a", 5, temperature=0))
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        next(generate(lm, vocab, "a", 5, top_k=0))
    with pytest.raises(InvalidInputError, match=r"never saw in training: 'z'"):
        next(generate(lm, vocab, "abz", 5))


def test_chinese_text_end_to_end(tmp_path):
    from rnnkit.tasks.lm import TextData, load_language_model, train_language_model
    from rnnkit.train import TrainConfig

    text = "天地悠悠过客匆匆潮起又潮落" * 20
    (tmp_path / "zh.txt").write_text(text, encoding="utf-8")
    result, run = train_language_model(
        tmp_path / "run",
        data=TextData(text=str(tmp_path / "zh.txt"), batch_size=2, bptt=10),
        model=dict(embedding_size=8, hidden_size=16, num_layers=1),
        train=TrainConfig(steps=40, eval_every=20, lr=0.02),
    )
    assert result.metrics["val_loss"] < math.log(len(set(text)))  # better than uniform
    lm, vocab, config = load_language_model(run.path)
    assert config["data"]["characters"] == len(text)
    sample = "".join(generate(lm, vocab, "天地", 20, seed=0))
    assert len(sample) == 20 and set(sample) <= set(text)
    assert isinstance(load_run(run.path).task, LanguageModel)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_evaluate_text_scores_every_character_like_one_stream(cell):
    lm = tiny(cell=cell).eval()
    vocab = CharVocab("abcdef")
    text = "abcdefabcfedcbafeabcdefaabbcc"
    streamed = evaluate_text(lm, vocab, text, batch_size=1, bptt=100)
    ids = vocab.encode(text).unsqueeze(0)
    with torch.no_grad():
        logits, _ = lm(ids[:, :-1])
    expected = F.cross_entropy(logits.reshape(-1, 7), ids[0, 1:]).item()
    assert streamed["loss"] == pytest.approx(expected, rel=1e-6)
    assert streamed["characters"] == len(text) - 1
    # several streams plus a tail: every character is scored once
    many = evaluate_text(lm, vocab, text, batch_size=3, bptt=4)
    assert many["characters"] == len(text) - 1
