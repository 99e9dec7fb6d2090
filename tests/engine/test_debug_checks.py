"""DEBUG_MODE 1: bad inputs named before the forward pass, the parameter with a non-finite gradient named."""
import pytest
import torch
from torch import nn

from maskrcnn_multi.engine.debug_checks import check_batch, first_non_finite_gradient
from maskrcnn_multi.engine.train_loop import SimpleTrainer
from maskrcnn_multi.structures import Boxes, Instances


def _record(boxes, file_name="img_7.jpg"):
    instances = Instances((20, 20))
    instances.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    return {"file_name": file_name, "image": torch.zeros(3, 20, 20), "instances": instances}


def test_a_nan_ground_truth_box_is_named_with_its_file():
    check_batch([_record([[1.0, 1.0, 5.0, 5.0]])], iteration=3)
    with pytest.raises(FloatingPointError, match=r"iteration 3: img_7.jpg: a ground-truth box holds NaN or inf"):
        check_batch([_record([[1.0, float("nan"), 5.0, 5.0]])], iteration=3)


def test_a_non_finite_image_is_named():
    record = _record([[1.0, 1.0, 5.0, 5.0]])
    record["image"][0, 2, 2] = float("inf")
    with pytest.raises(FloatingPointError, match=r"img_7.jpg: the image holds NaN or inf pixels"):
        check_batch([record], iteration=0)


class _SqrtAtZero(nn.Module):
    """A finite loss (0) whose gradient is not: d/dw sqrt(w) at w = 0 is inf; sqrt(w * 0) gives 0 * inf = NaN."""

    def __init__(self, nan=False):
        super().__init__()
        self.good = nn.Parameter(torch.ones(2))
        self.bad = nn.Parameter(torch.zeros(2))
        self.nan = nan

    def forward(self, batch):
        bad = torch.sqrt(self.bad * 0.0) if self.nan else torch.sqrt(self.bad)
        return {"loss_good": self.good.pow(2).sum() * 0.1, "loss_bad": bad.sum()}


def _batches():
    while True:
        yield [{"image": torch.zeros(3, 4, 4)}]


def test_debug_mode_names_the_parameter_with_an_inf_gradient():
    model = _SqrtAtZero()
    trainer = SimpleTrainer(model, _batches(), torch.optim.SGD(model.parameters(), lr=0.1), debug=True)
    with pytest.raises(FloatingPointError, match=r"non-finite gradient at iteration 0 in bad \(inf\)"):
        trainer.train(0, 2)
    assert torch.equal(model.bad.detach(), torch.zeros(2))  # the step was not taken


def test_debug_mode_names_the_operation_whose_backward_made_a_nan():
    """Anomaly detection stops in the backward of the op (here the multiplication by 0)."""
    model = _SqrtAtZero(nan=True)
    trainer = SimpleTrainer(model, _batches(), torch.optim.SGD(model.parameters(), lr=0.1), debug=True)
    with pytest.raises(RuntimeError, match=r"Function 'MulBackward0' returned nan values"):
        trainer.train(0, 1)


def test_without_debug_mode_the_finite_loss_hides_it():
    model = _SqrtAtZero()
    trainer = SimpleTrainer(model, _batches(), torch.optim.SGD(model.parameters(), lr=0.1))
    trainer.train(0, 1)
    assert not torch.isfinite(model.bad.detach()).any()


def test_first_non_finite_gradient_is_empty_when_all_are_finite():
    param = nn.Parameter(torch.ones(3))
    param.grad = torch.ones(3)
    assert first_non_finite_gradient([("w", param)]) == ""
    param.grad[1] = float("inf")
    assert first_non_finite_gradient([("w", param)]) == "w (inf)"
