"""CfgNode merging: _BASE_, type checks, one-line errors naming key and file, dump round trip."""
import pytest
import yaml

from maskrcnn_multi.config import ConfigError, get_cfg


def _write(path, text):
    path.write_text(text)
    return path


def test_base_is_relative_to_the_file_and_recursive(tmp_path):
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "root.yaml", "SOLVER:\n  BASE_LR: 0.5\n  MAX_ITER: 10\n")
    _write(tmp_path / "sub" / "mid.yaml", '_BASE_: "../root.yaml"\nSOLVER:\n  MAX_ITER: 20\n')
    leaf = _write(tmp_path / "sub" / "leaf.yaml", '_BASE_: "mid.yaml"\nMODEL:\n  MASK_ON: True\n')
    cfg = get_cfg()
    cfg.merge_from_file(str(leaf))
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.MODEL.MASK_ON) == (0.5, 20, True)


def test_base_cycle_is_an_error(tmp_path):
    _write(tmp_path / "a.yaml", '_BASE_: "b.yaml"\n')
    _write(tmp_path / "b.yaml", '_BASE_: "a.yaml"\n')
    with pytest.raises(ConfigError, match="_BASE_ cycle"):
        get_cfg().merge_from_file(tmp_path / "a.yaml")


def test_unknown_key_names_full_key_and_file(tmp_path):
    path = _write(tmp_path / "x.yaml", "MODEL:\n  RPN:\n    FOO: 1\n")
    with pytest.raises(KeyError) as info:
        get_cfg().merge_from_file(path)
    assert str(info.value) == f"unknown config key 'MODEL.RPN.FOO' in {path}"
    assert isinstance(info.value, ConfigError)


def test_unknown_key_from_command_line():
    with pytest.raises(ConfigError, match=r"^unknown config key 'MODEL.FOO' in command-line overrides$"):
        get_cfg().merge_from_list(["MODEL.FOO", "1"])


def test_type_mismatch_names_key_type_and_value(tmp_path):
    path = _write(tmp_path / "x.yaml", "SOLVER:\n  MAX_ITER: fast\n")
    with pytest.raises(ValueError) as info:
        get_cfg().merge_from_file(path)
    assert str(info.value) == f"config key 'SOLVER.MAX_ITER' in {path} expects int, got str 'fast'"
    assert "\n" not in str(info.value)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        get_cfg().merge_from_file(tmp_path / "nope.yaml")


def test_missing_base_names_the_path(tmp_path):
    path = _write(tmp_path / "x.yaml", '_BASE_: "gone.yaml"\n')
    with pytest.raises(ConfigError, match=f"config file not found: {tmp_path}/gone.yaml"):
        get_cfg().merge_from_file(path)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = _write(tmp_path / "bad.yaml", "MODEL:\n  MASK_ON: True\n  RPN: [1, 2\nSOLVER: {}\n")
    with pytest.raises(ConfigError) as info:
        get_cfg().merge_from_file(path)
    message = str(info.value)
    assert message.startswith(f"cannot parse config file {path} line 4:") and "\n" not in message


def test_literal_values_and_sequence_compatibility():
    cfg = get_cfg()
    cfg.merge_from_list([
        "INPUT.MIN_SIZE_TRAIN", "[600, 700]", "SOLVER.STEPS", "(10, 20)", "SOLVER.BASE_LR", "1",
        "OUTPUT_DIR", "123", "MODEL.WEIGHTS", "/tmp/w.pkl", "SOLVER.WEIGHT_DECAY_BIAS", "0.0",
        "MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS", "[[1, 1, 1, 1]]",
    ])
    assert cfg.INPUT.MIN_SIZE_TRAIN == (600, 700) and cfg.SOLVER.STEPS == (10, 20)
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)
    assert cfg.OUTPUT_DIR == "123" and cfg.MODEL.WEIGHTS == "/tmp/w.pkl"
    assert cfg.SOLVER.WEIGHT_DECAY_BIAS == 0.0
    assert cfg.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS == ((1, 1, 1, 1),)


@pytest.mark.parametrize("key, value, expected", [
    ("OPT_LEVEL", "O3", "must be one of ('O0', 'O1', 'O2'), got 'O3'"),
    ("AMP", "2", "must be one of (0, 1), got 2"),
    ("LOSS_SCALE_VALUE", "-1", "must be a positive number (a static loss scale) or 'dynamic', got -1"),
    ("LOSS_SCALE_VALUE", "dyn", "must be a positive number (a static loss scale) or 'dynamic', got 'dyn'"),
    ("AMP_DTYPE", "half", "must be one of ('', 'float16', 'bfloat16'), got 'half'"),
    ("INPUT.FIX_SHAPE", "(1344,)", "must be () (off) or (height, width) in pixels, got (1344,)"),
    ("FLOAT32_PRECISION", "tf32", "must be one of ('', 'highest', 'high', 'medium'), got 'tf32'"),
    ("DEBUG_MODE", "2", "must be one of (0, 1), got 2"),
])
def test_ascend_key_values_are_checked_before_writing(key, value, expected):
    cfg = get_cfg()
    before = cfg.dump()
    with pytest.raises(ConfigError) as info:
        cfg.merge_from_list([key, value])
    assert str(info.value) == f"config key '{key}' in command-line overrides {expected}"
    assert cfg.dump() == before


def test_loss_scale_takes_numbers_and_dynamic():
    cfg = get_cfg()
    cfg.merge_from_list(["LOSS_SCALE_VALUE", "128.0"])
    assert cfg.LOSS_SCALE_VALUE == 128.0
    cfg.merge_from_list(["LOSS_SCALE_VALUE", "dynamic", "INPUT.FIX_SHAPE", "(1344, 1344)"])
    assert cfg.LOSS_SCALE_VALUE == "dynamic" and cfg.INPUT.FIX_SHAPE == (1344, 1344)


def test_odd_override_list_and_group_key_are_errors():
    with pytest.raises(ConfigError, match="KEY VALUE pairs; 'SEED' has no value"):
        get_cfg().merge_from_list(["SEED"])
    with pytest.raises(ConfigError, match="'MODEL.RPN' in command-line overrides is a group of keys"):
        get_cfg().merge_from_list(["MODEL.RPN", "1"])


def test_frozen_config_refuses_merges():
    cfg = get_cfg()
    cfg.freeze()
    with pytest.raises(ConfigError, match="frozen"):
        cfg.merge_from_list(["SEED", "1"])


def test_future_version_is_refused(tmp_path):
    path = _write(tmp_path / "v3.yaml", "VERSION: 3\n")
    with pytest.raises(ConfigError, match=f"config file {path} has VERSION 3"):
        get_cfg().merge_from_file(path)


def test_dump_round_trip(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_list(["INPUT.FIX_SHAPE", "(1344, 1344)", "LOSS_SCALE_VALUE", "64", "SOLVER.STEPS", "(5,)"])
    path = _write(tmp_path / "dumped.yaml", cfg.dump())
    assert isinstance(yaml.safe_load(path.read_text()), dict)
    again = get_cfg()
    again.merge_from_file(path)
    assert again == cfg
