"""inference_on_dataset: no gradients, eval mode during the run, the caller's mode restored after;
early stop, timing and detectron2's time lines."""
import logging
import re

import pytest
import torch
from torch import nn

from maskrcnn_multi.evaluation import DatasetEvaluator, InferenceTiming, inference_on_dataset


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


def test_max_batches_stops_early_and_the_timing_leaves_out_the_warmup():
    model = _RecordingModel()
    loader = [[torch.ones(1)] * 2 for _ in range(10)]
    timing = InferenceTiming()
    results = inference_on_dataset(model, loader, _CountingEvaluator(), max_batches=7, timing=timing)
    assert results == {"count": {"images": 14}} and len(model.seen) == 7
    # detectron2's warm-up: min(5, batches - 1) batches are not timed
    assert timing.num_warmup == 5 and timing.timed_batches == 2 and timing.batch_images == [2, 2]
    assert timing.num_batches == 7 and timing.num_images == 14 and timing.images_per_s > 0
    short = InferenceTiming()
    inference_on_dataset(_RecordingModel(), loader[:2], None, timing=short)
    assert short.num_warmup == 1 and short.timed_batches == 1


def test_logs_detectron2s_time_lines_and_the_throughput(caplog):
    with caplog.at_level(logging.INFO, logger="maskrcnn_multi.evaluation.evaluator"):
        inference_on_dataset(_RecordingModel(), [[torch.ones(1)]] * 3, None)
    messages = [record.getMessage() for record in caplog.records]
    assert any(re.fullmatch(r"Total inference time: 0:00:00 \(\d+\.\d{6} s / iter per device, on 1 devices\)", m)
               for m in messages)
    assert any(m.startswith("Total inference pure compute time: 0:00:00 (") for m in messages)
    assert any(re.match(r"Total inference throughput: \d+\.\d\d images/s \(3 images in 3 batches", m) for m in messages)
    assert any(m.startswith("Inference latency (ms / batch): avg ") and "p99" in m for m in messages)


def test_max_batches_must_be_positive():
    with pytest.raises(ValueError, match="max_batches must be >= 1, got 0"):
        inference_on_dataset(_RecordingModel(), [[torch.ones(1)]], None, max_batches=0)
