"""nms and batched_nms against torchvision's results (../shared/reference/ops/nms.pt)."""
import pytest
import torch

from maskrcnn_multi.ops import batched_nms, nms, reference

from conftest import load_cases

CASES = ["case0", "case1", "case2", "case3", "case4", "case5", "degenerate", "empty"]


@pytest.fixture(scope="module")
def nms_cases(reference_dir):
    return load_cases(reference_dir, "nms.pt")


@pytest.mark.parametrize("case_name", CASES)
def test_nms_keeps_what_torchvision_keeps(nms_cases, implementation, case_name):
    implementation.native_or_skip("nms")
    case = nms_cases[case_name]
    keep = nms(case["boxes"].to(implementation.device), case["scores"].to(implementation.device),
               float(case["iou_threshold"]))
    assert keep.dtype == torch.int64
    assert torch.equal(keep.cpu(), case["keep"])


@pytest.mark.parametrize("case_name", CASES)
def test_batched_nms_keeps_what_torchvision_keeps(nms_cases, implementation, case_name):
    implementation.native_or_skip("nms")
    case = nms_cases[case_name]
    device = implementation.device
    keep = batched_nms(case["boxes"].to(device), case["scores"].to(device), case["idxs"].to(device),
                       case["iou_threshold"])
    assert torch.equal(keep.cpu(), case["batched_keep"])


def test_nms_orders_kept_boxes_by_score_and_ties_by_input_order(implementation):
    implementation.native_or_skip("nms")
    boxes = torch.tensor([[0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10.5], [100, 100, 110, 110]],
                         device=implementation.device)
    scores = torch.tensor([0.5, 0.9, 0.5, 0.5], device=implementation.device)
    assert nms(boxes, scores, 0.5).tolist() == [1, 0, 3]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_nms_half_precision_matches_float32_of_the_same_values(nms_cases, implementation, dtype):
    implementation.native_or_skip("nms")
    case = nms_cases["case3"]
    boxes = case["boxes"].to(implementation.device, dtype)
    scores = case["scores"].to(implementation.device, dtype)
    keep = nms(boxes, scores, 0.7)
    assert torch.equal(keep, nms(boxes.float(), scores.float(), 0.7))
    assert keep.dtype == torch.int64 and 0.9 * len(case["keep"]) < len(keep) < 1.1 * len(case["keep"])


def test_nms_rejects_bad_input_naming_the_argument():
    with pytest.raises(ValueError, match=r"nms: boxes must be \(N, 4\), got \(3, 5\)"):
        nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match=r"nms: scores must be \(3,\), one per box, got \(2,\)"):
        nms(torch.zeros(3, 4), torch.zeros(2), 0.5)
    with pytest.raises(TypeError, match="nms: iou_threshold must be a number, got 'high'"):
        nms(torch.zeros(3, 4), torch.zeros(3), "high")
    with pytest.raises(TypeError, match="batched_nms: idxs must be an integer tensor"):
        batched_nms(torch.zeros(3, 4), torch.zeros(3), torch.zeros(3), 0.5)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("count", [255, 256, 257, 1500])
def test_blocked_nms_keeps_what_the_sequential_greedy_keeps(implementation, count, threads):
    # The CPU kernel resolves 256 boxes at a time, then lets their kept boxes suppress the rest (split
    # over threads when large enough). Boxes on an integer grid make IoUs hit thresholds exactly (e.g.
    # 0.5), rounded scores make ties, zero-size boxes give 0 / 0.
    implementation.native_or_skip("nms")
    generator = torch.Generator().manual_seed(count)
    corners = (torch.rand(count, 2, generator=generator) * 150).round()
    sizes = (torch.rand(count, 2, generator=generator) * 50).round()
    sizes[::13] = 0
    boxes = torch.cat([corners, corners + sizes], dim=1)
    scores = (torch.rand(count, generator=generator) * 20).round()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for iou_threshold in (0.5, 0.7, 1 / 3, 0.0, 1.0, -0.1):
            keep = nms(boxes.to(implementation.device), scores.to(implementation.device), iou_threshold)
            assert torch.equal(keep.cpu(), reference.nms(boxes, scores, iou_threshold)), iou_threshold
    finally:
        torch.set_num_threads(previous_threads)


def test_nms_reads_strided_boxes(nms_cases, implementation):
    implementation.native_or_skip("nms")
    case = nms_cases["case3"]
    padded = torch.cat([case["boxes"], case["boxes"]], dim=1)[:, 4:]  # a (N, 4) view with row stride 8
    assert not padded.is_contiguous()
    keep = nms(padded.to(implementation.device), case["scores"].to(implementation.device), float(case["iou_threshold"]))
    assert torch.equal(keep.cpu(), case["keep"])
