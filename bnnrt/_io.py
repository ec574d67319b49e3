"""Reading a model's bytes with a bound: the one reader of the .bnn loader
(``bnnrt.format.read_source``) and of the importers (``bnnrt.convert``).

A model file is read whole into memory, so the reader refuses what would not
end: a FIFO blocks until some writer appears, ``/dev/zero`` never ends, and a
directory has no bytes. A path is opened first and its open descriptor is
checked (``os.fstat``, so the check and the read see the same file), and no
source is read beyond ``limit + 1`` bytes: a size the file system reports
beforehand can change before the read, the bytes that arrive cannot.
"""

from __future__ import annotations

import io
import os
import stat

from .errors import ModelFormatError, ModelIOError

#: Bytes asked of a file object per read(): large enough that a model takes a
#: few calls, small enough that a stream far over the limit stops early.
CHUNK_BYTES = 16 << 20

_NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                (stat.S_ISSOCK, "a socket"))


def read_bounded(source, limit: int) -> tuple[bytes, str]:
    """The bytes of ``source`` (a path, a bytes-like object or a binary file
    object) and a name for messages: the path, the file object's ``name``, or
    ``"<bytes>"``. Raises :class:`ModelIOError` for what cannot be read (missing
    file, a directory, FIFO or device, a text-mode file object) and
    :class:`ModelFormatError` for more than ``limit`` bytes. Bytes-like objects
    are taken as they are: they are in memory already, nothing is read."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        return _read_path(name, limit), name
    if hasattr(source, "read"):
        name = str(getattr(source, "name", "<file object>"))
        try:
            data = _read_capped(source.read, limit, CHUNK_BYTES, name)
        except ModelIOError:
            raise
        except (OSError, io.UnsupportedOperation) as e:
            raise ModelIOError(f"cannot read model from {name!r}: {e}") from e
        return data, name
    raise TypeError(f"a model is read from a path, bytes or a binary file object, not {type(source).__name__}")


def _read_path(name: str, limit: int) -> bytes:
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer
    # before fstat could refuse it (it means nothing for a regular file's reads)
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = -1
    try:
        fd = os.open(name, flags)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((what for test, what in _NOT_REGULAR if test(st.st_mode)), "something else")
            raise ModelIOError(f"cannot read model file {name!r}: it is {kind}, not a regular file")
        with os.fdopen(fd, "rb") as fh:
            fd = -1                   # the file object owns (and closes) it now
            # the reported size is the first request, so a file read whole
            # takes one read() and no joining; growth since fstat is still capped
            return _read_capped(fh.read, limit, min(st.st_size, limit) + 1, name)
    except ModelIOError:
        raise
    except OSError as e:
        raise ModelIOError(f"cannot read model file {name!r}: {e.strerror or e}") from e
    finally:
        if fd >= 0:
            os.close(fd)


def _read_capped(read, limit: int, first: int, name: str) -> bytes:
    """At most ``limit`` bytes from ``read(n)``; one byte more is an error."""
    chunks, total, want = [], 0, first
    while total <= limit:
        chunk = read(min(want, limit + 1 - total))
        if chunk is None:
            raise ModelIOError(f"cannot read model from {name!r}: it is non-blocking and has no data ready")
        if not isinstance(chunk, (bytes, bytearray)):
            raise ModelIOError(f"model file object {name!r} must be opened in binary mode")
        if not chunk:
            break
        chunks.append(bytes(chunk))
        total += len(chunk)
        want = CHUNK_BYTES
    if total > limit:
        raise ModelFormatError(f"{name}: more than {limit:,} bytes, larger than any model bnnrt reads")
    return b"".join(chunks)
