"""engine.inference: settings from the config and the backend, the graph rebuilt when weights change,
every entry point honouring them, and fast mode's AP beside exact mode's."""
import contextlib
import io
import sys
from pathlib import Path

import pytest
import torch

from maskrcnn_multi.backends import get_backend
from maskrcnn_multi.config import ConfigError, get_cfg
from maskrcnn_multi.engine import DefaultPredictor
from maskrcnn_multi.engine.inference import InferenceModel, InferenceSettings, for_inference, inference_settings
from maskrcnn_multi.modeling import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "modeling"))
from rcnn_helpers import make_random_batch, make_small_cfg  # noqa: E402


def test_defaults_are_exact_float32_in_the_cpus_preferred_layout():
    settings = inference_settings(get_cfg(), get_backend("cpu"))
    assert settings == InferenceSettings(dtype=None, memory_format=torch.channels_last, fuse=True)


def test_fast_mode_and_overrides():
    cfg = get_cfg()
    cfg.merge_from_list(["TEST.AMP.ENABLED", "True", "MODEL.MEMORY_FORMAT", "contiguous", "TEST.FUSE_LAYERS", "False"])
    assert inference_settings(cfg, get_backend("cpu")) == InferenceSettings(torch.bfloat16, torch.contiguous_format, False)
    cfg.AMP_DTYPE = "float16"
    assert inference_settings(cfg, get_backend("cpu")).dtype == torch.float16


def test_an_invalid_memory_format_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match=r"^config key 'MODEL.MEMORY_FORMAT' in command-line overrides must be one of "
                                          r"\('auto', 'channels_last', 'contiguous'\), got 'nhwc'$"):
        get_cfg().merge_from_list(["MODEL.MEMORY_FORMAT", "nhwc"])


def _model():
    return build_model(make_small_cfg()).eval()


def test_the_graph_is_rebuilt_only_when_the_weights_change():
    model = _model()
    runner = InferenceModel(model, InferenceSettings(None, torch.channels_last, True))
    batch = make_random_batch(1, with_targets=False)
    runner(batch)
    first = runner.graph()
    assert runner.graph() is first
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias.add_(1.0)  # an optimizer step, a load_state_dict
    assert runner.graph() is not first
    assert torch.equal(runner.graph().roi_heads.box_predictor.cls_score.bias, model.roi_heads.box_predictor.cls_score.bias)


def test_wrapping_keeps_the_models_mode_and_unwraps_ddp_free_models():
    model = build_model(make_small_cfg()).train()
    runner = InferenceModel(model, InferenceSettings(None, torch.contiguous_format, True))
    runner.eval()
    assert model.training  # the trainer's model stays in training mode
    outputs = runner(make_random_batch(1, with_targets=False))
    assert "instances" in outputs[0]


def test_an_o2_model_is_evaluated_in_float32_in_exact_mode():
    from maskrcnn_multi.backends.amp import cast_model_for_o2

    model = _model()
    reference = InferenceModel(model, InferenceSettings(None, torch.contiguous_format, True))
    batch = make_random_batch(1, with_targets=False)
    expected = reference(batch)[0]["instances"]
    cast_model_for_o2(model, torch.bfloat16)
    widened = InferenceModel(model, InferenceSettings(None, torch.contiguous_format, True))
    instances = widened(batch)[0]["instances"]
    graph = widened.graph()
    assert all(p.dtype == torch.float32 for p in graph.parameters())
    assert instances.scores.dtype == torch.float32 and len(instances) > 0
    assert abs(len(instances) - len(expected)) <= max(3, len(expected) // 5)  # bf16-rounded weights, same model


def test_half_settings_need_the_backends_autocast():
    with pytest.raises(ValueError, match="needs the backend's autocast"):
        InferenceModel(_model(), InferenceSettings(torch.bfloat16, torch.channels_last, True))


def test_the_predictor_runs_the_configured_settings(reference_dir):
    d2_dir = reference_dir / "d2_r18_shapes"
    cfg = get_cfg()
    cfg.merge_from_file(str(d2_dir / "config.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(d2_dir / "model_final.pkl"),
                         "TEST.AMP.ENABLED", "True"])
    predictor = DefaultPredictor(cfg)
    assert predictor.inference_model.settings.dtype == torch.bfloat16
    import cv2

    instances = predictor(cv2.imread(str(d2_dir / "images" / "val_00001.jpg")))["instances"]
    assert len(instances) > 0 and instances.scores.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in predictor.model.parameters())  # the model is untouched


