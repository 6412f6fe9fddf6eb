import subprocess
import sys

import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.transforms import AddLaplacianEigenvectorPE, AddRandomWalkPE
from torch_geometric.utils import get_laplacian, to_dense_adj, to_undirected

from samsa_geo.backend import has, pure_pytorch
from samsa_geo.encoders import (
    DeterministicLaplacianPE,
    FourierPointEncoding,
    LapPEEncoder,
    LocalKNNEmbedding,
    RWSEEncoder,
    canonical_sign,
)


def path_graph(num_nodes):
    edge_index = torch.stack([torch.arange(num_nodes - 1), torch.arange(1, num_nodes)])
    return Data(edge_index=to_undirected(edge_index), num_nodes=num_nodes)


def random_graph(num_nodes, num_extra_edges, seed):
    generator = torch.Generator().manual_seed(seed)
    chain = torch.stack([torch.arange(num_nodes - 1), torch.arange(1, num_nodes)])
    extra = torch.randint(0, num_nodes, (2, num_extra_edges), generator=generator)
    extra = extra[:, extra[0] != extra[1]]
    edge_index = to_undirected(torch.cat([chain, extra], dim=1))
    return Data(edge_index=edge_index, num_nodes=num_nodes)


def align_signs(pe, reference):
    sign = torch.sign((pe * reference).sum(dim=0))
    return pe * sign


@pytest.mark.parametrize("num_nodes,dense_max_nodes", [(30, 2000), (150, 2000), (150, 50)])
def test_lap_pe_repeatable(num_nodes, dense_max_nodes):
    transform = DeterministicLaplacianPE(4, dense_max_nodes=dense_max_nodes)
    graph = random_graph(num_nodes, num_nodes, seed=0)
    first = transform(graph.clone()).laplacian_eigenvector_pe
    second = transform(graph.clone()).laplacian_eigenvector_pe
    assert first.dtype == torch.float32
    assert first.shape == (num_nodes, 4)
    assert torch.equal(first, second)


def test_lap_pe_repeatable_fresh_process():
    code = (
        "import torch\n"
        "from torch_geometric.data import Data\n"
        "from torch_geometric.utils import to_undirected\n"
        "from samsa_geo.encoders import DeterministicLaplacianPE\n"
        "e = to_undirected(torch.tensor([[0, 1, 2, 3, 4, 0], [1, 2, 3, 4, 5, 3]]))\n"
        "pe = DeterministicLaplacianPE(3)(Data(edge_index=e, num_nodes=6))\n"
        "print(pe.laplacian_eigenvector_pe.numpy().tobytes().hex())\n"
    )
    # One fresh interpreter costs seconds, because it imports torch and PyG.
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, env={"OMP_NUM_THREADS": "1", "PATH": ""}).stdout
    edge_index = to_undirected(torch.tensor([[0, 1, 2, 3, 4, 0], [1, 2, 3, 4, 5, 3]]))
    here = DeterministicLaplacianPE(3)(Data(edge_index=edge_index, num_nodes=6))
    assert output.strip() == here.laplacian_eigenvector_pe.numpy().tobytes().hex()


