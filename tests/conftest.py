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


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end tests (still run in CI)")
    os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")
