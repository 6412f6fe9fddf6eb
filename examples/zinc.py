"""Train a molecule regressor (penalized logP) with SAMSA inside GPS layers.

By default it trains on the ZINC-like molecules that samsa_geo builds from
the MOSES SMILES shipped by the PyPI package molsets (no download). With
PyG's ZINC raw files under DIR (or the archive molecules.zip in DIR), it
trains on ZINC:

    python examples/zinc.py --out runs/molecules
    python examples/zinc.py --dataset zinc --root data --out runs/zinc
    python examples/zinc.py --model gps --out runs/gps   # PyG's GPS baseline

Every option of ``samsa-geo train zinc --help`` works here.
"""

import sys

from samsa_geo.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "zinc", *sys.argv[1:]]))
