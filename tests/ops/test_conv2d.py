"""ops.conv2d: the fused inference convolution equals conv + residual + ReLU done one by one."""
import pytest
import torch
import torch.nn.functional as F

from maskrcnn_multi import ops
from maskrcnn_multi.backends.cpu import CpuBackend

CASES = [  # (Cin, Cout, kernel, stride, padding, dilation, groups)
    (8, 6, 3, 1, 1, 1, 1), (8, 6, 3, 2, 1, 1, 1), (8, 6, 1, 1, 0, 1, 1), (8, 8, 3, 1, 2, 2, 4),
]


def _inputs(case, dtype, channels_last):
    cin, cout, kernel, stride, padding, dilation, groups = case
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, cin, 13, 11, generator=generator)
    w = torch.randn(cout, cin // groups, kernel, kernel, generator=generator) * 0.2
    b = torch.randn(cout, generator=generator)
    out_h = (13 + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    out_w = (11 + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    residual = torch.randn(2, cout, out_h, out_w, generator=generator)
    tensors = [t.to(dtype) for t in (x, w, b, residual)]
    if channels_last:
        tensors = [t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in tensors]
    return tensors, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def _unfused(x, w, b, residual, activation, settings):
    output = F.conv2d(x.double(), w.double(), b.double(), settings["stride"], settings["padding"],
                      settings["dilation"], settings["groups"])
    if residual is not None:
        output = output + residual.double()
    return F.relu(output) if activation == "relu" else output


# float32 is the exact mode: only summation order may differ. bfloat16 rounds inputs and output to
# 8 bits of mantissa (outputs here are O(1..10): a few ulps of bf16 at that magnitude).
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 0.1}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("activation, with_residual", [("", False), ("relu", False), ("relu", True), ("", True)])
def test_fused_equals_unfused(case, dtype, channels_last, activation, with_residual):
    (x, w, b, residual), settings = _inputs(case, dtype, channels_last)
    residual = residual if with_residual else None
    with torch.no_grad():
        fused = ops.conv2d(x, w, b, activation=activation, residual=residual, **settings)
    expected = _unfused(x, w, b, residual, activation, settings)
    assert fused.dtype == dtype and fused.shape == expected.shape
    torch.testing.assert_close(fused.double(), expected, atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype] / 10)
    if channels_last and CpuBackend.fused_conv2d(x, w, b, (settings["stride"],) * 2, (settings["padding"],) * 2,
                                                  (settings["dilation"],) * 2, settings["groups"], activation,
                                                  residual) is not None:
        assert fused.is_contiguous(memory_format=torch.channels_last)  # the layout flows through


def test_the_cpu_kernel_serves_float32_and_bfloat16_inference():
    (x, w, b, residual), _ = _inputs(CASES[0], torch.float32, False)
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch has no oneDNN")
    assert CpuBackend.fused_conv2d(x, w, b, (1, 1), (1, 1), (1, 1), 1, "relu", residual) is not None
    assert CpuBackend.fused_conv2d(x.double(), w.double(), b.double(), (1, 1), (1, 1), (1, 1), 1, "", None) is None


def test_with_gradients_wanted_the_differentiable_reference_runs():
    (x, w, b, residual), settings = _inputs(CASES[0], torch.float32, False)
    w.requires_grad_()
    output = ops.conv2d(x, w, b, activation="relu", residual=residual, **settings)
    output.sum().backward()
    assert w.grad is not None and w.grad.shape == w.shape


def test_bad_activation_is_named():
    (x, w, b, _), _ = _inputs(CASES[0], torch.float32, False)
    with pytest.raises(ValueError, match=r"conv2d: activation must be one of \('', 'relu'\), got 'gelu'"):
        ops.conv2d(x, w, b, padding=1, activation="gelu")
