import importlib.util
import json
import os
import os.path as osp
import pickle
import warnings

import pytest
import torch
import torch_geometric.datasets
from torch_geometric.loader import DataLoader

pytest.importorskip("rdkit")
pytest.importorskip("networkx")
if importlib.util.find_spec("moses") is None:
    pytest.skip("molsets (MOSES) is not installed", allow_module_level=True)

from samsa_geo.datasets.molecules import ZINC_ATOM_INDEX, smiles_to_zinc_graph  # noqa: E402
from samsa_geo.datasets.moses import (  # noqa: E402
    MANIFEST_NAME,
    MosesZINC,
    moses_train_csv,
    read_csv_rows,
)
from samsa_geo.datasets.offline import block_network  # noqa: E402

SIZES = (200, 20, 20)
SPLITS = ("train", "val", "test")
MOSES_LABELS = {ZINC_ATOM_INDEX[label] for label in ("C", "N", "O", "S", "F", "Cl", "Br")}


def build(root, split="train", sizes=SIZES, seed=0, **kwargs):
    with block_network():
        return MosesZINC(str(root), split=split, sizes=sizes, seed=seed, log=False, **kwargs)


def graph_key(data):
    return (data.smiles, data.x.tolist(), data.edge_index.tolist(), data.edge_attr.tolist(),
            data.y.tolist())


@pytest.fixture(scope="module")
def moses_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("moses_zinc")
    build(root)
    return root


@pytest.fixture(scope="module")
def pyg_zinc_item(tmp_path_factory):
    # One item of PyG's own ZINC class, processed from a pickle in the
    # original raw format, to compare dtypes and shapes with.
    root = tmp_path_factory.mktemp("pyg_zinc")
    data = smiles_to_zinc_graph("CC(=O)Nc1ccccc1F")
    adj = torch.zeros(data.num_nodes, data.num_nodes, dtype=torch.long)
    adj[data.edge_index[0], data.edge_index[1]] = data.edge_attr
    record = {"atom_type": data.x.view(-1), "bond_type": adj,
              "logP_SA_cycle_normalized": data.y.double()}

    os.makedirs(root / "raw")
    for split in SPLITS:
        with open(root / "raw" / f"{split}.pickle", "wb") as f:
            pickle.dump([record], f)
        with open(root / "raw" / f"{split}.index", "w") as f:
            f.write("0\n")

    with block_network():
        return torch_geometric.datasets.ZINC(str(root))[0]


def test_moses_csv_rows():
    rows = read_csv_rows(moses_train_csv())

    assert len(rows) == 1_584_663
    assert rows[0] == b"CCCS(=O)c1ccc2[nH]c(=NC(=O)OC)[nH]c2c1"
    assert rows[-1] != b""


@pytest.mark.parametrize("split,size", list(zip(SPLITS, SIZES)))
def test_moses_split_sizes(moses_root, split, size):
    dataset = build(moses_root, split=split)

    assert len(dataset) == size


def test_moses_item_like_pyg_zinc(moses_root, pyg_zinc_item):
    data = build(moses_root)[0]

    for key in ("x", "edge_index", "edge_attr", "y"):
        assert data[key].dtype == pyg_zinc_item[key].dtype
        assert data[key].dim() == pyg_zinc_item[key].dim()
    assert data.x.size(1) == 1
    assert data.y.shape == (1, )
    assert isinstance(data.smiles, str)


def test_moses_loader_batches(moses_root, pyg_zinc_item):
    loader = DataLoader(build(moses_root), batch_size=32, shuffle=True)

    batch = next(iter(loader))

    assert batch.num_graphs == 32
    assert batch.x.shape == (batch.num_nodes, 1)
    assert batch.x.dtype == pyg_zinc_item.x.dtype
    assert batch.edge_index.shape == (2, batch.edge_attr.numel())
    assert batch.edge_attr.dim() == 1
    assert batch.y.shape == (32, )
    assert batch.y.dtype == pyg_zinc_item.y.dtype
    assert batch.batch.shape == (batch.num_nodes, )
    assert len(batch.smiles) == 32


@pytest.mark.parametrize("split", SPLITS)
def test_moses_values(moses_root, split):
    dataset = build(moses_root, split=split)

    assert bool(torch.isfinite(dataset.y).all())
    assert set(dataset.x.view(-1).tolist()) <= MOSES_LABELS
    assert set(dataset.edge_attr.tolist()) <= {1, 2, 3}
    assert int(dataset.x.size(0)) == sum(data.num_nodes for data in dataset)


def test_moses_targets_match_encoder(moses_root):
    dataset = build(moses_root, split="val")

    for data in dataset[:5]:
        expected = smiles_to_zinc_graph(data.smiles)
        assert torch.equal(data.y, expected.y)
        assert torch.equal(data.edge_index, expected.edge_index)