@pytest.mark.slow
def test_fast_mode_ap_is_close_to_exact_mode_on_the_shapes_val_split(reference_dir, tmp_path):
    """detectron2's d2_r18 checkpoint on shapes/val: exact mode reproduces train_ap.json; bf16 +
    channels_last stays close (1 point here: 101 objects, so one detection moves AP by about 1)."""
    import json

    from maskrcnn_multi.checkpoint import DetectionCheckpointer
    from maskrcnn_multi.data import register_coco_instances
    from maskrcnn_multi.engine.trainer import DefaultTrainer

    shapes, d2_dir = reference_dir / "shapes", reference_dir / "d2_r18_shapes"
    register_coco_instances("test_inference_shapes_val", {}, str(shapes / "annotations" / "instances_val.json"),
                            str(shapes / "val"), replace=True)
    expected = json.loads((d2_dir / "train_ap.json").read_text())
    results = {}
    for mode, pairs in {"exact": [], "fast": ["TEST.AMP.ENABLED", "True", "MODEL.MEMORY_FORMAT", "channels_last"]}.items():
        cfg = get_cfg()
        cfg.merge_from_file(str(d2_dir / "config.yaml"))
        cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(d2_dir / "model_final.pkl"),
                             "DATASETS.TEST", "('test_inference_shapes_val',)", "DATALOADER.NUM_WORKERS", "0",
                             "OUTPUT_DIR", str(tmp_path / mode)] + pairs)
        model = DefaultTrainer.build_model(cfg)
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
        with contextlib.redirect_stdout(io.StringIO()):
            results[mode] = DefaultTrainer.test(cfg, model)
    exact, fast = results["exact"], results["fast"]
    assert exact["bbox"]["AP"] == pytest.approx(expected["bbox_AP"], abs=0.1)
    assert exact["segm"]["AP"] == pytest.approx(expected["segm_AP"], abs=0.1)
    for task in ("bbox", "segm"):
        assert fast[task]["AP"] == pytest.approx(exact[task]["AP"], abs=1.0), (task, fast[task]["AP"], exact[task]["AP"])


def test_for_inference_uses_the_backends_autocast():
    cfg = make_small_cfg()
    cfg.TEST.AMP.ENABLED = True
    runner = for_inference(_model(), cfg, get_backend("cpu"))
    instances = runner(make_random_batch(1, with_targets=False))[0]["instances"]
    assert runner.settings.dtype == torch.bfloat16 and instances.scores.dtype == torch.float32


@pytest.mark.slow
def test_a_compiled_backbone_gives_the_same_detections():
    """TEST.COMPILE: inductor with freezing on the backbone; float32 detections as the eager graph's."""
    model = _model()
    batch = make_random_batch(1, with_targets=False)
    eager = InferenceModel(model, InferenceSettings(None, torch.channels_last, True))(batch)[0]["instances"]
    compiled_runner = InferenceModel(model, InferenceSettings(None, torch.channels_last, True, compile=True))
    compiled = compiled_runner(batch)[0]["instances"]
    assert compiled_runner.settings.describe().endswith("compiled backbone")
    assert len(compiled) == len(eager) > 0
    torch.testing.assert_close(compiled.scores, eager.scores, rtol=0, atol=1e-3)
    torch.testing.assert_close(compiled.pred_boxes.tensor, eager.pred_boxes.tensor, rtol=0, atol=0.05)
