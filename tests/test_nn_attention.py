import pytest
import torch
from torch_geometric.utils import to_dense_batch

from samsa_geo.nn import SAMSAAttention


def make_attention(channels=8, heads=2, k=3, seed=0, **kwargs):
    torch.manual_seed(seed)
    return SAMSAAttention(channels, heads=heads, k=k, **kwargs).eval()


def test_samsa_attention_repr():
    assert repr(SAMSAAttention(16, heads=4, k=8)) == "SAMSAAttention(16, heads=4, k=8)"
    assert repr(SAMSAAttention(16, ratio=0.25)) == "SAMSAAttention(16, heads=1, ratio=0.25)"


@pytest.mark.parametrize("channels, heads", [(10, 3), (0, 1), (8, 0)])
def test_samsa_attention_invalid_heads(channels, heads):
    with pytest.raises(ValueError, match="'channels' must be a positive multiple of 'heads'"):
        SAMSAAttention(channels, heads=heads, k=2)


def test_samsa_attention_invalid_k():
    with pytest.raises(ValueError, match="'k'.*got 0"):
        SAMSAAttention(8, heads=2, k=0)


def test_samsa_attention_invalid_mask():
    attention = make_attention()
    x = torch.randn(2, 5, 8)

    with pytest.raises(ValueError, match="'mask' must be a bool tensor of shape"):
        attention(x, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="'mask' must be a bool tensor of shape"):
        attention(x, torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"'x' must have shape \[B, N, F\]"):
        attention(x[0])


def test_samsa_attention_shape_without_mask():
    attention = make_attention()
    x = torch.randn(3, 6, 8)

    out = attention(x)

    assert out.shape == (3, 6, 8)
    assert torch.isfinite(out).all()


def test_samsa_attention_matches_conv():
    attention = make_attention()
    sizes = torch.tensor([4, 7, 1])
    x = torch.randn(int(sizes.sum()), 8)
    batch = torch.repeat_interleave(torch.arange(3), sizes)
    dense, mask = to_dense_batch(x, batch)

    out = attention(dense, mask)

    assert out.shape == (3, 7, 8)
    assert (out[~mask] == 0).all()
    assert torch.allclose(out[mask], attention.conv(x, batch=batch), atol=1e-5)


def test_samsa_attention_ignores_padding_values():
    attention = make_attention()
    x = torch.randn(2, 6, 8)
    mask = torch.tensor([[True, False, True, True, False, True],
                         [True, True, True, False, False, False]])

    out = attention(x, mask)
    noisy = x.clone()
    noisy[~mask] = 1e3
    out_noisy = attention(noisy, mask)

    assert torch.equal(out, out_noisy)
    assert (out[~mask] == 0).all()


def test_samsa_attention_all_padding_row():
    attention = make_attention()
    x = torch.randn(2, 4, 8)
    mask = torch.tensor([[True, True, True, False], [False, False, False, False]])

    out = attention(x, mask)

    assert (out[1] == 0).all()
    assert torch.allclose(out[0, :3], attention(x[:1, :3])[0], atol=1e-5)


def test_samsa_attention_reset_parameters():
    attention = make_attention()
    with torch.no_grad():
        attention.conv.lin_out.weight.fill_(0.0)

    attention.reset_parameters()

    assert not (attention.conv.lin_out.weight == 0).all()


def test_samsa_attention_backward():
    attention = make_attention().train()
    x = torch.randn(2, 6, 8, requires_grad=True)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])

    attention(x, mask).sum().backward()

    assert torch.isfinite(x.grad).all()
    assert (x.grad[1, 3:] == 0).all()
