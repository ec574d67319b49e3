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
from concurrent.futures import ThreadPoolExecutor

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

def _compile_in_parallel(self, sources, output_dir=None, macros=None, include_dirs=None, debug=0,
                         extra_preargs=None, extra_postargs=None, depends=None):
    """CCompiler.compile with one compiler process per CPU: the SIMD kernels'
    unrolled blocks make bnn_bconv.c take most of a build, and the other
    sources (and the Cython glue) compile beside it instead of after it."""
    macros, objects, extra_postargs, pp_opts, build = self._setup_compile(
        output_dir, macros, include_dirs, sources, depends, extra_postargs)
    cc_args = self._get_cc_args(pp_opts, debug, extra_preargs)
    largest_first = sorted(objects, key=lambda o: -os.path.getsize(build[o][0]))

    def one(obj):
        src, ext = build[obj]
        self._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)
    with ThreadPoolExecutor(max(1, len(os.sched_getaffinity(0)))) as pool:
        list(pool.map(one, largest_first))
    return objects


if not os.environ.get("BNNRT_SERIAL_BUILD"):
    from setuptools._distutils import ccompiler
    ccompiler.CCompiler.compile = _compile_in_parallel

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
