import math
import os.path as osp
import warnings

import pytest
import torch

pytest.importorskip("rdkit")
pytest.importorskip("networkx")

from rdkit import Chem, RDConfig  # noqa: E402
from rdkit.Chem import Crippen  # noqa: E402

from samsa_geo.datasets.molecules import (  # noqa: E402
    ZINC_ATOM_INDEX,
    ZINC_ATOM_LABELS,
    largest_ring_penalty,
    mol_to_zinc_graph,
    penalized_logp,
    smiles_to_zinc_graph,
    smiles_to_zinc_graphs,
)
from samsa_geo.datasets.molecules import _load_sascorer  # noqa: E402

ZIM_100 = osp.join(RDConfig.RDContribDir, "SA_Score", "data", "zim.100.txt")

# The labels that occur in RDKit's 100 ZINC molecules of zim.100.txt.
ZIM_100_LABELS = {
    "C", "O", "N", "F", "S", "Cl", "Br", "P",
    "O -", "N H1 +", "N H2 +", "N H3 +", "N +",
}

# One SMILES string per ZINC atom label, in label order.
LABEL_EXAMPLES = [
    ("C", "CC"),
    ("O", "CO"),
    ("N", "CN"),
    ("F", "CF"),
    ("C H1", "C[C@@H](N)O"),
    ("S", "CSC"),
    ("Cl", "CCl"),
    ("O -", "CC(=O)[O-]"),
    ("N H1 +", "C[NH+](C)C"),
    ("Br", "CBr"),
    ("N H3 +", "C[NH3+]"),
    ("N H2 +", "C[NH2+]C"),
    ("N +", "C[N+](C)(C)C"),
    ("N -", "C[N-]S(=O)(=O)C"),
    ("S -", "C[S-]"),
    ("I", "CI"),
    ("P", "CP(=O)(O)O"),
    ("O H1 +", "C[OH+]C"),
    ("N H1 -", "CC(=O)[NH-]"),
    ("O +", "C[O+](C)C"),
    ("S +", "C[S+](C)C"),
    ("P H1", "C[PH](C)=O"),
    ("P H2", "C[PH2]=O"),
    ("C H2 -", "[CH2-]C"),
    ("P +", "C[P+](C)(C)C"),
    ("S H1 +", "C[SH+]C"),
    ("C H1 -", "C[CH-]C"),
    ("P H1 +", "C[PH+](C)C"),
]

KNOWN_SMILES = "CC(C)(C)c1ccc2occ(CC(=O)Nc3ccccc3F)c2c1"


def read_zim_100():
    with open(ZIM_100) as f:
        lines = f.read().splitlines()[1:]
    return [line.split()[0] for line in lines if line.strip()]


@pytest.fixture(scope="module")
def zim_graphs():
    smiles = read_zim_100()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graphs = smiles_to_zinc_graphs(smiles, strict=True, source=ZIM_100)
    return graphs


def test_labels_count_and_order():
    assert len(ZINC_ATOM_LABELS) == 28
    assert len(set(ZINC_ATOM_LABELS)) == 28
    assert [label for label, _ in LABEL_EXAMPLES] == list(ZINC_ATOM_LABELS)


@pytest.mark.parametrize("label,smiles", LABEL_EXAMPLES)
def test_label_reachable(label, smiles):
    data = smiles_to_zinc_graph(smiles)

    assert ZINC_ATOM_INDEX[label] in data.x.view(-1).tolist()


def test_zim_100_all_encoded(zim_graphs):
    assert len(zim_graphs) == 100


def test_zim_100_labels(zim_graphs):
    labels = {ZINC_ATOM_LABELS[int(i)] for data in zim_graphs for i in data.x.view(-1)}

    assert labels == ZIM_100_LABELS


def test_zim_100_format(zim_graphs):
    for data in zim_graphs:
        n = Chem.MolFromSmiles(data.smiles).GetNumAtoms()
        m = Chem.MolFromSmiles(data.smiles).GetNumBonds()
        assert data.x.dtype == torch.long
        assert data.x.shape == (n, 1)
        assert data.edge_index.dtype == torch.long
        assert data.edge_index.shape == (2, 2 * m)
        assert data.edge_attr.dtype == torch.long
        assert data.edge_attr.shape == (2 * m, )
        assert data.y.dtype == torch.float
        assert data.y.shape == (1, )
        assert bool(torch.isfinite(data.y).all())


def test_zim_100_kekulized_bonds(zim_graphs):
    for data in zim_graphs:
        assert set(data.edge_attr.tolist()) <= {1, 2, 3}


def test_edges_sorted_and_symmetric(zim_graphs):
    for data in zim_graphs:
        n = data.num_nodes
        adj = torch.zeros(n, n, dtype=torch.long)
        adj[data.edge_index[0], data.edge_index[1]] = data.edge_attr

        # The order of nonzero() on the dense adjacency is the order of
        # PyG's ZINC processing.
        assert torch.equal(adj, adj.t())
        assert torch.equal(adj.nonzero().t(), data.edge_index)


def test_benzene_kekulized():
    data = smiles_to_zinc_graph("c1ccccc1")

    assert sorted(data.edge_attr.tolist()) == [1] * 6 + [2] * 6


