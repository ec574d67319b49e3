"""Exceptions raised by bnnrt.

Every problem a user can cause (a bad file, a bad input, an unsupported graph)
raises a subclass of :class:`BnnrtError`, which also derives from the builtin
exception that fits (``ValueError`` or ``OSError``), so ``except ValueError``
keeps working for callers that do not know about bnnrt.
"""


class BnnrtError(Exception):
    """Base class of every error bnnrt raises on purpose."""


class ModelFormatError(BnnrtError, ValueError):
    """A model file (or bytes) is not valid: a .bnn file with a wrong magic, a
    newer version, truncated, corrupted (checksum) or describing impossible
    sizes; a malformed file of an imported format; a file larger than bnnrt
    reads; or a file of a format bnnrt neither loads nor imports."""


class ModelIOError(BnnrtError, OSError):
    """A model file could not be read or written."""


class GraphError(BnnrtError, ValueError):
    """A graph is inconsistent: unknown op, wrong shapes or dtypes between
    layers, missing or malformed constants."""


class UnsupportedOpError(GraphError):
    """The graph uses ops bnnrt does not implement (a converter lists them all)."""


class InputError(BnnrtError, ValueError):
    """An input handed to ``Model.predict`` / ``Model.run`` has the wrong shape,
    dtype or channel count, or an image could not be read."""
