"""Build the pcpemu._core extension, the ftrace fast path pcpemu._ftrace and the
replay loops pcpemu._replay.

PCPEMU_DEBUG=1 builds with -O0 -g and turns Cython's bounds checks back on.
Never -march=native by default: gcc moves list pointer pairs through vector
registers and the fast paths get slower (measured 1.2-1.3x).
"""
import os
import platform

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("PCPEMU_DEBUG") == "1"

extra_compile_args = ["-O0", "-g"] if DEBUG else ["-O2"]
extra_compile_args += ["-std=gnu11", "-Wno-unused-function"]
if platform.machine() in ("x86_64", "AMD64"):
    # Every x86_64 CPU since 2008 has popcnt; without the flag gcc calls
    # libgcc for the cachelines-touched count of every fast-path operation.
    extra_compile_args.append("-mpopcnt")


def _have_liblzma() -> bool:
    # liblzma's headers (liblzma-dev): the ftrace reader then decodes .xz in C without
    # the GIL (pcpemu/_core/_xzring.h); without them, in a Python lzma thread.
    import tempfile

    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.errors import CompileError, LinkError

    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "t.c")
        with open(src, "w") as f:
            f.write("#include <lzma.h>\nint main(void) { lzma_stream s = LZMA_STREAM_INIT; lzma_end(&s); return 0; }\n")
        cc = new_compiler()
        try:
            cc.link_executable(cc.compile([src], output_dir=d), os.path.join(d, "t"), libraries=["lzma"])
        except (CompileError, LinkError):
            return False
    return True


LIBLZMA = _have_liblzma()

extensions = [
    Extension(
        "pcpemu._core",
        ["pcpemu/_core/_core.pyx"],
        include_dirs=[numpy.get_include(), "pcpemu/_core"],
        extra_compile_args=extra_compile_args,
        # The fast path is a chain of small kernel-named functions; gcc only
        # folds it into the executor loop when told to (measured 36 -> 28 ns
        # per order-0 alloc+free pair).
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                       ("CYTHON_INLINE", "__inline__ __attribute__((always_inline))")]
        + ([("PCPEMU_DEBUG", "1")] if DEBUG else []),
    ),
    Extension(
        "pcpemu._ftrace",
        ["pcpemu/_core/_ftrace.pyx"],
        include_dirs=[numpy.get_include(), "pcpemu/_core"],
        extra_compile_args=extra_compile_args,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
        + ([("PCPEMU_HAVE_LZMA", "1")] if LIBLZMA else []),
        libraries=["lzma"] if LIBLZMA else [],
    ),
    Extension(
        "pcpemu._replay",
        ["pcpemu/_core/_replay.pyx"],
        include_dirs=[numpy.get_include(), "pcpemu/_core"],
        extra_compile_args=extra_compile_args,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": DEBUG,
            "wraparound": False,
            "initializedcheck": DEBUG,
            "cdivision": True,
        },
    )
)
