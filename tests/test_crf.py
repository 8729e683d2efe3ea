"""The CRF against brute-force enumeration of every tag path on tiny cases (float64)."""

from __future__ import annotations

import itertools

import pytest
import torch

from rnnkit.tasks.crf import CRF


def path_score(crf: CRF, emissions: torch.Tensor, path: tuple[int, ...]) -> torch.Tensor:
    """s(y) written out term by term, for one sentence: emissions (n, K)."""
    total = crf.start[path[0]] + crf.end[path[-1]]
    for t, k in enumerate(path):
        total = total + emissions[t, k]
    for prev, nxt in zip(path, path[1:]):
        total = total + crf.transitions[prev, nxt]
    return total


def brute_force(crf: CRF, emissions: torch.Tensor, n: int):
    """(log Z, best path, best score) over all K^n paths of the first n steps."""
    K = emissions.shape[-1]
    scores = {p: path_score(crf, emissions, p) for p in itertools.product(range(K), repeat=n)}
    log_z = torch.logsumexp(torch.stack(list(scores.values())), dim=0)
    best = max(scores, key=lambda p: scores[p].item())
    return log_z, list(best), scores[best]


def random_crf(K: int, seed: int) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(K).double()
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_(0, 1.0)
    return crf


@pytest.mark.parametrize("K,T", [(1, 3), (2, 1), (3, 4), (4, 3), (2, 5)])
def test_log_partition_and_viterbi_match_enumeration(K, T):
    crf = random_crf(K, seed=K * 10 + T)
    B = 4
    emissions = torch.randn(B, T, K, dtype=torch.float64) * 2
    lengths = torch.tensor([T, max(1, T - 1), 1, max(1, T - 2)])
    log_z = crf.log_partition(emissions, lengths)
    paths, best_scores = crf.viterbi(emissions, lengths)
    decoded = crf.decode(emissions, lengths)
    for b in range(B):
        n = int(lengths[b])
        ref_z, ref_path, ref_best = brute_force(crf, emissions[b], n)
        torch.testing.assert_close(log_z[b], ref_z, rtol=1e-12, atol=1e-12)
        assert decoded[b] == ref_path
        assert paths[b, :n].tolist() == ref_path and (paths[b, n:] == -1).all()
        torch.testing.assert_close(best_scores[b], ref_best, rtol=1e-12, atol=1e-12)


def test_score_and_likelihood_normalise():
    """score() equals the written-out sum, and exp(-nll) sums to 1 over all paths."""
    K, T = 3, 4
    crf = random_crf(K, seed=1)
    emissions = torch.randn(2, T, K, dtype=torch.float64)
    lengths = torch.tensor([4, 3])
    for b, n in enumerate(lengths.tolist()):
        total = torch.zeros((), dtype=torch.float64)
        for path in itertools.product(range(K), repeat=n):
            tags = torch.full((2, T), -100)
            tags[b, :n] = torch.tensor(path)
            tags[1 - b, :] = 0
            torch.testing.assert_close(
                crf.score(emissions, tags, lengths)[b], path_score(crf, emissions[b], path)
            )
            total = total + torch.exp(-crf(emissions, tags, lengths)[b])
        torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64))


def test_padding_is_ignored():
    """Values past a sentence's length change nothing."""
    crf = random_crf(3, seed=2)
    emissions = torch.randn(1, 5, 3, dtype=torch.float64)
    tags = torch.tensor([[0, 2, 1, 0, 0]])
    lengths = torch.tensor([3])
    other = emissions.clone()
    other[:, 3:] = 1e3
    other_tags = tags.clone()
    other_tags[:, 3:] = 2
    torch.testing.assert_close(crf(emissions, tags, lengths), crf(other, other_tags, lengths))
    assert crf.decode(emissions, lengths) == crf.decode(other, lengths)


def test_gradient_is_expected_counts():
    """d log Z / d emissions = tag marginals (each row sums to 1): checks autograd end to end."""
    crf = random_crf(3, seed=3)
    emissions = torch.randn(1, 4, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([3])
    (grad,) = torch.autograd.grad(crf.log_partition(emissions, lengths).sum(), emissions)
    torch.testing.assert_close(grad[0, :3].sum(-1), torch.ones(3, dtype=torch.float64))
    assert (grad[0, 3] == 0).all()
    # marginal of tag k at t, by enumeration
    n, K = 3, 3
    log_z, _, _ = brute_force(crf, emissions[0].detach(), n)
    marginals = torch.zeros(n, K, dtype=torch.float64)
    for path in itertools.product(range(K), repeat=n):
        p = torch.exp(path_score(crf, emissions[0].detach(), path) - log_z)
        for t, k in enumerate(path):
            marginals[t, k] += p.detach()
    torch.testing.assert_close(grad[0, :3], marginals)


def test_untrained_crf_decodes_as_argmax():
    crf = CRF(5)
    emissions = torch.randn(3, 6, 5)
    lengths = torch.tensor([6, 4, 1])
    expected = [emissions[b, : int(n)].argmax(-1).tolist() for b, n in enumerate(lengths)]
    assert crf.decode(emissions, lengths) == expected


def test_bad_arguments():
    crf = CRF(3)
    with pytest.raises(ValueError, match=r"emissions must be \(B, T, 3\)"):
        crf.log_partition(torch.randn(2, 4, 5), torch.tensor([4, 4]))
    with pytest.raises(ValueError, match="lengths must be in 1..4"):
        crf.log_partition(torch.randn(2, 4, 3), torch.tensor([4, 0]))
    with pytest.raises(ValueError, match="num_tags must be >= 1"):
        CRF(0)
