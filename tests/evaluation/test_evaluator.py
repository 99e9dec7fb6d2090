"""inference_on_dataset: no gradients, eval mode during the run, the caller's mode restored after."""
import torch
from torch import nn

from maskrcnn_multi.evaluation import DatasetEvaluator, inference_on_dataset


class _RecordingModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.seen = []

    def forward(self, batch):
        self.seen.append((self.training, torch.is_grad_enabled()))
        return [{"value": self.weight * item} for item in batch]


class _CountingEvaluator(DatasetEvaluator):
    def reset(self):
        self.count = 0

    def process(self, inputs, outputs):
        self.count += len(outputs)
        assert not outputs[0]["value"].requires_grad

    def evaluate(self):
        return {"count": {"images": self.count}}


def test_runs_in_eval_mode_without_grad_and_restores_mode():
    model = _RecordingModel().train()
    synchronized = []
    loader = [[torch.ones(1)], [torch.ones(1), torch.ones(1)]]
    results = inference_on_dataset(model, loader, _CountingEvaluator(), synchronize=lambda: synchronized.append(1))
    assert results == {"count": {"images": 3}}
    assert model.seen == [(False, False), (False, False)]
    assert model.training and len(synchronized) == 2


def test_without_evaluator_returns_empty_dict():
    assert inference_on_dataset(_RecordingModel(), [[torch.ones(1)]], None) == {}
