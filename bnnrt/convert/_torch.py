"""PyTorch -> bnnrt: fold a trained ``bnnrt.train`` network into a .bnn graph.

The folding itself (BatchNorm -> thresholds and requantization constants) is
``BlendNet20.folded``, built on ``bnnrt.fold``: the eval mode of the training
modules runs exactly those constants, so the export is lossless by construction
and the round-trip tests check it bit for bit.
"""

from __future__ import annotations

import torch.nn as nn

from .. import blendnet as wiring
from ..errors import GraphError, UnsupportedOpError
from ..model import Model
from ..train.blendnet import BlendBlock, BlendNet20
from ..train.layers import BinaryConv2d, Int8Conv2d, Int8Linear

#: Module types a BlendNet-20 is made of; anything else cannot be exported.
SUPPORTED = (BlendNet20, BlendBlock, BinaryConv2d, Int8Conv2d, Int8Linear, nn.BatchNorm2d, nn.ModuleList)


def from_torch(model, input_shape=None, *, metadata=None, threads=None) -> Model:
    if not isinstance(model, BlendNet20):
        raise UnsupportedOpError(
            f"from_torch exports bnnrt.train.BlendNet20 networks, not {type(model).__name__}")
    unsupported = [f"{name or '<root>'} ({type(m).__name__})" for name, m in model.named_modules()
                   if not isinstance(m, SUPPORTED)]
    if unsupported:
        raise UnsupportedOpError("cannot export modules bnnrt has no op for: " + ", ".join(unsupported))
    if input_shape is not None and tuple(int(d) for d in input_shape) != model.input_shape:
        raise GraphError(f"the network was built for input {model.input_shape} (HWC), "
                         f"not {tuple(input_shape)}")
    shape = model.input_shape
    c = shape[2]
    meta = {
        "name": f"blendnet20-w{model.width}",
        "input": {"shape": list(shape), "color": "L" if c == 1 else "RGB", "scale": 1.0 / 255.0,
                  "mean": [0.5] * c, "std": [0.5] * c},
        "labels": [f"class_{i}" for i in range(model.num_classes)],
        "provenance": {"source": "bnnrt.convert.from_torch", "trained": True},
    }
    meta.update(metadata or {})
    graph = wiring.build(model.folded(), width=model.width, input_shape=shape,
                         num_classes=model.num_classes, metadata=meta)
    return Model(graph, threads=threads, name=meta["name"])
