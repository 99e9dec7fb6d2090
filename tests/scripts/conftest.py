"""Fixtures of the launch-script tests: a synthetic COCO 2017 set and a scratch checkout."""
from pathlib import Path

import pytest

from launch_helpers import make_checkout
from maskrcnn_multi.data.synthetic import generate_coco2017_layout


@pytest.fixture(scope="session")
def coco_root(tmp_path_factory) -> str:
    """4 train / 2 val synthetic images (96..128 px) in the COCO 2017 layout; read-only."""
    return generate_coco2017_layout(str(tmp_path_factory.mktemp("coco")), num_train=4, num_val=2, seed=3,
                                    image_size=(96, 128))


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A fresh scratch repo root whose test/output/ is private to the test."""
    return make_checkout(tmp_path / "repo")
