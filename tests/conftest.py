"""Fixtures shared by the whole test suite."""
import os
from pathlib import Path

import pytest
import torch

REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/reference beside the project root: ground truth made by torchvision and detectron2."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"reference data not found at {REFERENCE_DIR} (the ../shared folder beside the repo)")
    return REFERENCE_DIR


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    """shapes_train / shapes_val pointed at a tiny generated set (8 train, 3 val images), and back
    at their previous root afterwards."""
    from maskrcnn_multi.data import MetadataCatalog
    from maskrcnn_multi.data.synthetic import generate_shapes_dataset, register_synthetic

    previous_root = os.path.dirname(os.path.dirname(MetadataCatalog.get("shapes_train").json_file))
    root = str(tmp_path_factory.mktemp("shapes"))
    generate_shapes_dataset(root, num_train=8, num_val=3, seed=2)
    register_synthetic(root, num_train=8, num_val=3, seed=2)
    yield root
    register_synthetic(previous_root)


@pytest.fixture(autouse=True)
def _package_logger_as_it_was():
    """A tool run in-process (train_net.main) points the package logger at stdout and log.txt and
    stops propagation; put it back, so later tests' caplog sees the records again."""
    import logging

    logger = logging.getLogger("maskrcnn_multi")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    for handler in logger.handlers:
        if handler not in saved[0]:
            handler.close()
    logger.handlers[:] = saved[0]
    logger.propagate, logger.level = saved[1], saved[2]


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end tests (still run in CI)")
    os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")
