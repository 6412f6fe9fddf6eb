import os
import os.path as osp
import pickle
import zipfile

import pytest
import torch
import torch_geometric.datasets
from torch_geometric.loader import DataLoader

pytest.importorskip("rdkit")
pytest.importorskip("networkx")

from rdkit import Chem, RDConfig  # noqa: E402

from samsa_geo.datasets.molecules import (  # noqa: E402
    penalized_logp,
    smiles_to_zinc_graph,
    smiles_to_zinc_graphs,
)
from samsa_geo.datasets.offline import RawFilesMissingError, block_network  # noqa: E402
from samsa_geo.datasets.zinc import ZINC  # noqa: E402

ZIM_100 = osp.join(RDConfig.RDContribDir, "SA_Score", "data", "zim.100.txt")
SPLITS = ("train", "val", "test")


def to_record(data):
    """Return a molecule in the format of the original ZINC pickles: atom
    labels, a dense adjacency of bond types and the target."""
    n = data.num_nodes
    adj = torch.zeros(n, n, dtype=torch.long)
    adj[data.edge_index[0], data.edge_index[1]] = data.edge_attr
    return {
        "atom_type": data.x.view(-1).clone(),
        "bond_type": adj,
        "logP_SA_cycle_normalized": data.y.clone(),
    }


def write_raw(root, records, indices=None, folder="raw"):
    """Write ``{split}.pickle`` (and ``{split}.index`` when ``indices`` is
    given) into ``root/folder``."""
    raw_dir = osp.join(root, folder)
    os.makedirs(raw_dir, exist_ok=True)
    for split in SPLITS:
        with open(osp.join(raw_dir, f"{split}.pickle"), "wb") as f:
            pickle.dump(records[split], f)
        if indices is not None:
            with open(osp.join(raw_dir, f"{split}.index"), "w") as f:
                f.write(",".join(str(i) for i in indices[split]) + "\n")
    return raw_dir


def assert_same_graph(actual, expected):
    assert actual.x.dtype == expected.x.dtype
    assert torch.equal(actual.x, expected.x)
    assert actual.edge_index.dtype == expected.edge_index.dtype
    assert torch.equal(actual.edge_index, expected.edge_index)
    assert actual.edge_attr.dtype == expected.edge_attr.dtype
    assert torch.equal(actual.edge_attr, expected.edge_attr)
    assert actual.y.dtype == expected.y.dtype
    assert torch.equal(actual.y, expected.y)


@pytest.fixture(scope="module")
def zim_splits():
    with open(ZIM_100) as f:
        smiles = [line.split()[0] for line in f.read().splitlines()[1:] if line.strip()]
    graphs = smiles_to_zinc_graphs(smiles, strict=True)
    return {"train": graphs[:60], "val": graphs[60:80], "test": graphs[80:]}


@pytest.fixture
def zim_root(tmp_path, zim_splits):
    records = {split: [to_record(data) for data in zim_splits[split]] for split in SPLITS}
    indices = {"train": [0, 5, 7, 59], "val": [1, 2], "test": [19, 0, 3]}
    write_raw(str(tmp_path), records, indices)
    return str(tmp_path)


@pytest.mark.parametrize("split", SPLITS)
def test_zinc_full_from_fixture(zim_root, zim_splits, split):
    with block_network():
        dataset = ZINC(zim_root, split=split)

    assert len(dataset) == len(zim_splits[split])
    for actual, expected in zip(dataset, zim_splits[split]):
        assert_same_graph(actual, expected)


@pytest.mark.parametrize("split", SPLITS)
def test_zinc_subset_from_fixture(zim_root, zim_splits, split):
    indices = {"train": [0, 5, 7, 59], "val": [1, 2], "test": [19, 0, 3]}

    with block_network():
        dataset = ZINC(zim_root, subset=True, split=split)

    assert len(dataset) == len(indices[split])
    for actual, i in zip(dataset, indices[split]):
        assert_same_graph(actual, zim_splits[split][i])


def test_zinc_matches_pyg_class(zim_root):
    with block_network():
        ours = ZINC(zim_root, subset=True, split="val")
        theirs = torch_geometric.datasets.ZINC(zim_root, subset=True, split="val")

    assert len(ours) == len(theirs)
    for actual, expected in zip(ours, theirs):
        assert_same_graph(actual, expected)


