"""Fixtures for the backend tests: a fake torch_npu injected into sys.modules."""
import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("fake_torch_npu", Path(__file__).with_name("fake_torch_npu.py"))
fake_torch_npu_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_torch_npu_module)


@pytest.fixture
def fake_torch_npu(monkeypatch):
    """A recording fake `torch_npu` (see fake_torch_npu.py), importable as `torch_npu` in this test."""
    fake = fake_torch_npu_module.make_fake_torch_npu()
    monkeypatch.setitem(sys.modules, "torch_npu", fake)
    return fake


@pytest.fixture
def no_torch_npu(monkeypatch):
    """`import torch_npu` fails as it does where the package is not installed."""
    monkeypatch.setitem(sys.modules, "torch_npu", None)
