"""Private: the compiled kernels (C in src/, Cython wrappers in _core.pyx)."""