def test_zinc_hand_built_pickle(tmp_path):
    # Pyrrole-2-carboxylate, atoms in SMILES order: c c c [nH] c C O [O-].
    # The ring kekulizes to C1=C2 and C4=C0, and the [nH] has label "N".
    smiles = "c1cc[nH]c1C(=O)[O-]"
    bonds = [(0, 1, 1), (1, 2, 2), (2, 3, 1), (3, 4, 1), (4, 0, 2),
             (4, 5, 1), (5, 6, 2), (5, 7, 1)]
    adj = torch.zeros(8, 8, dtype=torch.long)
    for i, j, order in bonds:
        adj[i, j] = order
        adj[j, i] = order
    y = penalized_logp(Chem.MolFromSmiles(smiles))
    record = {
        "atom_type": torch.tensor([0, 0, 0, 2, 0, 0, 1, 7]),
        "bond_type": adj,
        "logP_SA_cycle_normalized": torch.tensor([y], dtype=torch.float64),
    }
    # PyG's class requires the .index files even for the full set.
    write_raw(str(tmp_path), {split: [record] for split in SPLITS},
              indices={split: [0] for split in SPLITS})

    with block_network():
        dataset = torch_geometric.datasets.ZINC(str(tmp_path), split="train")

    assert_same_graph(dataset[0], smiles_to_zinc_graph(smiles))


def test_zinc_loader_batches(zim_root):
    with block_network():
        dataset = ZINC(zim_root, split="train")
    loader = DataLoader(dataset, batch_size=16, shuffle=False)

    batch = next(iter(loader))

    assert batch.num_graphs == 16
    assert batch.x.shape == (batch.num_nodes, 1)
    assert batch.edge_attr.shape == (batch.edge_index.size(1), )
    assert batch.y.shape == (16, )
    assert batch.ptr.tolist()[-1] == batch.num_nodes


@pytest.mark.parametrize("subset", [False, True])
def test_zinc_missing_raw_fails_fast(tmp_path, subset):
    root = str(tmp_path / "zinc")

    with block_network():
        with pytest.raises(RawFilesMissingError) as info:
            ZINC(root, subset=subset)

    message = str(info.value)
    assert torch_geometric.datasets.ZINC.url in message
    assert osp.join(root, "raw") in message
    assert "train.pickle" in message
    assert (ZINC.split_url.format("train") in message) == subset
    assert not osp.exists(osp.join(root, "full", "processed"))


def test_zinc_missing_raw_is_file_not_found(tmp_path):
    with block_network():
        with pytest.raises(FileNotFoundError):
            ZINC(str(tmp_path))


def test_zinc_subset_missing_index(tmp_path, zim_splits):
    records = {split: [to_record(data) for data in zim_splits[split]] for split in SPLITS}
    write_raw(str(tmp_path), records)

    with block_network():
        full = ZINC(str(tmp_path), split="test")
        with pytest.raises(RawFilesMissingError, match="test.index"):
            ZINC(str(tmp_path), subset=True, split="test")

    assert len(full) == 20


def test_zinc_extracts_archive(tmp_path, zim_splits):
    records = {split: [to_record(data) for data in zim_splits[split]] for split in SPLITS}
    source_dir = write_raw(str(tmp_path / "source"), records, folder="molecules")
    root = tmp_path / "zinc"
    root.mkdir()
    with zipfile.ZipFile(root / "molecules.zip", "w") as archive:
        for split in SPLITS:
            name = f"{split}.pickle"
            archive.write(osp.join(source_dir, name), f"molecules/{name}")

    with block_network():
        dataset = ZINC(str(root), split="val")

    assert len(dataset) == 20
    assert osp.exists(root / "raw" / "val.pickle")
    assert not osp.exists(root / "molecules")
    assert_same_graph(dataset[3], zim_splits["val"][3])


def test_zinc_invalid_split(tmp_path):
    with pytest.raises(ValueError, match="Invalid 'split' 'valid'"):
        ZINC(str(tmp_path), split="valid")
