"""Molecules as graphs in the encoding of PyG's :class:`~torch_geometric.datasets.ZINC`.

PyG's ZINC stores a molecule with ``n`` heavy atoms and ``m`` bonds as

* ``x``: ``[n, 1]`` long, the atom label, an index into :data:`ZINC_ATOM_LABELS`,
* ``edge_index``: ``[2, 2m]`` long, both directions of every bond, sorted by
  source and then target atom,
* ``edge_attr``: ``[2m]`` long, the bond type after kekulization (1 single,
  2 double, 3 triple),
* ``y``: ``[1]`` float, the normalized penalized logP (:func:`penalized_logp`).

Graphs built here carry the same tensors with the same dtypes and shapes, plus
the input string as ``smiles``, so a model trained on them runs unchanged on
PyG's ZINC. RDKit is required.

An atom label is the element symbol, then ``" H{n}"`` when the atom's SMILES
token in Kekulé form writes ``n`` hydrogens in brackets, then ``" +"`` or
``" -"`` for a positive or negative formal charge. A hydrogen that the
Kekulé SMILES leaves implicit is not part of the label. So aromatic ``[nH]``,
which has no label of its own, is written ``N`` in Kekulé form and gets the
label ``"N"``, while ``[C@@H]``, ``[NH+]`` and ``[CH2-]`` keep their
hydrogens (``"C H1"``, ``"N H1 +"``, ``"C H2 -"``). The 28 labels of PyG's ZINC
contain ``"C H1"`` and ``"N H1 +"`` but no ``"N H1"``, which matches this rule.
"""

import functools
import importlib.util
import math
import os.path as osp
from types import ModuleType
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from torch_geometric.data import Data
from torch_geometric.warnings import warn

ZINC_ATOM_LABELS: Tuple[str, ...] = (
    "C", "O", "N", "F", "C H1", "S", "Cl", "O -", "N H1 +", "Br", "N H3 +",
    "N H2 +", "N +", "N -", "S -", "I", "P", "O H1 +", "N H1 -", "O +", "S +",
    "P H1", "P H2", "C H2 -", "P +", "S H1 +", "C H1 -", "P H1 +",
)
"""The 28 atom labels of PyG's ZINC, in the order of their indices 0 to 27."""

ZINC_ATOM_INDEX: Dict[str, int] = {label: i for i, label in enumerate(ZINC_ATOM_LABELS)}
"""Index of every atom label in :data:`ZINC_ATOM_LABELS`."""

# Mean and standard deviation of logP, -SA and -cycle over the about 250,000
# molecules of the full ZINC set (PyG's ZINC with subset=False). The ZINC
# pickles that PyG reads store the target standardized with these constants.
LOGP_MEAN, LOGP_STD = 2.4570953396190123, 1.434324401111988
SA_MEAN, SA_STD = -3.0525811293166134, 0.8335207024513095
CYCLE_MEAN, CYCLE_STD = -0.0485696876403053, 0.2860212110245455

_MAX_LINES_IN_WARNING = 5


def _require_rdkit() -> ModuleType:
    try:
        from rdkit import Chem
    except ImportError as error:
        raise ImportError(
            "samsa_geo.datasets.molecules requires RDKit. Install it with "
            "'pip install rdkit'."
        ) from error
    return Chem


