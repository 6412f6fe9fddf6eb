"""Learning which tokens to sample.

Every token has random features and a random sign in feature 0. In each
graph, two informative tokens hold the graph's label sign in feature 0 and are
scaled by ``SCALE``. The layer normalizes its input before the key and value
projections, so there the informative tokens look like any other token with
the same sign, but the importance score reads the un-normalized input and can
see the scale. With k = 2 of 20 tokens, the label is only recoverable if the
layer learns to sample exactly those tokens.
"""

import torch
import torch.nn.functional as F

from samsa_geo.nn import SAMSAConv

NUM_GRAPHS = 256
NUM_TOKENS = 20
CHANNELS = 8
HIDDEN = 16
SCALE = 4.0
SEED = 1


def make_task(seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(NUM_GRAPHS, NUM_TOKENS, CHANNELS, generator=generator)
    x[:, :, 0] = torch.randint(0, 2, (NUM_GRAPHS, NUM_TOKENS), generator=generator) * 2.0 - 1.0
    label = torch.randint(0, 2, (NUM_GRAPHS,), generator=generator).float()

    informative = torch.rand(NUM_GRAPHS, NUM_TOKENS, generator=generator).topk(2).indices
    rows = torch.arange(NUM_GRAPHS).view(-1, 1)
    x[rows, informative, 0] = (2.0 * label - 1.0).view(-1, 1)
    x[rows, informative] *= SCALE

    informative_rows = informative + rows * NUM_TOKENS
    ptr = torch.arange(NUM_GRAPHS + 1) * NUM_TOKENS
    return x.view(-1, CHANNELS), label, ptr, informative_rows


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = SAMSAConv(CHANNELS, HIDDEN, heads=1, k=2)
        self.head = torch.nn.Linear(HIDDEN, 1)

    def forward(self, x, ptr, generator=None):
        h = self.conv(x, ptr=ptr, generator=generator)
        h = h.view(-1, NUM_TOKENS, HIDDEN).mean(dim=1)
        return self.head(h).view(-1)


def selection_rate(model, x, ptr, informative_rows):
    """Return the fraction of graphs whose two sampled tokens are exactly the
    two informative ones, in evaluation mode."""
    model.eval()
    with torch.no_grad():
        _, info = model.conv(x, ptr=ptr, return_sampling=True)

    sampled = info.index[:, 0].sort(dim=-1).values
    hits = (sampled == informative_rows.sort(dim=-1).values).all(dim=-1)
    return hits.float().mean().item()


def train(model, x, label, ptr, steps=125):
    generator = torch.Generator().manual_seed(SEED)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=3e-2)

    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(x, ptr, generator), label)
        loss.backward()
        optimizer.step()


def make_setup():
    torch.manual_seed(SEED)
    x, label, ptr, informative_rows = make_task(SEED)
    return Classifier(), x, label, ptr, informative_rows


def test_learning_selects_informative_tokens():
    model, x, label, ptr, informative_rows = make_setup()
    before = selection_rate(model, x, ptr, informative_rows)

    train(model, x, label, ptr)
    after = selection_rate(model, x, ptr, informative_rows)

    assert before < 0.25
    assert after >= 0.9


def test_learning_frozen_scores_do_not_select():
    model, x, label, ptr, informative_rows = make_setup()
    for module in (model.conv.score_mlp, model.conv.score_norm, model.conv.lin_score):
        module.requires_grad_(False)
    before = selection_rate(model, x, ptr, informative_rows)

    train(model, x, label, ptr)
    after = selection_rate(model, x, ptr, informative_rows)

    assert after == before
    assert after < 0.25
