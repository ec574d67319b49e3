"""The epilogue: what a convolution does with its accumulator y.

Every convolution (binary or int8) computes one integer y per output pixel and
channel and hands it to one epilogue, of one of four kinds:

* ``int32``: y, plus ``bias`` (int8 convolutions only);
* ``bits``: threshold BatchNorm, +1 iff ``y >= thresholds[c]``;
* ``int8``: ``clamp(requantize(y + bias[c], multiplier[c], shift[c])
  [+ requantize(skip, skip_multiplier, skip_shift)], output_clamp)``: BN folded
  into the requantization, with the Blend block's int8 skip add;
* ``float32``: LCE's float epilogue, ``float(clamp(y, y_clamp)) *
  float_multiplier[c] + float_bias[c]`` (two roundings) ``[+ skip]`` (a third),
  then the ``activation``.

:class:`Epilogue` describes one layer's: built from the node once
(:meth:`Epilogue.from_node`), it is the only place that checks the epilogue's
attributes and constants. The op's ``infer`` takes the output dtype from it,
its ``kernel`` hands it to the compiled kernel (``bnnrt._kernels._core``,
which fills the C ``bnn_epilogue`` of ``bnn_epilogue.h`` field for field), and
its ``reference`` to :func:`bnnrt.reference.epilogue`, the one definition of
the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import GraphError
from ..graph import Node
from .base import INT8_RANGE, INT32_RANGE, choice, int8_clamp, int_attr, int_list

KINDS = ("int32", "bits", "int8", "float32")
#: The activations a float epilogue applies after the skip add: clamps (the
#: ones LCE fuses into its float output and the fused ADD's).
FLOAT_ACTIVATIONS = ("none", "relu", "relu6", "relu_n1_to_1")
#: dtype of the output tensor, and of the skip input, by kind
OUT_DTYPES = {"int32": "int32", "bits": "bits", "int8": "int8", "float32": "float32"}
SKIP_DTYPES = {"int8": "int8", "float32": "float32"}
#: the constant each array field is stored as in a .bnn node
CONST_NAMES = {"thresholds": "thresholds", "bias": "bias", "multiplier": "multiplier", "shift": "shift",
               "float_multiplier": "multiplier", "float_bias": "bias"}
_DTYPES = {"thresholds": np.int32, "bias": np.int32, "multiplier": np.int32, "shift": np.int8,
           "float_multiplier": np.float32, "float_bias": np.float32}
#: the array fields each kind needs (int32's bias is optional: int8 convs have one)
_NEEDS = {"int32": (), "bits": ("thresholds",), "int8": ("bias", "multiplier", "shift"),
          "float32": ("float_multiplier", "float_bias")}


@dataclass(frozen=True, eq=False)
class Epilogue:
    """One layer's output transform (see the module docstring). Arrays are per
    output channel; a field a kind does not use is None."""

    kind: str
    cout: int
    thresholds: np.ndarray | None = None        # bits: int32
    bias: np.ndarray | None = None              # int8, int32: int32
    multiplier: np.ndarray | None = None        # int8: int32
    shift: np.ndarray | None = None             # int8: int8 in [0, 62]
    output_clamp: tuple[int, int] = INT8_RANGE  # int8: the output's range
    float_multiplier: np.ndarray | None = None  # float32: float32
    float_bias: np.ndarray | None = None        # float32: float32
    y_clamp: tuple[int, int] | None = None      # float32: the range of y (None: none)
    activation: str = "none"                    # float32: after the skip add
    has_skip: bool = False                      # int8 (int8 skip), float32 (float32 skip)
    skip_multiplier: int = 1                    # int8: requantize(skip, skip_multiplier, skip_shift)
    skip_shift: int = 0
    #: a bound of |y| over every input (the op derives it from the weights):
    #: the integer arithmetic is checked to stay exact within it; None: unchecked
    y_bound: int | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise GraphError(f"unknown output {self.kind!r}; one of {list(KINDS)}")
        if not isinstance(self.cout, (int, np.integer)) or self.cout < 1:
            raise GraphError(f"an epilogue of {self.cout!r} channels")
        for field, dtype in _DTYPES.items():
            arr = getattr(self, field)
            name = CONST_NAMES[field]
            if arr is None:
                if field in _NEEDS[self.kind]:
                    raise GraphError(f"missing constant {name!r} (output {self.kind})")
                continue
            if field not in _NEEDS[self.kind] and not (field == "bias" and self.kind == "int32"):
                raise GraphError(f"constant {name!r} has no meaning for output {self.kind}")
            if not isinstance(arr, np.ndarray) or arr.dtype != np.dtype(dtype):
                got = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
                raise GraphError(f"constant {name!r} has dtype {got}, expected {np.dtype(dtype)}")
            if arr.shape != (self.cout,):
                raise GraphError(f"constant {name!r} has shape {arr.shape}, expected ({self.cout},)")
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise GraphError(f"constant {name!r} holds NaN or infinite values")
        if self.shift is not None and self.cout and (self.shift.min() < 0 or self.shift.max() > 62):
            raise GraphError("shift must lie in [0, 62]")
        lo, hi = self.output_clamp
        if not INT8_RANGE[0] <= lo <= hi <= INT8_RANGE[1]:
            raise GraphError(f"clamp {[lo, hi]} is not an int8 range")
        if self.y_clamp is not None:
            lo, hi = self.y_clamp
            if not INT32_RANGE[0] <= lo <= hi <= INT32_RANGE[1]:
                raise GraphError(f"clamp must be two int32 [lo, hi] with lo <= hi, got {list(self.y_clamp)}")
        if self.activation not in FLOAT_ACTIVATIONS:
            raise GraphError(f"activation {self.activation!r} is not one of {list(FLOAT_ACTIVATIONS)}")
        if self.has_skip and self.kind not in SKIP_DTYPES:
            raise GraphError(f"a skip input needs output 'int8' or 'float32', not {self.kind!r}")
        if not INT32_RANGE[0] <= self.skip_multiplier <= INT32_RANGE[1] or not 0 <= self.skip_shift <= 62:
            raise GraphError(f"skip requantization ({self.skip_multiplier}, {self.skip_shift}) needs an "
                             "int32 multiplier and a shift in [0, 62]")

        if self.y_bound is not None:
            self._check_range()

    def _check_range(self):
        """The integers stay exact: int32 outputs fit int32, and the int8
        requantization's 64-bit numerator ``(y + bias) * multiplier + round``
        (plus the skip's term) cannot overflow for any |y| <= y_bound
        (docs/ops.md, "Integer ranges")."""
        if self.kind == "float32":
            y = self.y_bound if self.y_clamp is None else min(self.y_bound, max(map(abs, self.y_clamp)))
            with np.errstate(over="ignore"):
                top = np.float32(y) * np.abs(self.float_multiplier).max() + np.abs(self.float_bias).max()
            if not np.isfinite(top):
                raise GraphError(f"float32 output y * multiplier + bias overflows float32 (|y| up to {y})")
        if self.kind == "int32":
            top = self.y_bound + (0 if self.bias is None else int(np.abs(self.bias.astype(np.int64)).max()))
            if top > INT32_RANGE[1]:
                raise GraphError(f"the int32 output y + bias can reach {top}, beyond int32")
        if self.kind != "int8":
            return
        skip = 0
        if self.has_skip:
            s = self.skip_shift
            skip = (128 * abs(self.skip_multiplier) + (1 << s >> 1)) >> s
        for c in range(self.cout):
            s = int(self.shift[c])
            top = (self.y_bound + abs(int(self.bias[c]))) * abs(int(self.multiplier[c])) + (1 << s >> 1)
            if (top >> s) + skip >= 1 << 63 or top >= 1 << 63:
                raise GraphError(f"channel {c}: the requantization (y + bias) * multiplier overflows 64 bits "
                                 f"(|y| up to {self.y_bound}, bias {int(self.bias[c])}, multiplier "
                                 f"{int(self.multiplier[c])})")

    @property
    def out_dtype(self) -> str:
        return OUT_DTYPES[self.kind]

    @property
    def skip_dtype(self) -> str | None:
        return SKIP_DTYPES.get(self.kind) if self.has_skip else None

    @classmethod
    def from_node(cls, node: Node, cout: int, kinds, *, int32_bias: bool = False,
                  y_bound: int | None = None) -> "Epilogue":
        """The epilogue a conv node describes. ``kinds``: the outputs the op
        offers (a float op has only ``float32``, taken without an ``output``
        attribute); ``int32_bias``: its int32 output adds a bias (int8 convs);
        ``y_bound``: the largest |y| the op's weights allow."""
        kind = kinds[0] if len(kinds) == 1 else choice(node, "output", kinds)
        has_skip = len(node.inputs) == 2
        c = node.consts
        try:
            if kind == "float32":
                y_clamp = node.attrs.get("clamp")
                if y_clamp is not None:
                    y_clamp = int_list(node, "clamp", 2, maximum=None)
                return cls(kind, cout, float_multiplier=c.get("multiplier"), float_bias=c.get("bias"),
                           y_clamp=y_clamp, activation=node.attrs.get("activation", "none"),
                           has_skip=has_skip, y_bound=y_bound)
            fields = {"thresholds": c.get("thresholds")} if kind == "bits" else {}
            if kind == "int8" or (kind == "int32" and int32_bias):
                fields["bias"] = c.get("bias")
                if fields["bias"] is None:
                    raise GraphError("missing constant 'bias'")
            if kind == "int8":
                fields.update(multiplier=c.get("multiplier"), shift=c.get("shift"),
                              output_clamp=int8_clamp(node))
                if has_skip:
                    fields.update(skip_multiplier=int_attr(node, "skip_multiplier", lo=INT32_RANGE[0],
                                                           hi=INT32_RANGE[1]),
                                  skip_shift=int_attr(node, "skip_shift", lo=0, hi=62))
            return cls(kind, cout, has_skip=has_skip, y_bound=y_bound, **fields)
        except GraphError as e:
            if str(e).startswith(node.where()):
                raise
            raise GraphError(f"{node.where()}: {e}") from None