def test_moses_splits_disjoint(moses_root):
    smiles = {split: set(build(moses_root, split=split).smiles) for split in SPLITS}

    assert len(smiles["train"]) == SIZES[0]
    assert not smiles["train"] & smiles["val"]
    assert not smiles["train"] & smiles["test"]
    assert not smiles["val"] & smiles["test"]


def test_moses_deterministic(moses_root, tmp_path):
    for split in SPLITS:
        first = build(moses_root, split=split)
        second = build(tmp_path, split=split)
        assert [graph_key(data) for data in first] == [graph_key(data) for data in second]


def test_moses_selection_pinned(moses_root):
    # The selection depends only on the seed, the sizes and the MOSES file,
    # so these strings change only if one of them changes.
    train = build(moses_root, split="train")
    test = build(moses_root, split="test")

    assert train.smiles[:2] == ["COCCCCSc1nc2c(c(=O)[nH]1)CCC2", "Cc1csc(=O)n1CC(=O)NCCc1ccccc1Cl"]
    assert test.smiles[0] == "Cc1cc(CNC(=O)c2cc(Cl)ccc2-n2cnnn2)c(C)o1"


@pytest.mark.parametrize("seed", [-1, 2**32, 1.0, "0", True])
def test_moses_invalid_seed(tmp_path, seed):
    with pytest.raises(ValueError, match="Invalid 'seed'"):
        build(tmp_path, seed=seed)


def test_moses_seed_changes_selection(moses_root, tmp_path):
    first = build(moses_root, split="test")
    other = build(tmp_path, split="test", sizes=(20, 20, 20), seed=1)

    assert set(first.smiles) != set(other.smiles)


def test_moses_cache_reused(moses_root):
    path = osp.join(str(moses_root), "processed", "200_20_20_seed0", "train.pt")
    before = os.stat(path).st_mtime_ns

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build(moses_root)

    assert os.stat(path).st_mtime_ns == before


def test_moses_damaged_cache_rebuilt(tmp_path):
    sizes = (20, 5, 5)
    expected = [graph_key(data) for data in build(tmp_path, split="val", sizes=sizes)]
    cache_dir = osp.join(str(tmp_path), "processed", "20_5_5_seed0")
    path = osp.join(cache_dir, "val.pt")
    size = os.path.getsize(path)

    # A file cut short, as a killed copy would leave it.
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.warns(UserWarning, match="incomplete or damaged"):
        dataset = build(tmp_path, split="val", sizes=sizes)

    assert [graph_key(data) for data in dataset] == expected
    assert os.path.getsize(path) == size

    # A build killed before it wrote the manifest.
    os.remove(osp.join(cache_dir, MANIFEST_NAME))
    with pytest.warns(UserWarning, match="incomplete or damaged"):
        dataset = build(tmp_path, split="val", sizes=sizes)

    assert [graph_key(data) for data in dataset] == expected
    with open(osp.join(cache_dir, MANIFEST_NAME)) as f:
        manifest = json.load(f)
    assert manifest["num_graphs"] == {"train": 20, "val": 5, "test": 5}
    assert sorted(manifest["sha256"]) == ["test.pt", "train.pt", "val.pt"]


def test_moses_no_leftover_temp_files(moses_root):
    names = os.listdir(osp.join(str(moses_root), "processed", "200_20_20_seed0"))

    assert not [name for name in names if ".tmp" in name]


@pytest.mark.parametrize("sizes", [(0, 1, 1), (10, 1), (10, 1, 1, 1), (10.0, 1, 1), (True, 1, 1)])
def test_moses_invalid_sizes(tmp_path, sizes):
    with pytest.raises(ValueError, match="Invalid 'sizes'"):
        build(tmp_path, sizes=sizes)


def test_moses_sizes_too_large(tmp_path):
    with pytest.raises(ValueError, match="request 2000000 molecules"):
        build(tmp_path, sizes=(1_999_998, 1, 1))


def test_moses_invalid_split(tmp_path):
    with pytest.raises(ValueError, match="Invalid 'split' 'validation'"):
        build(tmp_path, split="validation")


def test_moses_pre_filter_rejects_all(tmp_path):
    with pytest.raises(ValueError, match="'pre_filter' rejected every molecule"):
        build(tmp_path, sizes=(5, 5, 5), pre_filter=lambda data: False)


def add_num_atoms(data):
    data.num_atoms = torch.tensor([data.num_nodes])
    return data


def test_moses_pre_transform(tmp_path):
    dataset = build(tmp_path, sizes=(5, 5, 5), pre_transform=add_num_atoms)

    assert dataset[0].num_atoms.tolist() == [dataset[0].num_nodes]


def test_moses_repr(moses_root):
    assert repr(build(moses_root, split="val")) == "MosesZINC(20, split='val')"
