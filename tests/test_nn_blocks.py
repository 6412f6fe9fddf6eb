import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import GINConv, GPSConv

from samsa_geo.nn import SAMSAAttention, SAMSABlock, SAMSAConv, SAMSAEncoder, SAMSAGPSConv
from samsa_geo.nn import drop_path


def make_batch(sizes, channels=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(sizes), channels, generator=generator)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return x, batch


def make_chain_dataset(sizes, channels=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    dataset = []
    for n in sizes:
        chain = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
        edge_index = torch.cat([chain, chain.flip(0)], dim=1)
        dataset.append(Data(x=torch.randn(n, channels, generator=generator), edge_index=edge_index))
    return dataset


def test_drop_path_whole_graphs():
    x = torch.ones(40, 3)
    batch = torch.repeat_interleave(torch.arange(8), 5)

    out = drop_path(x, 0.5, batch, 8, training=True, generator=torch.Generator().manual_seed(0))

    per_graph = out.view(8, 5, 3)
    assert set(per_graph.unique().tolist()) <= {0.0, 2.0}
    for graph in range(8):
        assert per_graph[graph].unique().numel() == 1


def test_drop_path_expectation():
    x = torch.ones(2000, 1)
    batch = torch.arange(2000)

    out = drop_path(x, 0.25, batch, 2000, training=True, generator=torch.Generator().manual_seed(0))

    assert abs(out.mean().item() - 1.0) < 0.05
    assert 0.2 < (out == 0).float().mean().item() < 0.3


def test_drop_path_eval_identity():
    x = torch.randn(6, 3)
    batch = torch.tensor([0, 0, 1, 1, 2, 2])

    assert drop_path(x, 0.5, batch, 3, training=False) is x


def test_drop_path_invalid_p():
    with pytest.raises(ValueError, match="'p' must lie in \\[0, 1\\), got 1.0"):
        drop_path(torch.ones(2, 1), 1.0, torch.zeros(2, dtype=torch.long), 1)


def test_samsa_block_repr():
    assert repr(SAMSABlock(16, heads=4, k=8)) == "SAMSABlock(16, heads=4, k=8)"


def test_samsa_block_starts_as_identity():
    block = SAMSABlock(8, heads=2, k=3).eval()
    x, batch = make_batch([5, 7])

    assert torch.equal(block(x, batch), x)


def test_samsa_block_gamma_one():
    torch.manual_seed(0)
    block = SAMSABlock(8, heads=2, k=3, gamma_init=1.0).eval()
    x, batch = make_batch([5, 7])

    out, info = block(x, batch, return_sampling=True)

    assert out.shape == (12, 8)
    assert not torch.allclose(out, x)
    assert info.index.shape == (2, 2, 3)


def test_samsa_block_gamma_learns():
    block = SAMSABlock(8, heads=2, k=3).train()
    x, batch = make_batch([5, 7])

    block(x, batch).square().sum().backward()

    assert block.gamma.grad is not None
    assert block.gamma.grad.abs() > 0


def test_samsa_block_drop_path_per_graph():
    torch.manual_seed(0)
    block = SAMSABlock(8, heads=2, k=3, gamma_init=1.0, drop_path=0.5).train()
    x, batch = make_batch([4] * 16)

    out = block(x, batch, generator=torch.Generator().manual_seed(1))

    unchanged = (out == x).all(dim=-1).view(16, 4)
    assert (unchanged.all(dim=1) | ~unchanged.any(dim=1)).all()
    assert 0 < unchanged.all(dim=1).sum() < 16


@pytest.mark.parametrize("kwargs, match", [
    (dict(channels=10, heads=3, k=2), "'channels' must be a positive multiple of 'heads'"),
    (dict(channels=8, heads=2, k=2, drop_path=1.0), "'drop_path'.*got 1.0"),
    (dict(channels=8, heads=2, k=2, mlp_ratio=0), "'mlp_ratio'.*got 0"),
    (dict(channels=8, heads=2, ratio=2.0), "'ratio'.*got 2.0"),
])
def test_samsa_block_invalid_option(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SAMSABlock(**kwargs)


def test_samsa_encoder_forward():
    torch.manual_seed(0)
    encoder = SAMSAEncoder(8, num_layers=3, heads=2, k=2, gamma_init=1.0, drop_path=0.2).eval()
    x, batch = make_batch([5, 1, 7])

    out, infos = encoder(x, batch, return_sampling=True)

    assert out.shape == (13, 8)
    assert len(infos) == 3
    assert all(info.index.shape == (3, 2, 2) for info in infos)
    assert [block.drop_path for block in encoder.blocks] == pytest.approx([0.0, 0.1, 0.2])
    assert repr(encoder) == "SAMSAEncoder(8, num_layers=3, heads=2, k=2)"


def test_samsa_encoder_batch_equals_single():
    torch.manual_seed(0)
    encoder = SAMSAEncoder(8, num_layers=2, heads=2, ratio=0.5, gamma_init=1.0).eval()
    x, batch = make_batch([6, 3, 8])

    out = encoder(x, batch)

    for graph in range(3):
        rows = (batch == graph).nonzero().view(-1)
        assert torch.allclose(out[rows], encoder(x[rows]), atol=1e-5)


def test_samsa_encoder_reset_parameters():
    encoder = SAMSAEncoder(8, num_layers=2, heads=2, k=2)
    with torch.no_grad():
        for block in encoder.blocks:
            block.gamma.fill_(3.0)

    encoder.reset_parameters()

    assert all(block.gamma.item() == 0.0 for block in encoder.blocks)


def test_samsa_gps_conv_repr():
    conv = SAMSAGPSConv(16, conv=None, heads=4, k=8)

    assert repr(conv) == ("SAMSAGPSConv(16, conv=None, heads=4, "
                          "attn=SAMSAConv(16, 4, heads=4, k=8))")


def test_samsa_gps_conv_like_gps_conv():
    channels = 8
    local = GINConv(torch.nn.Linear(channels, channels))
    conv = SAMSAGPSConv(channels, local, heads=2, k=3)
    gps = GPSConv(channels, GINConv(torch.nn.Linear(channels, channels)), heads=2)
    loader = DataLoader(make_chain_dataset([4, 9, 2, 6]), batch_size=4)
    data = next(iter(loader))

    out = conv(data.x, data.edge_index, data.batch)
    out_gps = gps(data.x, data.edge_index, data.batch)

    assert out.shape == out_gps.shape == (21, channels)
    assert torch.isfinite(out).all()


def test_samsa_gps_conv_batch_equals_single():
    torch.manual_seed(0)
    conv = SAMSAGPSConv(8, GINConv(torch.nn.Linear(8, 8)), heads=2, k=3, norm="layer_norm",
                        norm_kwargs=dict(mode="node")).eval()
    dataset = make_chain_dataset([5, 7, 3])
    data = next(iter(DataLoader(dataset, batch_size=3)))

    out = conv(data.x, data.edge_index, data.batch)

    for graph, single in enumerate(dataset):
        expected = conv(single.x, single.edge_index)
        assert torch.allclose(out[data.ptr[graph]:data.ptr[graph + 1]], expected, atol=1e-5)


def test_samsa_gps_conv_custom_attention():
    class DenseSAMSA(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = SAMSAAttention(8, heads=2, k=2)

        def forward(self, x, batch=None):
            from torch_geometric.utils import to_dense_batch
            dense, mask = to_dense_batch(x, batch)
            return self.attn(dense, mask)[mask]

    attn = DenseSAMSA()
    conv = SAMSAGPSConv(8, None, attn=attn, norm=None)
    x, batch = make_batch([3, 6])

    out = conv(x, torch.empty(2, 0, dtype=torch.long), batch)

    assert conv.attn is attn
    assert out.shape == (9, 8)


def test_samsa_gps_conv_attn_kwargs():
    conv = SAMSAGPSConv(8, None, heads=2, k=3, attn_kwargs=dict(num_registers=4))

    assert isinstance(conv.attn, SAMSAConv)
    assert conv.attn.num_registers == 4


def test_samsa_gps_conv_reset_parameters():
    conv = SAMSAGPSConv(8, GINConv(torch.nn.Linear(8, 8)), heads=2, k=3)
    with torch.no_grad():
        conv.attn.lin_out.weight.fill_(0.0)
        conv.mlp[0].weight.fill_(0.0)

    conv.reset_parameters()

    assert not (conv.attn.lin_out.weight == 0).all()
    assert not (conv.mlp[0].weight == 0).all()


def test_samsa_gps_conv_training_step():
    torch.manual_seed(0)
    conv = SAMSAGPSConv(8, GINConv(torch.nn.Linear(8, 8)), heads=2, k=2).train()
    data = next(iter(DataLoader(make_chain_dataset([6, 8, 5, 7]), batch_size=4)))

    out = conv(data.x, data.edge_index, data.batch)
    out.square().mean().backward()

    assert conv.attn.lin_score.weight.grad.abs().sum() > 0


def test_gps_positional_order_matches_pyg():
    conv = GINConv(torch.nn.Linear(8, 8))
    layer = SAMSAGPSConv(8, conv, 2, 0.1, "gelu", k=3)

    assert layer.heads == 2
    assert layer.dropout == 0.1
    assert layer.attn.heads == 2


def test_gps_rejects_other_attn_type():
    with pytest.raises(ValueError, match="attn_type='multihead'"):
        SAMSAGPSConv(8, None, heads=2, k=3, attn_type="multihead")
