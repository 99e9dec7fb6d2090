"""deform_conv2d against torchvision (../shared/reference/ops/deform_conv.pt): outputs and the gradients
w.r.t. input, offset, mask, weight and bias; native against the reference on random cases; gradcheck;
bad arguments named in one line."""
import pytest
import torch

from maskrcnn_multi.backends import native
from maskrcnn_multi.ops import deform_conv2d
from maskrcnn_multi.ops import reference

from conftest import load_cases

CASES = ["case0", "case1", "case2", "case3", "case4", "case5"]
_GRADIENTS = ("input", "offset", "mask", "weight", "bias")


@pytest.fixture(scope="module")
def deform_cases(reference_dir):
    return load_cases(reference_dir, "deform_conv.pt")


def _settings(case) -> dict:
    return {name: int(case[name]) for name in ("stride", "padding", "dilation", "groups", "offset_groups")}


def _run(tensors: dict, settings: dict, grad_output: torch.Tensor):
    """(output, {name: gradient}) of deform_conv2d on leaf copies of `tensors`."""
    leaves = {name: tensor.detach().clone().requires_grad_(True) for name, tensor in tensors.items()
              if tensor is not None}
    output = deform_conv2d(leaves["input"], leaves["offset"], leaves["weight"], leaves.get("bias"),
                           settings["stride"], settings["padding"], settings["dilation"], leaves.get("mask"),
                           groups=settings["groups"], offset_groups=settings["offset_groups"])
    output.backward(grad_output)
    return output.detach(), {name: leaf.grad for name, leaf in leaves.items()}


@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-4)], ids=["fp64", "fp32"])
@pytest.mark.parametrize("case_name", CASES)
def test_deform_conv2d_matches_torchvision(deform_cases, implementation, case_name, dtype, tolerance):
    implementation.native_or_skip("deform_conv2d")
    case = deform_cases[case_name]
    device = implementation.device
    tensors = {name: case[name].to(device, dtype) if name in case else None for name in _GRADIENTS}
    output, gradients = _run(tensors, _settings(case), case["grad_output"].to(device, dtype))
    assert output.dtype == dtype and output.shape == case["output"].shape
    assert (output.cpu().double() - case["output"]).abs().max() <= tolerance
    for name, gradient in gradients.items():
        error = (gradient.cpu().double() - case[f"grad_{name}"]).abs().max()
        assert error <= tolerance * max(1.0, float(case[f"grad_{name}"].abs().max())), name


