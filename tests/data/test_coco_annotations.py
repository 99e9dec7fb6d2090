"""COCO annotations: compressed RLE strings are checked before pycocotools decodes them."""
import numpy as np
import pycocotools.mask as mask_util

from maskrcnn_multi.data.coco_annotations import _compressed_rle_runs


def test_run_lengths_equal_pycocotools_encoding():
    rng = np.random.default_rng(0)
    for _ in range(30):
        height, width = rng.integers(1, 40, 2)
        mask = (rng.random((height, width)) < rng.random()).astype(np.uint8)
        runs = _compressed_rle_runs(mask_util.encode(np.asfortranarray(mask))["counts"].decode("ascii"))
        assert sum(runs) == height * width and min(runs) >= 0
        assert sum(runs[1::2]) == mask.sum()  # odd runs are the mask's pixels


def test_strings_outside_the_alphabet_or_cut_inside_a_number_are_refused():
    assert _compressed_rle_runs("zz") is None  # 'z' - '0' = 74: not a 6-bit code
    assert _compressed_rle_runs("0P") is None  # 'P' carries the continuation bit, then the string ends
