"""bnnrt: fast CPU inference for binary neural networks.

    >>> import bnnrt
    >>> model = bnnrt.load("models/blendnet20_fmnist.bnn")
    >>> probs = model.predict("image.png")

The public API is small: :func:`load`, :func:`save`, :class:`Model`,
:func:`cpu_info`, the :mod:`bnnrt.zoo` models, :class:`GraphBuilder` for
writing models, and the exceptions in :mod:`bnnrt.errors`.
"""

__version__ = "0.1.0"

try:
    from ._kernels import _core
except ImportError as e:  # pragma: no cover - a broken install, not a code path
    raise ImportError(
        f"bnnrt's compiled kernels are missing or do not load ({e}). If you run from a source "
        "checkout, build them with `pip install -e .` or `python setup.py build_ext --inplace`."
    ) from e

from . import zoo
from .errors import (BnnrtError, GraphError, InputError, ModelFormatError, ModelIOError,
                     UnsupportedOpError)
from .graph import Graph, GraphBuilder
from .model import Model, load, save


def cpu_info() -> dict:
    """What this CPU offers and which kernel variant each op family runs."""
    return _core.cpu_info()


__all__ = ["load", "save", "Model", "cpu_info", "zoo", "Graph", "GraphBuilder", "BnnrtError",
           "GraphError", "InputError", "ModelFormatError", "ModelIOError", "UnsupportedOpError",
           "__version__"]