@functools.lru_cache(maxsize=1)
def _load_sascorer() -> ModuleType:
    # RDKit ships the SA score as a contrib script, not as an importable module.
    from rdkit import RDConfig

    path = osp.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py")
    if not osp.exists(path):
        raise ImportError(
            f"RDKit's SA score script was not found at '{path}'. Install a "
            f"PyPI 'rdkit' wheel, which ships Contrib/SA_Score."
        )

    spec = importlib.util.spec_from_file_location("sascorer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def largest_ring_penalty(mol) -> int:
    """Return the ring penalty of penalized logP, ``max(0, L - 6)``, where
    ``L`` is the size of the largest ring in a cycle basis of the molecular
    graph (0 for an acyclic molecule).

    The cycle basis comes from :func:`networkx.cycle_basis` on the adjacency
    matrix, as in the code that produced the ZINC targets. On unusual fused
    ring systems it can differ from RDKit's smallest set of smallest rings.
    """
    import networkx as nx
    from rdkit.Chem import rdmolops

    graph = nx.Graph(rdmolops.GetAdjacencyMatrix(mol))
    cycles = nx.cycle_basis(graph)
    largest = max((len(cycle) for cycle in cycles), default=0)
    return max(0, largest - 6)


def penalized_logp(mol) -> float:
    r"""Compute the normalized penalized logP of a molecule, the regression
    target of PyG's :class:`~torch_geometric.datasets.ZINC`.

    .. math::
        y = \frac{\log P - \mu_{\log P}}{\sigma_{\log P}}
          + \frac{-\mathrm{SA} - \mu_{-\mathrm{SA}}}{\sigma_{-\mathrm{SA}}}
          + \frac{-\mathrm{cycle} - \mu_{-\mathrm{cycle}}}{\sigma_{-\mathrm{cycle}}}

    where :math:`\log P` is RDKit's Crippen logP, :math:`\mathrm{SA}` the
    synthetic accessibility score of RDKit's ``Contrib/SA_Score/sascorer.py``,
    and :math:`\mathrm{cycle}` the ring penalty of
    :func:`largest_ring_penalty`. The means :math:`\mu` and standard deviations
    :math:`\sigma` are those of the 250k ZINC molecules (module constants
    ``LOGP_MEAN`` to ``CYCLE_STD``).

    Args:
        mol (rdkit.Chem.Mol): Sanitized molecule without explicit hydrogen
            atoms, as returned by :func:`rdkit.Chem.MolFromSmiles`.

    Returns:
        float: The normalized target.

    Raises:
        ValueError: If a term is not finite.
    """
    from rdkit.Chem import Crippen

    logp = Crippen.MolLogP(mol)
    sa = _load_sascorer().calculateScore(mol)
    cycle = largest_ring_penalty(mol)

    y = ((logp - LOGP_MEAN) / LOGP_STD
         + (-sa - SA_MEAN) / SA_STD
         + (-cycle - CYCLE_MEAN) / CYCLE_STD)
    if not math.isfinite(y):
        raise ValueError(
            f"Penalized logP is not finite (logP={logp}, SA={sa}, cycle={cycle}). "
            f"Check the molecule, for example with rdkit.Chem.SanitizeMol."
        )
    return y


def _atom_labels(kekule_mol) -> List[str]:
    """Return the ZINC-style label string of every atom of a kekulized
    molecule, in atom order, with hydrogens as its Kekulé SMILES writes them."""
    Chem = _require_rdkit()

    smiles = Chem.MolToSmiles(kekule_mol, kekuleSmiles=True, canonical=False)
    output_order = list(kekule_mol.GetPropsAsDict(True, True)["_smilesAtomOutputOrder"])

    # Parsing without sanitization keeps exactly the hydrogens written in
    # brackets. Sanitization would make the H of a pyrrole N explicit again.
    written = Chem.MolFromSmiles(smiles, sanitize=False)

    labels = [""] * kekule_mol.GetNumAtoms()
    for position, atom in enumerate(written.GetAtoms()):
        label = atom.GetSymbol()
        num_hs = atom.GetNumExplicitHs()
        if num_hs > 0:
            label += f" H{num_hs}"
        charge = atom.GetFormalCharge()
        if charge > 0:
            label += " +"
        elif charge < 0:
            label += " -"
        labels[output_order[position]] = label
    return labels


def mol_to_zinc_graph(mol, smiles: Optional[str] = None) -> Data:
    r"""Encode an RDKit molecule as a graph in the format of PyG's ZINC
    (see the module docstring for the tensors and the atom labels).

    Args:
        mol (rdkit.Chem.Mol): Sanitized molecule without explicit hydrogen
            atoms.
        smiles (str, optional): String stored as ``data.smiles``.
            (default: :obj:`Chem.MolToSmiles(mol)`)

    Returns:
        :class:`~torch_geometric.data.Data` with ``x`` ``[n, 1]`` long,
        ``edge_index`` ``[2, 2m]`` long, ``edge_attr`` ``[2m]`` long,
        ``y`` ``[1]`` float and ``smiles``.

    Raises:
        ValueError: If the molecule has no atoms, an atom has no ZINC label,
            a bond is not single, double or triple after kekulization, or
            RDKit cannot kekulize it.
    """
    Chem = _require_rdkit()
    if smiles is None:
        smiles = Chem.MolToSmiles(mol)
    if mol.GetNumAtoms() == 0:
        raise ValueError(f"Molecule '{smiles}' has no atoms. ZINC graphs need at least one atom.")

    from rdkit import rdBase

    kekule_mol = Chem.Mol(mol)
    try:
        with rdBase.BlockLogs():
            Chem.Kekulize(kekule_mol, clearAromaticFlags=True)
    except Chem.KekulizeException as error:
        raise ValueError(f"RDKit failed to kekulize '{smiles}': {error}") from error

    x = []
    for label in _atom_labels(kekule_mol):
        if label not in ZINC_ATOM_INDEX:
            raise ValueError(
                f"Molecule '{smiles}' cannot be encoded because it has an atom "
                f"with label '{label}', which is not one of the 28 ZINC atom labels."
            )
        x.append(ZINC_ATOM_INDEX[label])

    bond_orders = {
        Chem.BondType.SINGLE: 1,
        Chem.BondType.DOUBLE: 2,
        Chem.BondType.TRIPLE: 3,
    }
    edges = []
    for bond in kekule_mol.GetBonds():
        if bond.GetBondType() not in bond_orders:
            raise ValueError(
                f"Molecule '{smiles}' cannot be encoded because it has a bond of type "
                f"{bond.GetBondType()}. ZINC graphs only have single, double and "
                f"triple bonds after kekulization."
            )
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        order = bond_orders[bond.GetBondType()]
        edges.append((i, j, order))
        edges.append((j, i, order))

    # PyG's ZINC reads edges from a dense adjacency with nonzero(), which
    # returns them sorted by source and then target atom.
    edges.sort()
    edge_tensor = torch.tensor(edges, dtype=torch.long).view(-1, 3)

    return Data(
        x=torch.tensor(x, dtype=torch.long).view(-1, 1),
        edge_index=edge_tensor[:, :2].t().contiguous(),
        edge_attr=edge_tensor[:, 2].contiguous(),
        y=torch.tensor([penalized_logp(mol)], dtype=torch.float),
        smiles=smiles,
    )


def smiles_to_zinc_graph(smiles: str) -> Data:
    """Parse a SMILES string with RDKit and encode it with
    :func:`mol_to_zinc_graph`.

    Args:
        smiles (str): SMILES string of one molecule.

    Returns:
        :class:`~torch_geometric.data.Data` in the format of PyG's ZINC, with
        ``smiles`` set to the input string.

    Raises:
        ValueError: If RDKit cannot parse the string, or the molecule cannot be
            encoded (see :func:`mol_to_zinc_graph`).
    """
    Chem = _require_rdkit()
    from rdkit import rdBase

    # RDKit prints parse errors to stderr. The ValueError carries the cause,
    # so the log is blocked here and restored afterwards.
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)

    if mol is None:
        raise ValueError(f"RDKit failed to parse the SMILES string '{smiles}'. Check its syntax.")
    return mol_to_zinc_graph(mol, smiles=smiles)


