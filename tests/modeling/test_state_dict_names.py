"""Parameter and buffer names equal detectron2's, so its checkpoints load as they are."""
import pickle

from maskrcnn_multi.config import get_cfg
from maskrcnn_multi.modeling import build_model


def test_names_equal_a_detectron2_checkpoint(reference_dir):
    d2_dir = reference_dir / "d2_r18_shapes"
    cfg = get_cfg()
    cfg.merge_from_file(str(d2_dir / "config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    with open(d2_dir / "model_final.pkl", "rb") as handle:
        checkpoint = pickle.load(handle, encoding="latin1")["model"]
    ours = model.state_dict()
    assert sorted(set(ours) - set(checkpoint)) == []
    assert sorted(set(checkpoint) - set(ours)) == []
    for name, value in checkpoint.items():
        assert tuple(ours[name].shape) == tuple(value.shape), name
