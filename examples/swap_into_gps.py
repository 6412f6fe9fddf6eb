"""Swap SAMSA into a PyG GPS model by changing one line.

The model below is a plain PyG GraphGPS regressor for molecules: GINE
message passing for local structure plus global attention in every layer.
Passing --samsa replaces PyG's ``GPSConv`` with ``samsa_geo.nn.SAMSAGPSConv``,
whose constructor and forward take the same arguments, so every head
attends to k sampled atoms of its molecule instead of all of them.

    python examples/swap_into_gps.py            # PyG's GPSConv
    python examples/swap_into_gps.py --samsa    # the same model with SAMSA
"""

import argparse
import time

import torch
from torch_geometric.loader import DataLoader
from torch_geometric.nn import MLP, GINEConv, GPSConv, global_add_pool
from torch_geometric.transforms import AddRandomWalkPE

from samsa_geo.datasets import MosesZINC
from samsa_geo.nn import SAMSAGPSConv


class GPS(torch.nn.Module):
    def __init__(self, channels: int, num_layers: int, use_samsa: bool, k: int):
        super().__init__()
        self.atom = torch.nn.Embedding(28, channels)
        self.bond = torch.nn.Embedding(4, channels)
        self.pe = torch.nn.Linear(20, channels)

        self.layers = torch.nn.ModuleList()
        for _ in range(num_layers):
            local = GINEConv(MLP([channels, channels, channels], norm=None))
            if use_samsa:
                layer = SAMSAGPSConv(channels, local, heads=4, k=k)  # the one changed line
            else:
                layer = GPSConv(channels, local, heads=4, attn_type="multihead")
            self.layers.append(layer)

        self.head = MLP([channels, channels // 2, 1], norm=None)

    def forward(self, data):
        x = self.atom(data.x.view(-1)) + self.pe(data.pe)
        edge_attr = self.bond(data.edge_attr)
        for layer in self.layers:
            x = layer(x, data.edge_index, data.batch, edge_attr=edge_attr)
        return self.head(global_add_pool(x, data.batch)).view(-1)


def run_epoch(model, loader, optimizer=None) -> float:
    model.train(optimizer is not None)
    total, count = 0.0, 0
    for data in loader:
        with torch.set_grad_enabled(optimizer is not None):
            error = (model(data) - data.y).abs()
        if optimizer is not None:
            optimizer.zero_grad()
            error.mean().backward()
            optimizer.step()
        total, count = total + float(error.detach().sum()), count + data.num_graphs
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samsa", action="store_true", help="Use SAMSA global attention.")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--k", type=int, default=8, help="Atoms each SAMSA head samples.")
    parser.add_argument("--root", default="data/moses_zinc")
    args = parser.parse_args()
    torch.manual_seed(0)

    sizes = (2000, 200, 200)
    pe = AddRandomWalkPE(20, attr_name="pe")
    train, val = (MosesZINC(args.root, split, sizes=sizes, pre_transform=pe, log=False)
                  for split in ("train", "val"))
    train_loader = DataLoader(train, batch_size=32, shuffle=True)
    val_loader = DataLoader(val, batch_size=64)

    model = GPS(channels=64, num_layers=4, use_samsa=args.samsa, k=args.k)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    name = "SAMSAGPSConv" if args.samsa else "GPSConv"
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        train_mae = run_epoch(model, train_loader, optimizer)
        val_mae = run_epoch(model, val_loader)
        print(f"{name} epoch {epoch}: train MAE {train_mae:.3f}, val MAE {val_mae:.3f}, "
              f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
