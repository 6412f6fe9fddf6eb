import math

import pytest
import torch

from samsa_geo.ops import gumbel_noise, segment_gumbel_topk, segment_topk

EULER_GAMMA = 0.5772156649015329


def inclusion_frequencies(scores, k, draws, seed):
    """Draw ``k`` of the nodes of one small graph ``draws`` times, as a batch
    of identical graphs, and return how often each node was drawn."""
    n = scores.numel()
    batched = scores.repeat(draws)
    ptr = torch.arange(draws + 1) * n
    generator = torch.Generator().manual_seed(seed)

    index, mask, _ = segment_gumbel_topk(batched, k=k, ptr=ptr, generator=generator)
    local = index[mask] % n
    return torch.bincount(local, minlength=n).double() / draws


def exact_inclusion_k2_of_3(scores):
    """Exact probability that each of 3 items is among 2 drawn without
    replacement from softmax(scores)."""
    p = torch.softmax(scores.double(), dim=0)
    result = torch.empty(3, dtype=torch.float64)
    for i in range(3):
        j, l = [m for m in range(3) if m != i]
        excluded = p[j] * p[l] / (1 - p[j]) + p[l] * p[j] / (1 - p[l])
        result[i] = 1 - excluded
    return result


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_gumbel_noise_shape_dtype(dtype):
    like = torch.zeros(3, 5, dtype=dtype)
    noise = gumbel_noise(like)

    assert noise.shape == like.shape
    assert noise.dtype == dtype
    assert torch.isfinite(noise).all()
    assert not noise.requires_grad


def test_gumbel_noise_generator_reproducible():
    like = torch.zeros(100)
    first = gumbel_noise(like, generator=torch.Generator().manual_seed(7))
    second = gumbel_noise(like, generator=torch.Generator().manual_seed(7))
    other = gumbel_noise(like, generator=torch.Generator().manual_seed(8))

    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_gumbel_noise_moments():
    noise = gumbel_noise(torch.zeros(400_000, dtype=torch.float64), torch.Generator().manual_seed(0))

    # Standard Gumbel: mean is the Euler-Mascheroni constant, variance pi^2 / 6.
    assert abs(float(noise.mean()) - EULER_GAMMA) < 0.01
    assert abs(float(noise.var()) - math.pi**2 / 6) < 0.02


def test_gumbel_noise_integer_raises():
    with pytest.raises(ValueError, match="floating-point"):
        gumbel_noise(torch.zeros(3, dtype=torch.long))


def test_segment_gumbel_topk_reproducible():
    scores = torch.randn(30, 2)
    ptr = torch.tensor([0, 10, 30])
    first = segment_gumbel_topk(scores, k=3, ptr=ptr, generator=torch.Generator().manual_seed(1))
    second = segment_gumbel_topk(scores, k=3, ptr=ptr, generator=torch.Generator().manual_seed(1))

    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_segment_gumbel_topk_index_ranks_perturbed():
    scores = torch.randn(12, 3)
    ptr = torch.tensor([0, 5, 5, 12])
    index, mask, perturbed = segment_gumbel_topk(scores, k=2, ptr=ptr)

    expected_index, expected_mask = segment_topk(perturbed, k=2, ptr=ptr)
    assert torch.equal(index, expected_index)
    assert torch.equal(mask, expected_mask)
    assert not torch.equal(perturbed, scores)


def test_segment_gumbel_topk_perturbed_keeps_grad():
    scores = torch.randn(6, requires_grad=True)
    _, _, perturbed = segment_gumbel_topk(scores, k=2)
    perturbed.sum().backward()

    assert torch.equal(scores.grad, torch.ones(6))


def test_segment_gumbel_topk_k1_matches_softmax():
    scores = torch.tensor([1.0, 0.0, -1.0])
    draws = 60_000
    frequencies = inclusion_frequencies(scores, k=1, draws=draws, seed=0)
    expected = torch.softmax(scores.double(), dim=0)

    # Five standard errors of a binomial frequency.
    tolerance = 5 * torch.sqrt(expected * (1 - expected) / draws)
    assert (frequencies - expected).abs().le(tolerance).all(), (frequencies, expected)


def test_segment_gumbel_topk_k2_of_3_inclusion():
    scores = torch.tensor([2.0, 0.5, -1.0])
    draws = 60_000
    frequencies = inclusion_frequencies(scores, k=2, draws=draws, seed=1)
    expected = exact_inclusion_k2_of_3(scores)

    tolerance = 5 * torch.sqrt(expected * (1 - expected) / draws)
    assert (frequencies - expected).abs().le(tolerance).all(), (frequencies, expected)
    assert abs(float(frequencies.sum()) - 2.0) < 1e-9


def test_segment_gumbel_topk_nan_raises():
    with pytest.raises(ValueError, match="'scores' contains"):
        segment_gumbel_topk(torch.tensor([0.0, float("nan")]), k=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_segment_gumbel_topk_cuda_generator():
    scores = torch.randn(50, 2, device="cuda")
    draws = [
        segment_gumbel_topk(scores, k=5, generator=torch.Generator("cuda").manual_seed(3))[0]
        for _ in range(2)
    ]

    assert draws[0].device.type == "cuda"
    assert torch.equal(draws[0], draws[1])