def smiles_to_zinc_graphs(
    smiles: Iterable[str],
    strict: bool = False,
    line_numbers: Optional[Iterable[int]] = None,
    source: str = "input",
) -> List[Data]:
    """Encode many SMILES strings with :func:`smiles_to_zinc_graph`, skipping
    those that cannot be parsed or encoded.

    A skipped string never turns into a NaN target or a partial graph. When
    strings are skipped, one warning gives their count and names the first
    few by line number and text.

    Args:
        smiles (iterable of str): SMILES strings.
        strict (bool, optional): If :obj:`True`, raise on the first string that
            cannot be encoded instead of skipping it. (default: :obj:`False`)
        line_numbers (iterable of int, optional): Line number of every string
            in its source file, used in messages. (default: positions
            ``0, 1, 2, ...``)
        source (str, optional): Name of the source used in messages, for
            example a file path. (default: :obj:`"input"`)

    Returns:
        list of :class:`~torch_geometric.data.Data`: The encoded graphs, in
        input order, without the skipped strings.

    Raises:
        ValueError: If :obj:`strict` is :obj:`True` and a string cannot be
            encoded. The message names the line.
    """
    smiles = list(smiles)
    if line_numbers is None:
        line_numbers = range(len(smiles))
    line_numbers = list(line_numbers)
    if len(line_numbers) != len(smiles):
        raise ValueError(
            f"'line_numbers' has {len(line_numbers)} entries but 'smiles' has "
            f"{len(smiles)}; pass one line number per string."
        )

    graphs, skipped = [], []
    for line, text in zip(line_numbers, smiles):
        try:
            graphs.append(smiles_to_zinc_graph(text))
        except ValueError as error:
            if strict:
                raise ValueError(f"{source}, line {line}: {error}") from error
            skipped.append(f"line {line} ('{text}'): {error}")

    if skipped:
        listed = "; ".join(skipped[:_MAX_LINES_IN_WARNING])
        more = len(skipped) - _MAX_LINES_IN_WARNING
        if more > 0:
            listed += f"; and {more} more"
        warn(f"Skipped {len(skipped)} of {len(smiles)} SMILES strings from {source} "
             f"that cannot be encoded as ZINC graphs: {listed}. Pass strict=True to "
             f"raise instead.")
    return graphs