def test_aromatic_nh_is_plain_n():
    data = smiles_to_zinc_graph("c1cc[nH]c1")

    assert data.x.view(-1).tolist() == [0, 0, 0, ZINC_ATOM_INDEX["N"], 0]
    assert sorted(data.edge_attr.tolist()) == [1] * 6 + [2] * 4


def test_charged_aromatic_nh():
    data = smiles_to_zinc_graph("c1cc[nH+]cc1")

    assert ZINC_ATOM_INDEX["N H1 +"] in data.x.view(-1).tolist()


def test_single_atom():
    data = smiles_to_zinc_graph("C")

    assert data.x.tolist() == [[0]]
    assert data.edge_index.shape == (2, 0)
    assert data.edge_index.dtype == torch.long
    assert data.edge_attr.shape == (0, )
    assert data.edge_attr.dtype == torch.long


def test_known_logp_and_sa():
    mol = Chem.MolFromSmiles(KNOWN_SMILES)

    assert Crippen.MolLogP(mol) == pytest.approx(5.0506, abs=1e-4)
    assert _load_sascorer().calculateScore(mol) == pytest.approx(2.0841, abs=1e-4)
    assert largest_ring_penalty(mol) == 0


def test_known_penalized_logp():
    mol = Chem.MolFromSmiles(KNOWN_SMILES)
    expected = ((5.0506 - 2.4570953396190123) / 1.434324401111988
                + (-2.084094572 + 3.0525811293166134) / 0.8335207024513095
                + (0 + 0.0485696876403053) / 0.2860212110245455)

    assert penalized_logp(mol) == pytest.approx(expected, abs=1e-4)
    assert smiles_to_zinc_graph(KNOWN_SMILES).y.item() == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("smiles,penalty", [
    ("CCCC", 0),
    ("C1CCCCC1", 0),
    ("C1CCCCCCC1", 2),
    ("C1CCCCCCCCCCC1", 6),
    ("C1CC2CCCCCCC2C1", 2),
])
def test_ring_penalty(smiles, penalty):
    assert largest_ring_penalty(Chem.MolFromSmiles(smiles)) == penalty


def test_ring_penalty_lowers_target():
    small = penalized_logp(Chem.MolFromSmiles("C1CCCCC1"))
    large = penalized_logp(Chem.MolFromSmiles("C1CCCCCCC1"))
    logp_gain = (Crippen.MolLogP(Chem.MolFromSmiles("C1CCCCCCC1"))
                 - Crippen.MolLogP(Chem.MolFromSmiles("C1CCCCC1"))) / 1.434324401111988

    assert large - logp_gain < small


@pytest.mark.parametrize("smiles", ["C1CC", "not a molecule", "C(C"])
def test_unparseable_raises(smiles):
    with pytest.raises(ValueError, match="failed to parse"):
        smiles_to_zinc_graph(smiles)


@pytest.mark.parametrize("smiles,match", [
    ("", "no atoms"),
    ("C[Si](C)(C)C", "'Si'"),
    ("C[PH3+]", "'P H3 \\+'"),
    ("[2H]C", "'H'"),
])
def test_unencodable_raises(smiles, match):
    with pytest.raises(ValueError, match=match):
        smiles_to_zinc_graph(smiles)


def test_unkekulizable_raises():
    mol = Chem.MolFromSmiles("c1ccnc1", sanitize=False)

    with pytest.raises(ValueError, match="failed to kekulize 'c1ccnc1'"):
        mol_to_zinc_graph(mol, smiles="c1ccnc1")


def test_default_smiles_attribute():
    mol = Chem.MolFromSmiles("OCC")

    assert mol_to_zinc_graph(mol).smiles == "CCO"


def test_many_skips_with_warning():
    smiles = ["CCO", "C1CC", "c1ccccc1", "C[Si](C)(C)C", "CN"]

    with pytest.warns(UserWarning) as record:
        graphs = smiles_to_zinc_graphs(smiles, line_numbers=[2, 3, 4, 5, 6], source="mols.csv")

    assert [data.smiles for data in graphs] == ["CCO", "c1ccccc1", "CN"]
    assert len(record) == 1
    message = str(record[0].message)
    assert "Skipped 2 of 5" in message
    assert "mols.csv" in message
    assert "line 3 ('C1CC')" in message
    assert "line 5 ('C[Si](C)(C)C')" in message


def test_many_strict_raises():
    with pytest.raises(ValueError, match="mols.csv, line 1: RDKit failed to parse"):
        smiles_to_zinc_graphs(["CCO", "C1CC"], strict=True, source="mols.csv")


def test_many_no_warning_when_clean():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graphs = smiles_to_zinc_graphs(["CCO", "CN"])

    assert len(graphs) == 2


def test_many_warning_lists_five():
    smiles = ["C1CC"] * 8

    with pytest.warns(UserWarning, match="Skipped 8 of 8") as record:
        graphs = smiles_to_zinc_graphs(smiles)

    assert graphs == []
    assert "and 3 more" in str(record[0].message)


def test_many_line_numbers_length():
    with pytest.raises(ValueError, match="'line_numbers' has 1 entries"):
        smiles_to_zinc_graphs(["CCO", "CN"], line_numbers=[1])


def test_targets_finite(zim_graphs):
    y = torch.cat([data.y for data in zim_graphs])

    assert bool(torch.isfinite(y).all())
    assert not math.isclose(float(y.std()), 0.0)
