"""Train a point-cloud classifier with SAMSA attention.

By default it trains on the CAD furniture shapes that ship with samsa_geo
(no download). With PyG's ModelNet raw files under DIR/raw (or the archive
ModelNet10.zip / ModelNet40.zip in DIR), it trains on ModelNet:

    python examples/modelnet.py --out runs/shapes
    python examples/modelnet.py --dataset modelnet40 --root data/ModelNet40 --out runs/mn40
    python examples/modelnet.py --model full --out runs/full   # full-attention baseline

Every option of ``samsa-geo train modelnet --help`` works here. Run the
same command again after an interruption to resume.
"""

import sys

from samsa_geo.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "modelnet", *sys.argv[1:]]))
