"""SAMSAConv under torch.compile.

The tests compile with the ``aot_eager`` backend, which traces through
Dynamo and AOTAutograd like ``inductor`` does but skips inductor's C++ code
generation, which takes minutes per graph on a 2-core machine.
"""

import pytest
import torch

from samsa_geo.nn import SAMSAConv

# Graph breaks of one SAMSAConv forward pass with a batch vector, measured
# with torch 2.13 on CPU. They come from two host reads of tensor values
# (Tensor.tolist). The first checks batch and counts the graphs. The second
# reads the largest k_b and graph size, which set the sampled and padded
# shapes, together with the finiteness of x and the scores. The kernels the layer
# calls read nothing, in training too. A new count means the layer or a
# kernel gained or lost a host read.
EVAL_GRAPH_BREAKS = 4
TRAIN_GRAPH_BREAKS = 4


def make_input():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(14, 8, generator=generator)
    batch = torch.tensor([0] * 5 + [1] * 2 + [2] * 7)
    return x, batch


def count_graph_breaks(conv, x, batch):
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(conv)(x, batch=batch)
    return explanation.graph_break_count


@pytest.mark.parametrize("mode, expected", [
    ("eval", EVAL_GRAPH_BREAKS),
    ("train", TRAIN_GRAPH_BREAKS),
])
def test_compile_graph_breaks(mode, expected):
    torch.manual_seed(0)
    conv = SAMSAConv(8, 4, heads=2, k=3)
    getattr(conv, mode)()
    x, batch = make_input()

    assert count_graph_breaks(conv, x, batch) == expected


def test_compile_matches_eager_eval():
    torch.manual_seed(0)
    conv = SAMSAConv(8, 4, heads=2, k=3).eval()
    x, batch = make_input()
    expected = conv(x, batch=batch)

    torch._dynamo.reset()
    compiled = torch.compile(conv, backend="aot_eager")
    out = compiled(x, batch=batch)

    assert torch.allclose(out, expected, atol=1e-6)


def test_compile_training_backward():
    torch.manual_seed(0)
    conv = SAMSAConv(8, 4, heads=2, k=2).train()
    x, batch = make_input()

    torch._dynamo.reset()
    compiled = torch.compile(conv, backend="aot_eager")
    compiled(x, batch=batch).square().sum().backward()

    assert conv.lin_score.weight.grad is not None
    assert conv.lin_score.weight.grad.abs().sum() > 0
    assert conv.log_tau.grad is not None
