"""The op registry: for every op, its shape rule, its reference and its kernel.

Like TFLite's op resolver, this is a lookup from the op name a graph uses to
one :class:`~bnnrt.ops.base.Op` with four entry points (``infer``,
``reference``, ``kernel``, ``cost``; see :mod:`bnnrt.ops.base`). The ops are
grouped by numeric contract, as docs/ops.md's tables are:

* :mod:`.native`: bnnrt's own binary and symmetric int8 ops (C kernels);
* :mod:`.floats`: float32 ops for imported models;
* :mod:`.tfl`: TFLite's integer ops, bit for bit;
* :mod:`.layout`: reshapes, concatenation and slices, for every dtype.

The convolutions share :mod:`.conv`, and the convolutions' output transform
is one component, :mod:`.epilogue`. Adding an op means a class in the module
of its contract, its reference function in ``bnnrt.reference`` under the same
name, and its row in docs/ops.md; the check below keeps the registry and the
reference in step.
"""

from __future__ import annotations

from .. import reference as ref
from ..errors import UnsupportedOpError
from ..graph import Node
from . import floats, layout, native, tfl
from .base import Op, ReferenceKernel
from .epilogue import Epilogue

#: op name -> Op. The one table the planner, the file reader and the
#: converters consult.
OPS: dict[str, Op] = {op.name: op for module in (native, floats, layout, tfl) for op in module.OPS}

# Every op has its reference definition, under the same name (style.md, 5: the
# op table and the oracle cannot drift apart).
assert all(callable(getattr(ref, name, None)) for name in OPS), \
    sorted(n for n in OPS if not callable(getattr(ref, n, None)))


def get_op(node: Node) -> Op:
    op = OPS.get(node.op)
    if op is None:
        raise UnsupportedOpError(f"{node.where()}: unknown op {node.op!r}; bnnrt knows {sorted(OPS)}")
    op.check_arity(node)
    return op


__all__ = ["OPS", "Op", "ReferenceKernel", "Epilogue", "get_op"]
