"""Install maskrcnn_multi and build its native kernels as the extension `maskrcnn_multi._C`.

Install with `pip install --no-build-isolation -e .` so the build uses the torch already installed
(an isolated build would fetch a torch of its own, possibly a CUDA build the machine cannot run).

Which kernels are compiled:
- CPU (csrc/cpu/*.cpp): always, with OpenMP so at::parallel_for spreads work over the cores.
- CUDA (csrc/cuda/*.cu): when torch is a CUDA build and CUDA_HOME is found, or FORCE_CUDA=1; the
  build then defines WITH_CUDA, which csrc/ops.cpp reads to register them.
- NPU (csrc/npu/*.cpp): when torch_npu imports and the Ascend toolkit is found. The NPU kernels in
  use are torch_npu's, registered from Python (maskrcnn_multi/backends/npu_kernels.py), so the folder
  holds no sources and this branch adds nothing (see csrc/npu/README.md for adding one).
Every op is declared, and every compiled kernel registered, in csrc/ops.cpp alone; the kernel files
only define the entry points of csrc/ops.h, and csrc/common/ holds what CPU and CUDA kernels share.
"""
import glob
import os
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = "csrc"


def _sources(pattern: str) -> list:
    """Sorted source paths relative to the project root (setuptools rejects absolute ones)."""
    return sorted(os.path.relpath(path, ROOT) for path in glob.glob(os.path.join(ROOT, CSRC, pattern)))


def _want_cuda(torch_module, cuda_home) -> bool:
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    return torch_module.version.cuda is not None and cuda_home is not None


def _ascend_toolkit_dir():
    """The Ascend CANN toolkit root, or None."""
    for candidate in (os.environ.get("ASCEND_HOME_PATH"), "/usr/local/Ascend/ascend-toolkit/latest",
                      "/usr/local/Ascend"):
        if candidate and os.path.isdir(candidate):
            return candidate
    return None


def _npu_build_options():
    """(sources, include_dirs, library_dirs, libraries) for csrc/npu, all empty unless it can be built."""
    npu_sources = _sources(os.path.join("npu", "*.cpp"))
    toolkit_dir = _ascend_toolkit_dir()
    if not npu_sources or toolkit_dir is None:
        return [], [], [], []
    try:
        import torch_npu  # noqa: F401  (only its install location is needed)
    except ImportError:
        return [], [], [], []
    torch_npu_dir = os.path.dirname(torch_npu.__file__)
    include_dirs = [os.path.join(torch_npu_dir, "include"), os.path.join(toolkit_dir, "include")]
    library_dirs = [os.path.join(torch_npu_dir, "lib")]
    return npu_sources, include_dirs, library_dirs, ["torch_npu"]


def _extensions():
    """The single extension `maskrcnn_multi._C`, built for every device this machine can build for."""
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, CppExtension, CUDAExtension

    sources = _sources("ops.cpp") + _sources(os.path.join("cpu", "*.cpp"))
    # Lean flags keep the build well under a minute; OpenMP because ATen's parallel_for is an
    # OpenMP pragma expanded inside our own translation units. No -march: the library must load on any
    # host, and csrc/cpu/isa.h compiles the hot loops for AVX2 / AVX-512 itself and picks one at run
    # time. -ffp-contract=off because those targets have FMA, and GCC would otherwise contract a * b + c
    # there, breaking the kernels' bit-exactness with torchvision's and ATen's CPU arithmetic.
    openmp = ["-fopenmp"] if sys.platform.startswith("linux") else []
    cxx_flags = ["-O3", "-g0", "-std=c++20", "-ffp-contract=off"] + openmp
    extra_compile_args = {"cxx": cxx_flags}
    define_macros = []
    extension_class = CppExtension

    if _want_cuda(torch, CUDA_HOME):
        sources += _sources(os.path.join("cuda", "*.cu"))
        extension_class = CUDAExtension
        define_macros.append(("WITH_CUDA", None))
        extra_compile_args["nvcc"] = ["-O3", "-std=c++20"]

    npu_sources, include_dirs, library_dirs, libraries = _npu_build_options()
    sources += npu_sources

    return [
        extension_class(
            name="maskrcnn_multi._C",
            sources=sources,
            include_dirs=[os.path.join(ROOT, CSRC)] + include_dirs,
            library_dirs=library_dirs,
            libraries=libraries,
            define_macros=define_macros,
            extra_compile_args=extra_compile_args,
            extra_link_args=openmp,
        )
    ]


def _build_ext_class():
    from torch.utils.cpp_extension import BuildExtension

    return BuildExtension.with_options(use_ninja=True)


setup(
    name="maskrcnn_multi",
    version="0.1.0",
    description="Faster / Mask R-CNN whose model code never names a device; kernels per device backend",
    packages=find_packages(exclude=("tests", "tests.*")),
    python_requires=">=3.9",
    install_requires=[
        "torch",
        "numpy",
        "pyyaml",
        "yacs",
        "pycocotools",
        "opencv-python-headless",
        "tqdm",
        "pillow",
    ],
    extras_require={
        # COCO evaluation in C++ with pycocotools' numbers (COCOEvaluator uses it when installed)
        "fast-eval": ["faster-coco-eval>=1.6"],
    },
    ext_modules=_extensions(),
    cmdclass={"build_ext": _build_ext_class()},
    entry_points={
        "console_scripts": [
            "maskrcnn-train = maskrcnn_multi.tools.train_net:cli",
            "maskrcnn-demo = maskrcnn_multi.tools.demo:cli",
            "maskrcnn-test = maskrcnn_multi.tools.test_net:cli",
        ]
    },
    zip_safe=False,
)
