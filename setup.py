"""Builds the compiled scheduling core, ``aragog._core``."""

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

# Sorted on purpose: the build must not depend on the order a directory lists in.
CORE_SOURCES = sorted(
    [
        "csrc/bindings.cpp",
        "csrc/core/bitset.cc",
        "csrc/core/round.cc",
        "csrc/core/round_plan.cc",
        "csrc/core/viable_set.cc",
        "csrc/register_round.cpp",
    ]
)

core = Pybind11Extension(
    "aragog._core",
    CORE_SOURCES,
    include_dirs=["csrc"],
    cxx_std=17,
    # -ffp-contract=off keeps floating point bit-identical to the Python reference:
    # a fused multiply-add would round differently and could flip a tie in the beam.
    extra_compile_args=["-O3", "-ffp-contract=off"],
)

setup(ext_modules=[core], cmdclass={"build_ext": build_ext})
