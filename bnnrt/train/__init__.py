"""Training modules for BlendNet (needs the optional extra ``bnnrt[train]``: torch).

``python -m bnnrt.train fashion-mnist --arch blendnet20 --epochs N --out models/x.bnn``
trains, exports with ``bnnrt.convert.from_torch`` and evaluates the file with bnnrt.
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("bnnrt.train needs PyTorch: pip install 'bnnrt[train]' "
                      "(CPU build: pip install torch==2.13.0)") from exc

from .blendnet import BlendBlock, BlendNet20, blendnet20, integer_forward
from .layers import BinaryConv2d, Int8Conv2d, Int8Linear, SignSTE, fake_quant

__all__ = ["BlendBlock", "BlendNet20", "blendnet20", "integer_forward", "BinaryConv2d",
           "Int8Conv2d", "Int8Linear", "SignSTE", "fake_quant"]
