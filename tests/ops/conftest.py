"""Every implementation of the ops this machine can run, as a fixture.

`implementation` is parametrised over (path, device): path "reference" forces the pure-PyTorch twins
(the dispatcher is told no native kernel exists), "native" requires the compiled kernel for the
device and skips when it is absent. Tests call the public `maskrcnn_multi.ops` functions, so the
wrappers' checks and dtype handling are exercised on both paths.
"""
from typing import NamedTuple

import pytest
import torch

from maskrcnn_multi.backends import native

_DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class Implementation(NamedTuple):
    path: str  # "reference" or "native"
    device: str

    def native_or_skip(self, op_name: str) -> None:
        if self.path == "native" and not native.has_kernel(op_name, self.device):
            pytest.skip(f"no native {op_name} kernel for {self.device} (maskrcnn_multi._C not built?)")


@pytest.fixture(params=[(path, device) for device in _DEVICES for path in ("reference", "native")],
                ids=lambda param: f"{param[0]}-{param[1]}")
def implementation(request, monkeypatch) -> Implementation:
    path, device = request.param
    if path == "reference":
        monkeypatch.setattr(native, "has_kernel", lambda op_name, device_type: False)
    return Implementation(path, device)


def load_cases(reference_dir, file_name: str) -> dict:
    """Cases of a reference file (see ../shared/reference/README.md), without its `meta` entry."""
    cases = torch.load(reference_dir / "ops" / file_name, weights_only=True)
    return {name: case for name, case in cases.items() if name != "meta"}
