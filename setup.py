"""Build ecomlm._core from csrc/.

The engine is C11 with OpenMP. SIMD kernels carry their own target
attributes and are picked at run time (csrc/common.c), so the default build
runs on any x86-64; ECOMLM_NATIVE=1 adds -march=native for a local build.
ECOMLM_NO_OPENMP=1 builds without OpenMP (everything runs on one thread).
ECOMLM_SANITIZE=1 builds with ASan + UBSan for debugging.
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile

import numpy
from setuptools import Extension, setup


def compiler_accepts(flags):
    """Probe whether the C compiler builds and links a tiny OpenMP program."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return False
    src = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as f:
            f.write(src)
        cmd = [cc, *flags, path, "-o", os.path.join(tmp, "probe")]
        try:
            return subprocess.run(cmd, capture_output=True).returncode == 0
        except OSError:
            return False


compile_args = ["-std=gnu11", "-O3", "-fno-strict-aliasing", "-Wall", "-Wno-unknown-pragmas",
                "-fvisibility=hidden"]
link_args = []
if os.environ.get("ECOMLM_NO_OPENMP") != "1" and compiler_accepts(["-fopenmp"]):
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")
elif os.environ.get("ECOMLM_NO_OPENMP") != "1":
    print("ecomlm: the compiler has no OpenMP; building single-threaded", file=sys.stderr)
if os.environ.get("ECOMLM_NATIVE") == "1":
    compile_args.append("-march=native")
if os.environ.get("ECOMLM_SANITIZE") == "1":
    compile_args += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"]
    link_args += ["-fsanitize=address,undefined"]

core = Extension(
    "ecomlm._core",
    sources=sorted(glob.glob("csrc/*.c")),
    depends=sorted(glob.glob("csrc/*.h")),
    include_dirs=["csrc", numpy.get_include()],
    extra_compile_args=compile_args,
    extra_link_args=link_args,
)

setup(ext_modules=[core])
