"""ops.linear: the fused inference linear layer equals F.linear then ReLU."""
import pytest
import torch
import torch.nn.functional as F

from maskrcnn_multi import ops
from maskrcnn_multi.backends.cpu import CpuBackend

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 0.05}  # bf16: inputs and output rounded to 8 bits


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("activation", ["", "relu"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_equals_unfused(dtype, activation, with_bias):
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(33, 40, generator=generator).to(dtype)
    w = (torch.randn(17, 40, generator=generator) * 0.2).to(dtype)
    b = torch.randn(17, generator=generator).to(dtype) if with_bias else None
    with torch.no_grad():
        fused = ops.linear(x, w, b, activation=activation)
    expected = F.linear(x.double(), w.double(), None if b is None else b.double())
    expected = F.relu(expected) if activation else expected
    assert fused.dtype == dtype
    torch.testing.assert_close(fused.double(), expected, atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])


def test_the_cpu_kernel_serves_float32_and_declines_float64():
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch has no oneDNN")
    x, w = torch.randn(3, 4), torch.randn(2, 4)
    assert CpuBackend.fused_linear(x, w, None, "relu") is not None
    assert CpuBackend.fused_linear(x.double(), w.double(), None, "") is None
    torch.testing.assert_close(ops.linear(x.double(), w.double()), F.linear(x.double(), w.double()))


def test_with_gradients_the_reference_runs():
    w = torch.randn(2, 4, requires_grad=True)
    ops.linear(torch.randn(3, 4), w, activation="relu").sum().backward()
    assert w.grad is not None