def _random_case(generator, batch, channels, size, out_channels, kernel, stride, padding, dilation, groups,
                 offset_groups, modulated, bias=True):
    height, width = size
    out_height = (height + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    out_width = (width + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    taps = kernel * kernel

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=generator, dtype=torch.float64) * scale

    # Offsets of a few pixels send some samples off the map and most between pixels.
    tensors = {
        "input": randn(batch, channels, height, width),
        "offset": randn(batch, 2 * offset_groups * taps, out_height, out_width, scale=2.0),
        "weight": randn(out_channels, channels // groups, kernel, kernel),
        "bias": randn(out_channels) if bias else None,
        "mask": torch.rand(batch, offset_groups * taps, out_height, out_width, generator=generator,
                           dtype=torch.float64) if modulated else None,
    }
    settings = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups,
                "offset_groups": offset_groups}
    return tensors, settings, randn(batch, out_channels, out_height, out_width)


RANDOM_CASES = {
    "plain": dict(batch=2, channels=4, size=(7, 8), out_channels=5, kernel=3, stride=1, padding=1, dilation=1,
                  groups=1, offset_groups=1, modulated=False),
    "modulated": dict(batch=2, channels=4, size=(7, 8), out_channels=5, kernel=3, stride=1, padding=1, dilation=1,
                      groups=1, offset_groups=1, modulated=True),
    "groups": dict(batch=1, channels=6, size=(9, 6), out_channels=9, kernel=3, stride=1, padding=1, dilation=1,
                   groups=3, offset_groups=1, modulated=True),
    "offset_groups": dict(batch=1, channels=6, size=(6, 9), out_channels=4, kernel=3, stride=1, padding=1,
                          dilation=1, groups=1, offset_groups=2, modulated=True),
    "stride_dilation": dict(batch=2, channels=4, size=(11, 10), out_channels=4, kernel=3, stride=2, padding=2,
                            dilation=2, groups=2, offset_groups=4, modulated=False, bias=False),
    "no_padding_5x5": dict(batch=1, channels=2, size=(9, 9), out_channels=3, kernel=5, stride=1, padding=0,
                           dilation=1, groups=1, offset_groups=1, modulated=True, bias=False),
}


@pytest.mark.parametrize("case_name", sorted(RANDOM_CASES))
def test_native_equals_reference(case_name):
    if not native.has_kernel("deform_conv2d", "cpu"):
        pytest.skip("no native deform_conv2d kernel for cpu (maskrcnn_multi._C not built?)")
    generator = torch.Generator().manual_seed(sorted(RANDOM_CASES).index(case_name))
    tensors, settings, grad_output = _random_case(generator, **RANDOM_CASES[case_name])
    output, gradients = _run(tensors, settings, grad_output)
    expected = reference.deform_conv2d(tensors["input"], tensors["offset"], tensors["weight"], tensors["bias"],
                                       (settings["stride"],) * 2, (settings["padding"],) * 2,
                                       (settings["dilation"],) * 2, settings["groups"], settings["offset_groups"],
                                       tensors["mask"])
    torch.testing.assert_close(output, expected, rtol=1e-10, atol=1e-10)
    leaves = {name: tensor.clone().requires_grad_(True) for name, tensor in tensors.items() if tensor is not None}
    reference_output = reference.deform_conv2d(
        leaves["input"], leaves["offset"], leaves["weight"], leaves.get("bias"), (settings["stride"],) * 2,
        (settings["padding"],) * 2, (settings["dilation"],) * 2, settings["groups"], settings["offset_groups"],
        leaves.get("mask"))
    reference_output.backward(grad_output)
    assert set(gradients) == set(leaves)
    for name, leaf in leaves.items():
        torch.testing.assert_close(gradients[name], leaf.grad, rtol=1e-10, atol=1e-10, msg=name)


def test_zero_offsets_are_a_plain_convolution(implementation):
    implementation.native_or_skip("deform_conv2d")
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(2, 4, 6, 7, generator=generator).to(implementation.device)
    weight = torch.randn(6, 2, 3, 3, generator=generator).to(implementation.device)
    bias = torch.randn(6, generator=generator).to(implementation.device)
    offset = features.new_zeros(2, 2 * 9, 3, 4)
    output = deform_conv2d(features, offset, weight, bias, stride=2, padding=1, groups=2)
    expected = torch.nn.functional.conv2d(features, weight, bias, stride=2, padding=1, groups=2)
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("modulated", [False, True], ids=["v1", "v2"])
def test_zero_size_batch(implementation, modulated):
    implementation.native_or_skip("deform_conv2d")
    device = implementation.device
    features = torch.zeros(0, 4, 5, 5, device=device, requires_grad=True)
    offset = torch.zeros(0, 18, 5, 5, device=device, requires_grad=True)
    weight = torch.randn(3, 4, 3, 3, device=device, requires_grad=True)
    mask = torch.ones(0, 9, 5, 5, device=device) if modulated else None
    output = deform_conv2d(features, offset, weight, None, padding=1, mask=mask)
    assert output.shape == (0, 3, 5, 5)
    output.sum().backward()
    assert features.grad.shape == features.shape and offset.grad.shape == offset.shape
    assert torch.count_nonzero(weight.grad) == 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_is_close_to_float32(deform_cases, implementation, dtype):
    implementation.native_or_skip("deform_conv2d")
    case = deform_cases["case1"]
    device = implementation.device
    tensors = {name: case[name].to(device, torch.float32) for name in _GRADIENTS}
    settings = _settings(case)
    half_output, half_gradients = _run({name: t.to(dtype) for name, t in tensors.items()}, settings,
                                       case["grad_output"].to(device, dtype))
    output, gradients = _run(tensors, settings, case["grad_output"].to(device, torch.float32))
    assert half_output.dtype == dtype and all(g.dtype == dtype for g in half_gradients.values())
    scale = float(output.abs().max())
    assert (half_output.float() - output).abs().max() <= 0.05 * scale
    assert (half_gradients["input"].float() - gradients["input"]).abs().max() <= 0.05 * float(
        gradients["input"].abs().max())


def test_mixed_dtypes_follow_the_input(implementation):
    """Under autocast the offsets arrive in bf16 while the weight stays float32: cast, as a conv would."""
    implementation.native_or_skip("deform_conv2d")
    device = implementation.device
    features = torch.randn(1, 2, 5, 5, device=device, dtype=torch.bfloat16)
    offset = torch.zeros(1, 18, 5, 5, device=device, dtype=torch.bfloat16)
    weight = torch.randn(2, 2, 3, 3, device=device)
    assert deform_conv2d(features, offset, weight, padding=1).dtype == torch.bfloat16


def test_gradcheck_float64(implementation):
    implementation.native_or_skip("deform_conv2d")
    generator = torch.Generator().manual_seed(11)
    device = implementation.device
    tensors, settings, _ = _random_case(generator, batch=1, channels=2, size=(4, 5), out_channels=2, kernel=3,
                                        stride=1, padding=1, dilation=1, groups=1, offset_groups=2, modulated=True)
    # Keep samples away from integer coordinates, where the bilinear weights are not differentiable.
    tensors["offset"] = torch.floor(tensors["offset"]) + 0.3 + 0.4 * torch.rand(
        tensors["offset"].shape, generator=generator, dtype=torch.float64)
    leaves = [tensors[name].to(device).requires_grad_(True) for name in _GRADIENTS]

    def function(features, offset, mask, weight, bias):
        return deform_conv2d(features, offset, weight, bias, 1, 1, 1, mask, groups=1, offset_groups=2)

    assert torch.autograd.gradcheck(function, leaves, eps=1e-6, atol=1e-5)


def _arguments(**changes):
    arguments = {"input": torch.zeros(1, 4, 5, 5), "offset": torch.zeros(1, 18, 5, 5),
                 "weight": torch.zeros(3, 4, 3, 3), "bias": None, "padding": 1, "mask": None}
    arguments.update(changes)
    return arguments


@pytest.mark.parametrize("changes,culprit", [
    ({"input": [[1.0]]}, "input must be a torch.Tensor"),
    ({"input": torch.zeros(4, 5, 5)}, "input must be a floating 4-d tensor"),
    ({"input": torch.zeros(1, 4, 5, 5, dtype=torch.int64)}, "input must be a floating 4-d tensor"),
    ({"offset": torch.zeros(1, 17, 5, 5)}, "offset (1, 17, 5, 5) must have 2 * offset_groups * 9 channels"),
    ({"offset": torch.zeros(1, 18, 4, 5)}, "offset must be (1, 18, 5, 5)"),
    ({"weight": torch.zeros(3, 3, 3, 3)}, "weight (3, 3, 3, 3) takes 3 per group"),
    ({"mask": torch.zeros(1, 8, 5, 5)}, "mask must be (1, 9, 5, 5)"),
    ({"bias": torch.zeros(4)}, "bias must be a floating (3,) tensor"),
    ({"padding": -1}, "padding must be an int >= 0"),
    ({"stride": (1, 0)}, "stride must be an int >= 1"),
    ({"groups": 2}, "groups=2 does not match the shapes, which give 1"),
    ({"offset": torch.zeros(1, 54, 5, 5)}, "not divisible by offset_groups=3"),
    ({"weight": torch.zeros(3, 4, 7, 7), "padding": 0}, "is smaller than weight"),
])
def test_bad_arguments_name_the_culprit(changes, culprit):
    arguments = _arguments(**changes)
    with pytest.raises((TypeError, ValueError)) as error:
        deform_conv2d(**arguments)
    message = str(error.value)
    assert culprit in message and "\n" not in message and message.startswith("deform_conv2d: ")


@pytest.mark.parametrize("modulated", [False, True], ids=["v1", "v2"])
def test_native_op_passes_torch_opcheck(modulated):
    """Schema, autograd registration and the fake (shape) kernel agree with the kernels: what
    torch.compile (TEST.COMPILE) and AOT autograd rely on."""
    if not native.has_kernel("deform_conv2d", "cpu"):
        pytest.skip("no native deform_conv2d kernel for cpu (maskrcnn_multi._C not built?)")
    generator = torch.Generator().manual_seed(5)
    tensors, settings, _ = _random_case(generator, batch=1, channels=4, size=(5, 6), out_channels=4, kernel=3,
                                        stride=1, padding=1, dilation=1, groups=2, offset_groups=2,
                                        modulated=modulated, bias=modulated)
    leaves = {name: None if t is None else t.requires_grad_(True) for name, t in tensors.items()}
    arguments = (leaves["input"], leaves["weight"], leaves["offset"], leaves["mask"], leaves["bias"],
                 1, 1, 1, 1, 1, 1, settings["groups"], settings["offset_groups"])
    results = torch.library.opcheck(torch.ops.maskrcnn_multi.deform_conv2d.default, arguments)
    assert set(results.values()) == {"SUCCESS"}, results
