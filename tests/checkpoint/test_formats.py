"""Every checkpoint format that loaded before safe loading still loads, through the safe readers:
detectron2 .pkl (the reference files) and .pth (as its trainer writes them), Caffe2 ImageNet .pkl
written by Python 2 (flat and {"blobs": ...}), torchvision .pth (zip and legacy), a .pkl that is a
torch file."""
import pickle

import numpy as np
import pytest
import torch

from maskrcnn_multi.checkpoint import DetectionCheckpointer, read_checkpoint
from maskrcnn_multi.modeling.backbone import build_resnet

from pickles import python2_pickle
from test_checkpointer import Detector, _c2_name, _randomize, _torchvision_name

ZOO = ["d2_r18_shapes", "d2_zoo/mask_rcnn_C4", "d2_zoo/faster_rcnn_DC5", "d2_zoo/mask_rcnn_DC5",
       "d2_zoo/cascade_mask_rcnn_FPN", "d2_zoo/mask_rcnn_FPN_cls_agnostic", "d2_zoo/mask_rcnn_FPN_gn", "d2_zoo/rpn_C4"]


def _r18():
    return build_resnet(18, res2_out_channels=64, out_features=["res5"])


def _assert_loaded(model_part, source, caffe2=False):
    """``model_part`` holds ``source``'s weights; Caffe2 files have no running statistics, which
    keep their initial values."""
    for name, tensor in source.state_dict().items():
        expected = tensor
        if caffe2 and "running_mean" in name:
            expected = torch.zeros_like(tensor)
        elif caffe2 and "running_var" in name:
            expected = torch.ones_like(tensor)
        assert torch.equal(model_part.state_dict()[name], expected), name


@pytest.mark.parametrize("folder", ZOO)
def test_detectron2_zoo_pkl_reads_as_plain_pickle_does(reference_dir, folder):
    path = reference_dir / folder / "model_final.pkl"
    with open(path, "rb") as f:
        plain = pickle.load(f, encoding="latin1")
    checkpoint = read_checkpoint(str(path))
    assert checkpoint["__author__"] == plain["__author__"] and checkpoint["matching_heuristics"] is False
    assert checkpoint["model"].keys() == plain["model"].keys()
    for key, array in plain["model"].items():
        assert torch.equal(checkpoint["model"][key], torch.from_numpy(array)), key


def test_detectron2_pth_as_its_trainer_writes_it(tmp_path):
    # detectron2's DefaultTrainer checkpoints: model, the trainer's state (hooks' and the AMP
    # trainer's optimizer / grad scaler states) and the iteration; LRMultiplier saves only base_lrs
    # and last_epoch (its fvcore schedule is stateless)
    source = _randomize(Detector(_r18(), head_dim=4))
    optimizer = torch.optim.SGD(source.parameters(), lr=0.02, momentum=0.9)
    source.head(torch.rand(2, 4)).sum().backward()
    optimizer.step()
    trainer_state = {
        "iteration": 9,
        "hooks": {"LRScheduler": {"base_lrs": [0.02], "last_epoch": 10}},
        "_trainer": {
            "optimizer": optimizer.state_dict(),
            "grad_scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                            "growth_interval": 2000, "_growth_tracker": 3},
        },
    }
    path = tmp_path / "model_0000009.pth"
    torch.save({"model": source.state_dict(), "trainer": trainer_state, "iteration": 9}, path)

    target = Detector(_r18(), head_dim=4)
    extra = DetectionCheckpointer(target).load(str(path))
    assert extra["iteration"] == 9 and extra["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == 10
    _assert_loaded(target, source)


@pytest.mark.parametrize("layout", ["flat", "blobs"])
def test_python2_caffe2_imagenet_pkl_loads(tmp_path, layout):
    source = _randomize(_r18())
    blobs = {_c2_name(k): v.numpy() for k, v in source.state_dict().items() if _c2_name(k) is not None}
    blobs["fc1000_w"] = np.zeros((1000, 512), dtype=np.float32)
    blobs["res2_0_branch2a_w_momentum"] = np.zeros(1, dtype=np.float32)
    content = blobs if layout == "flat" else {"blobs": blobs, "cfg": "MODEL:\n  TYPE: generalized_rcnn\n"}
    path = tmp_path / "R-18.pkl"
    path.write_bytes(python2_pickle(content))

    model = Detector(_r18())
    DetectionCheckpointer(model).load(str(path))
    _assert_loaded(model.backbone.bottom_up, source, caffe2=True)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_torchvision_pth_loads(tmp_path, zip_format):
    # torchvision's older weights (resnet50-19c8e357.pth) use the legacy, non-zip format
    source = _randomize(_r18())
    state = {_torchvision_name(k): v for k, v in source.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 512)
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)

    model = Detector(_r18())
    DetectionCheckpointer(model).load(str(path))
    _assert_loaded(model.backbone.bottom_up, source)


def test_torch_file_named_pkl_loads(tmp_path):
    source = _randomize(Detector(_r18()))
    path = tmp_path / "model.pkl"
    torch.save({"model": source.state_dict()}, path)
    target = Detector(_r18())
    DetectionCheckpointer(target).load(str(path))
    _assert_loaded(target, source)
