"""maskrcnn_multi: Faster / Mask R-CNN whose model code never names a device.

The layers, each importing only from those on its left (docs/ARCHITECTURE.md):
config -> backends -> ops -> structures -> modeling -> data / engine / evaluation -> tools.
"""

__version__ = "0.1.0"


def _cpu_allocator_hint() -> None:
    """Let torch's CPU allocator back large tensors with transparent huge pages (THP_MEM_ALLOC_ENABLE,
    read by torch once, at its first allocation: hence here, before any submodule imports torch).
    Feature maps of a detector are tens of MB each and freshly allocated at every image; with 4 kB
    pages their first-touch page faults measured 10% of a CPU inference here (README, Benchmarks).
    Only allocations of 2 MB and more are affected; THP_MEM_ALLOC_ENABLE=0 turns it off."""
    import os

    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


_cpu_allocator_hint()
