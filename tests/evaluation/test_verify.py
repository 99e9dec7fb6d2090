"""TEST.EXPECTED_RESULTS: detectron2's verify_results."""
import math

import pytest

from maskrcnn_multi.config import ConfigError, get_cfg
from maskrcnn_multi.evaluation import verify_results

RESULTS = {"bbox": {"AP": 40.2, "AP50": 60.0}, "segm": {"AP": 44.8}}


def _cfg(expected):
    cfg = get_cfg()
    cfg.merge_from_list(["TEST.EXPECTED_RESULTS", repr(expected)])
    return cfg


def test_results_within_the_tolerance_pass_and_an_empty_list_passes():
    assert verify_results(get_cfg(), RESULTS)
    assert verify_results(_cfg([["bbox", "AP", 40.0, 0.3], ["segm", "AP", 45.0, 0.25]]), RESULTS)
    assert verify_results(_cfg([["bbox", "AP", 40.0, 0.3]]), {"my_val": RESULTS})  # per-dataset results


@pytest.mark.parametrize("expected,results", [
    ([["bbox", "AP", 41.0, 0.5]], RESULTS),
    ([["bbox", "AP75", 40.0, 100.0]], RESULTS),
    ([["keypoints", "AP", 40.0, 100.0]], RESULTS),
    ([["bbox", "AP", 40.0, 100.0]], {"bbox": {"AP": math.nan}}),
], ids=["outside-tolerance", "missing-metric", "missing-task", "nan"])
def test_a_result_outside_or_missing_fails(expected, results, caplog):
    assert not verify_results(_cfg(expected), results)
    assert "Result verification failed" in caplog.text


def test_a_malformed_entry_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match=r"TEST.EXPECTED_RESULTS.*\[task, metric, expected, tolerance\]"):
        _cfg([["bbox", "AP", 40.0]])
