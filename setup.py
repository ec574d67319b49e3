"""Build of the C kernels and their Cython wrappers.

Everything is in pyproject.toml except the extension list, which setuptools
can only take from here. The flags are deliberately portable: no -march, SIMD
variants are compiled through target attributes inside the C sources and
picked at run time (bnnrt/_kernels/src/bnn_variants.c). BNNRT_SANITIZE=1 builds with
AddressSanitizer and UndefinedBehaviorSanitizer (docs/build.md).
"""

import glob
import os
import sysconfig

from Cython.Build import cythonize
from setuptools import Extension, setup

KERNELS = "bnnrt/_kernels"

# -fwrapv: integer overflow wraps as in numpy (the oracle) instead of being undefined.
# -ffp-contract=off: a float multiply-then-add stays two roundings (as in numpy),
# never an FMA the compiler fuses in functions whose target has one.
compile_args = ["-O3", "-std=c11", "-fopenmp", "-fwrapv", "-ffp-contract=off", "-Wall",
                "-Wno-unused-function"]
link_args = ["-fopenmp"]
if os.environ.get("BNNRT_SANITIZE"):
    compile_args += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"]
    link_args += ["-fsanitize=address,undefined"]
if os.environ.get("BNNRT_DEBUG"):
    compile_args += ["-O0", "-g"]

extensions = [
    Extension(
        "bnnrt._kernels._core",
        sources=[f"{KERNELS}/_core.pyx"] + sorted(glob.glob(f"{KERNELS}/src/*.c")),
        include_dirs=[f"{KERNELS}/src"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        # the .pyx is glue only (checks at plan time); loops live in C
        compiler_directives={"embedsignature": True},
    ),
)