@pytest.mark.parametrize("num_nodes,dense_max_nodes", [(40, 2000), (160, 2000), (160, 50)])
def test_lap_pe_matches_pyg(num_nodes, dense_max_nodes):
    pytest.importorskip("scipy")
    graph = random_graph(num_nodes, num_nodes // 2, seed=1)

    # The comparison is only meaningful where eigenvalues are distinct.
    index, weight = get_laplacian(graph.edge_index, normalization="sym", num_nodes=num_nodes)
    laplacian = to_dense_adj(index, edge_attr=weight, max_num_nodes=num_nodes)[0].double()
    values = torch.linalg.eigvalsh(laplacian)[:6]
    assert float((values[1:] - values[:-1]).min()) > 1e-3

    ours = DeterministicLaplacianPE(4, dense_max_nodes=dense_max_nodes)(graph.clone())
    theirs = AddLaplacianEigenvectorPE(4, is_undirected=True)(graph.clone())
    theirs = theirs.laplacian_eigenvector_pe.float()
    pe = ours.laplacian_eigenvector_pe
    assert torch.allclose(align_signs(pe, theirs), theirs, atol=1e-4)


def test_lap_pe_keeps_global_rng():
    torch.manual_seed(7)
    state = torch.get_rng_state()
    DeterministicLaplacianPE(3, dense_max_nodes=10)(random_graph(60, 30, seed=2))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("num_nodes", [0, 1, 2, 4])
def test_lap_pe_pads_small_graphs(num_nodes):
    graph = path_graph(num_nodes) if num_nodes > 1 else Data(
        edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=num_nodes)
    pe = DeterministicLaplacianPE(4)(graph).laplacian_eigenvector_pe
    assert pe.shape == (num_nodes, 4)
    assert bool((pe[:, max(num_nodes - 1, 0):] == 0).all())


def test_lap_pe_batches_mixed_sizes():
    transform = DeterministicLaplacianPE(3)
    graphs = [transform(path_graph(n)) for n in (2, 3, 7)]
    batch = Batch.from_data_list(graphs)
    assert batch.laplacian_eigenvector_pe.shape == (12, 3)


def test_lap_pe_into_x():
    graph = path_graph(5)
    graph.x = torch.ones(5, 2)
    out = DeterministicLaplacianPE(2, attr_name=None)(graph)
    assert out.x.shape == (5, 4)


def test_lap_pe_invalid_arguments():
    with pytest.raises(ValueError, match="'k'"):
        DeterministicLaplacianPE(0)
    with pytest.raises(ValueError, match="'v0'"):
        DeterministicLaplacianPE(2, v0=None)


def test_canonical_sign():
    vectors = torch.tensor([[0.5, -0.1, 0.0], [-0.7, 0.1, 0.0], [0.2, 0.0, 0.0]])
    out = canonical_sign(vectors)
    expected = torch.tensor([[-0.5, 0.1, 0.0], [0.7, -0.1, 0.0], [-0.2, 0.0, 0.0]])
    assert torch.equal(out, expected)
    assert torch.equal(canonical_sign(-vectors), out)


def test_lap_encoder_flips_only_in_training():
    torch.manual_seed(0)
    encoder = LapPEEncoder(3, 3)
    with torch.no_grad():
        encoder.lin.weight.copy_(torch.eye(3))
        encoder.lin.bias.zero_()
    pe = torch.rand(40, 3) + 0.1
    batch = torch.arange(8).repeat_interleave(5)

    encoder.eval()
    assert torch.equal(encoder(pe, batch), pe)

    encoder.train()
    sign = torch.sign(encoder(pe, batch))
    per_graph = sign.view(8, 5, 3)
    assert bool((per_graph == per_graph[:, :1]).all())
    assert bool((sign == -1).any())
    assert bool((sign == 1).any())


def test_lap_encoder_no_flip_option():
    encoder = LapPEEncoder(3, 4, sign_flip=False).train()
    pe = torch.rand(6, 3)
    assert torch.equal(encoder(pe), encoder(pe))


def test_lap_encoder_sign_invariant():
    torch.manual_seed(0)
    encoder = LapPEEncoder(4, 8, sign_invariant=True).train()
    pe = torch.randn(10, 4)
    flips = torch.tensor([1.0, -1.0, -1.0, 1.0])
    assert torch.allclose(encoder(pe), encoder(-pe))
    assert torch.allclose(encoder(pe), encoder(pe * flips))
    assert encoder(pe).shape == (10, 8)


def test_lap_encoder_reset_parameters():
    encoder = LapPEEncoder(4, 8, sign_invariant=True)
    pe = torch.randn(5, 4)
    before = encoder(pe)
    torch.manual_seed(123)
    encoder.reset_parameters()
    assert not torch.allclose(encoder(pe), before)


@pytest.mark.parametrize("pe", [torch.rand(5, 3), torch.rand(5)])
def test_lap_encoder_bad_shape(pe):
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        LapPEEncoder(4, 8)(pe)


def test_lap_encoder_rejects_nan():
    pe = torch.rand(5, 4)
    pe[2, 1] = float("nan")
    with pytest.raises(ValueError, match="'pe'"):
        LapPEEncoder(4, 8)(pe)


def test_rwse_encoder_on_pyg_pe():
    graphs = [AddRandomWalkPE(6)(path_graph(n)) for n in (1, 3, 5)]
    batch = Batch.from_data_list(graphs)
    encoder = RWSEEncoder(6, 16)
    out = encoder(batch.random_walk_pe, batch.batch)
    assert out.shape == (9, 16)
    assert bool(torch.isfinite(out).all())
    assert encoder(torch.rand(1, 6)).shape == (1, 16)
    assert encoder(torch.rand(0, 6)).shape == (0, 16)
    with pytest.raises(ValueError, match="walk_length=6"):
        encoder(torch.rand(4, 5))


@pytest.mark.parametrize("module,expected", [
    (LapPEEncoder(8, 16), "LapPEEncoder(8, 16, sign_flip=True, sign_invariant=False)"),
    (RWSEEncoder(20, 16), "RWSEEncoder(20, 16)"),
    (FourierPointEncoding(6), "FourierPointEncoding(6, include_input=True, use_normals=False)"),
    (LocalKNNEmbedding(-1, 32, k=8), "LocalKNNEmbedding(-1, 32, k=8)"),
    (DeterministicLaplacianPE(4), "DeterministicLaplacianPE(4, attr_name='laplacian_eigenvector_pe')"),
])
def test_encoder_repr(module, expected):
    assert repr(module) == expected


def test_fourier_known_values():
    encoding = FourierPointEncoding(2)
    out = encoding(torch.tensor([[0.5, 0.0, 0.25]]))
    expected = [0.5, 0.0, 0.25,
                1.0, 0.0, 0.5 ** 0.5,      # sin(pi * p)
                0.0, 0.0, 1.0,             # sin(2 pi * p)
                0.0, 1.0, 0.5 ** 0.5,      # cos(pi * p)
                -1.0, 1.0, 0.0]            # cos(2 pi * p)
    assert encoding.out_channels == 15
    assert out.shape == (1, 15)
    assert out[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_fourier_normals_and_options():
    pos, normal = torch.rand(7, 3), torch.rand(7, 3)
    encoding = FourierPointEncoding(3, include_input=False, use_normals=True)
    out = encoding(pos, normal)
    assert encoding.out_channels == 21
    assert out.shape == (7, 21)
    assert torch.equal(out[:, -3:], normal)
    with pytest.raises(ValueError, match="'normal'"):
        encoding(pos)
    with pytest.raises(ValueError, match="'normal'"):
        FourierPointEncoding(3)(pos, normal)
    with pytest.raises(ValueError, match="'pos'"):
        FourierPointEncoding(3)(torch.rand(7, 2))


def reference_local_knn(module, x, pos, batch, k):
    # Brute-force neighbours per point inside its own graph, then the same MLP.
    out = []
    for i in range(pos.size(0)):
        same = (batch == batch[i]).nonzero().view(-1)
        distance = (pos[same] - pos[i]).norm(dim=-1)
        distance[same == i] = float("inf")
        order = distance.argsort()[:min(k, same.numel() - 1)]
        neighbours = torch.cat([same[order], torch.tensor([i])])
        message = torch.cat([x[neighbours], pos[neighbours] - pos[i]], dim=-1)
        out.append(module.mlp(message).max(dim=0).values)
    return torch.stack(out)


def test_local_knn_matches_reference():
    torch.manual_seed(0)
    x, pos = torch.randn(23, 4), torch.randn(23, 3)
    batch = torch.tensor([0] * 2 + [1] * 15 + [3] * 6)
    module = LocalKNNEmbedding(4, 16, k=5)
    out = module(x, pos, batch)
    assert out.shape == (23, 16)
    assert torch.allclose(out, reference_local_knn(module, x, pos, batch, k=5), atol=1e-5)


def test_local_knn_never_mixes_graphs():
    torch.manual_seed(0)
    x, pos = torch.randn(30, 4), torch.randn(30, 3)
    batch = torch.tensor([0] * 12 + [1] * 18)
    module = LocalKNNEmbedding(-1, 8, k=4)
    together = module(x, pos, batch)

    # Graph 1 moved onto graph 0 changes nothing for graph 0.
    moved = pos.clone()
    moved[12:] = pos[:12].mean(dim=0) + 0.01 * torch.randn(18, 3)
    assert torch.allclose(module(x, moved, batch)[:12], together[:12])
    assert torch.allclose(module(x[:12], pos[:12]), together[:12])
    assert torch.allclose(module(x[12:], pos[12:]), together[12:])


def test_local_knn_positions_only_and_empty():
    module = LocalKNNEmbedding(0, 8, k=3)
    assert module(None, torch.randn(5, 3)).shape == (5, 8)
    assert module(None, torch.randn(0, 3)).shape == (0, 8)
    with pytest.raises(ValueError, match="'x'"):
        LocalKNNEmbedding(4, 8)(None, torch.randn(5, 3))
    with pytest.raises(ValueError, match="rows"):
        module(torch.randn(4, 2), torch.randn(5, 3))


@pytest.mark.skipif(not has("torch_cluster"), reason="torch-cluster is not installed")
def test_local_knn_backends_agree():
    torch.manual_seed(0)
    x, pos = torch.randn(40, 4), torch.randn(40, 3)
    batch = torch.tensor([0] * 15 + [1] * 25)
    module = LocalKNNEmbedding(4, 8, k=6)
    fast = module(x, pos, batch)
    with pure_pytorch():
        pure = module(x, pos, batch)
    assert torch.allclose(fast, pure, atol=1e-6)
