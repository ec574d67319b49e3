"""PyTorch -> bnnrt. A trained ``bnnrt.train`` network is folded into a .bnn
graph directly; any other module (a PyTorch BNN of the kinds docs/onnx.md
lists) goes through ONNX, exported in memory and read by ``from_onnx``.

The folding itself (BatchNorm -> thresholds and requantization constants) is
``BlendNet20.folded``, built on ``bnnrt.fold``: the eval mode of the training
modules runs exactly those constants, so the export is lossless by construction
and the round-trip tests check it bit for bit.
"""

from __future__ import annotations

import torch.nn as nn

from .. import blendnet as wiring
from .. import mixer as mixer_wiring
from ..errors import GraphError, UnsupportedOpError
from ..model import Model
from ..train.blendnet import BlendBlock, BlendNet20
from ..train.layers import BinaryConv2d, BinaryLinear, Int8Conv2d, Int8Linear
from ..train.mixer import BinaryMLP, BlendMLP, Mixer

#: Module types the bnnrt.train networks are made of; anything else cannot be exported.
SUPPORTED = (BlendNet20, BlendBlock, Mixer, BlendMLP, BinaryMLP, BinaryConv2d, BinaryLinear, Int8Conv2d,
             Int8Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ModuleList)


def from_torch(model, example=None, *, metadata=None, threads=None) -> Model:
    """``model`` a ``bnnrt.train.BlendNet20`` or ``Mixer``: ``example`` is its
    (H, W, C) input shape, checked if given. Any other module: ``example`` is an input
    it takes, a tensor (1, C, H, W) or that shape; the module is exported in
    eval mode with torch.onnx.export (TorchScript) and imported."""
    if not isinstance(model, (BlendNet20, Mixer)):
        return _via_onnx(model, example, metadata=metadata, threads=threads)
    input_shape = example
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
        "name": (f"blendnet20-w{model.width}" if isinstance(model, BlendNet20)
                 else model.cfg.describe().split("(")[0]),
        "input": {"shape": list(shape), "color": "L" if c == 1 else "RGB", "scale": 1.0 / 255.0,
                  "mean": [0.5] * c, "std": [0.5] * c},
        "labels": [f"class_{i}" for i in range(model.num_classes)],
        "provenance": {"source": "bnnrt.convert.from_torch", "trained": True},
    }
    meta.update(metadata or {})
    if isinstance(model, Mixer):
        graph = mixer_wiring.build(model.folded(), model.cfg, metadata=meta)
    else:
        graph = wiring.build(model.folded(), width=model.width, input_shape=shape,
                             num_classes=model.num_classes, metadata=meta)
    return Model(graph, threads=threads, name=meta["name"])


def _via_onnx(model, example, *, metadata=None, threads=None) -> Model:
    import io

    import torch

    from ._onnx import from_onnx
    if not isinstance(model, nn.Module):
        raise UnsupportedOpError(f"from_torch exports torch.nn.Module networks, not {type(model).__name__}")
    if example is None:
        raise GraphError(f"from_torch needs an example input for a {type(model).__name__} (a tensor "
                         "(1, C, H, W) or that shape): only bnnrt.train.BlendNet20 knows its own")
    if not isinstance(example, torch.Tensor):
        try:
            shape = tuple(int(d) for d in example)
        except (TypeError, ValueError):
            raise GraphError(f"example must be a tensor or a shape (1, C, H, W), not {example!r}") from None
        if len(shape) != 4 or shape[0] != 1 or min(shape) < 1:
            raise GraphError(f"example shape {shape} is not (1, C, H, W)")
        example = torch.zeros(shape)
    training = model.training
    buffer = io.BytesIO()
    try:
        model.eval()
        with torch.no_grad():
            torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=17)
    except Exception as e:      # noqa: BLE001 (torch's exporter raises many types)
        raise UnsupportedOpError(f"torch.onnx.export could not export the {type(model).__name__}: "
                                 f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    finally:
        model.train(training)
    meta = {"name": type(model).__name__.lower(), "provenance": {"source": "bnnrt.convert.from_torch (ONNX)"}}
    meta.update(metadata or {})
    return from_onnx(buffer.getvalue(), threads=threads, metadata=meta)
