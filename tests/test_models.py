import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.transforms import AddRandomWalkPE
from torch_geometric.utils import to_undirected

from samsa_geo.models import (
    FullAttentionPointClassifier,
    GPSGraphModel,
    PointNet2Classifier,
    SAMSAGraphModel,
    SAMSAPointClassifier,
    count_parameters,
)


def _clouds(sizes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    clouds = []
    for i, n in enumerate(sizes):
        normal = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1)
        clouds.append(Data(pos=torch.randn(n, 3, generator=generator), normal=normal,
                           y=torch.tensor([i % 3])))
    return clouds


def _molecules(sizes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    pe = AddRandomWalkPE(20, attr_name="pe")
    graphs = []
    for n in sizes:
        chain = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
        bonds = torch.randint(1, 4, (n - 1,), generator=generator)
        edge_index, edge_attr = to_undirected(chain, bonds)
        x = torch.randint(0, 28, (n, 1), generator=generator)
        graphs.append(pe(Data(x=x, edge_index=edge_index, edge_attr=edge_attr,
                              y=torch.randn(1, generator=generator))))
    return graphs


POINT_MODELS = [
    lambda: SAMSAPointClassifier(3, channels=32, num_layers=2, heads=4, k=16),
    lambda: FullAttentionPointClassifier(3, channels=32, num_layers=2, heads=4),
    lambda: PointNet2Classifier(3, k=8),
]


@pytest.mark.parametrize("make", POINT_MODELS)
def test_point_model_batch_matches_single(make):
    torch.manual_seed(0)
    model = make().eval()
    clouds = _clouds([40, 70, 25])

    batched = model(Batch.from_data_list(clouds))
    single = torch.cat([model(Batch.from_data_list([cloud])) for cloud in clouds])

    assert batched.shape == (3, 3)
    assert torch.allclose(batched, single, atol=1e-5)


@pytest.mark.parametrize("make", POINT_MODELS)
def test_point_model_backward(make):
    torch.manual_seed(0)
    model = make().train()
    out = model(Batch.from_data_list(_clouds([30, 50])))
    out.sum().backward()

    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)


def test_samsa_point_model_return_sampling():
    model = SAMSAPointClassifier(3, channels=32, num_layers=2, heads=4, k=16).eval()
    batch = Batch.from_data_list(_clouds([40, 10]))

    logits, sampling = model(batch, return_sampling=True)

    assert logits.shape == (2, 3)
    assert len(sampling) == 2
    for info in sampling:
        assert info.index.shape == (2, 4, 16)
        first, second = info.index[0][info.mask[0]], info.index[1][info.mask[1]]
        assert bool(((first >= 0) & (first < 40)).all())
        assert bool(((second >= 40) & (second < 50)).all())


@pytest.mark.parametrize("make", [lambda: SAMSAGraphModel(channels=32, num_layers=2, k=4),
                                  lambda: GPSGraphModel(channels=32, num_layers=2)])
def test_graph_model_batch_matches_single(make):
    torch.manual_seed(0)
    model = make().eval()
    graphs = _molecules([10, 23, 7])

    batched = model(Batch.from_data_list(graphs))
    single = torch.cat([model(Batch.from_data_list([graph])) for graph in graphs])

    assert batched.shape == (3, 1)
    # BatchNorm in eval mode uses running statistics, so graphs stay independent.
    assert torch.allclose(batched, single, atol=1e-5)


def test_samsa_graph_model_return_sampling():
    model = SAMSAGraphModel(channels=32, num_layers=3, k=4).eval()
    batch = Batch.from_data_list(_molecules([10, 6]))

    out, sampling = model(batch, return_sampling=True)

    assert out.shape == (2, 1)
    assert len(sampling) == 3
    assert torch.equal(out, model(batch))


def test_graph_model_missing_pe_raises():
    model = SAMSAGraphModel(channels=32, num_layers=1, k=4)
    batch = Batch.from_data_list(_molecules([5]))
    del batch.pe

    with pytest.raises(ValueError, match="AddRandomWalkPE"):
        model(batch)


def test_zinc_models_parameter_budget():
    samsa = count_parameters(SAMSAGraphModel())
    gps = count_parameters(GPSGraphModel())

    assert 400_000 < samsa <= 500_000
    assert 400_000 < gps <= 500_000
    assert abs(samsa - gps) / gps < 0.05


def test_model_reprs():
    assert repr(SAMSAPointClassifier(8, k=64)) == \
        "SAMSAPointClassifier(8, channels=128, num_layers=4, heads=4, k=64)"
    assert repr(SAMSAGraphModel(ratio=0.5)) == \
        "SAMSAGraphModel(1, channels=64, num_layers=10, heads=4, ratio=0.5)"
    assert repr(GPSGraphModel()) == "GPSGraphModel(1, channels=64, num_layers=10, heads=4)"
