"""DefaultAnchorGenerator: cell anchors and the grid, against values worked out by hand."""
import math

import torch

from maskrcnn_multi.modeling.anchor_generator import DefaultAnchorGenerator, generate_cell_anchors


def test_cell_anchors_keep_area_and_ratio():
    anchors = generate_cell_anchors([32], [0.5, 1.0, 2.0])
    widths = anchors[:, 2] - anchors[:, 0]
    heights = anchors[:, 3] - anchors[:, 1]
    torch.testing.assert_close(widths * heights, torch.full((3,), 1024.0))
    torch.testing.assert_close(heights / widths, torch.tensor([0.5, 1.0, 2.0]))
    # detectron2 does not round: w = sqrt(1024 / 0.5)
    assert math.isclose(float(widths[0]), math.sqrt(2048.0), rel_tol=1e-6)


def test_grid_anchors_known_values():
    generator = DefaultAnchorGenerator(sizes=[[32, 64]], aspect_ratios=[[0.25, 1, 4]], strides=[4], offset=0.0)
    anchors = generator([torch.rand(2, 8, 1, 2)])
    expected = torch.tensor([
        [-32.0, -8.0, 32.0, 8.0], [-16.0, -16.0, 16.0, 16.0], [-8.0, -32.0, 8.0, 32.0],
        [-64.0, -16.0, 64.0, 16.0], [-32.0, -32.0, 32.0, 32.0], [-16.0, -64.0, 16.0, 64.0],
        # the next cell, one stride (4) to the right
        [-28.0, -8.0, 36.0, 8.0], [-12.0, -16.0, 20.0, 16.0], [-4.0, -32.0, 12.0, 32.0],
        [-60.0, -16.0, 68.0, 16.0], [-28.0, -32.0, 36.0, 32.0], [-12.0, -64.0, 20.0, 64.0],
    ])
    assert len(anchors) == 1
    torch.testing.assert_close(anchors[0].tensor, expected)


def test_offset_and_per_level_sizes():
    generator = DefaultAnchorGenerator(sizes=[[8], [16]], aspect_ratios=[[1.0]], strides=[4, 8], offset=0.5)
    assert generator.num_anchors == [1, 1]
    level0, level1 = generator([torch.rand(1, 1, 2, 3), torch.rand(1, 1, 1, 2)])
    # order is (y, x, anchor): second box is x + 1 cell
    torch.testing.assert_close(level0.tensor[:2], torch.tensor([[-2.0, -2.0, 6.0, 6.0], [2.0, -2.0, 10.0, 6.0]]))
    torch.testing.assert_close(level0.tensor[3], torch.tensor([-2.0, 2.0, 6.0, 10.0]))
    torch.testing.assert_close(level1.tensor, torch.tensor([[-4.0, -4.0, 12.0, 12.0], [4.0, -4.0, 20.0, 12.0]]))


def test_cell_anchors_are_not_in_the_state_dict():
    generator = DefaultAnchorGenerator(sizes=[[32]], aspect_ratios=[[1.0]], strides=[4])
    assert generator.state_dict() == {}
    assert len(list(generator.buffers())) == 1
