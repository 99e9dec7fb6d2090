"""Value checks for the keys whose type alone does not say what is allowed.

`check_value(full_key, value, source)` runs on every merged value before it is written. Messages
name the key, the source (file or "command-line overrides") and the value.
"""
from typing import Any

from .amp import (
    AMP_DTYPES, FLOAT32_PRECISIONS, MEMORY_FORMATS, OPT_LEVELS, describe_loss_scale_rule, is_valid_loss_scale,
)
from .errors import ConfigError, short_repr
from .refused import check_refused

# Keys that accept several types; every other key keeps the type of its default.
FLEXIBLE_TYPES = {
    "LOSS_SCALE_VALUE": (int, float, str),
}

_CHOICES = {
    "AMP": (0, 1),
    "OPT_LEVEL": OPT_LEVELS,
    "AMP_DTYPE": AMP_DTYPES,
    "FLOAT32_PRECISION": FLOAT32_PRECISIONS,
    "DEBUG_MODE": (0, 1),
    "MODEL.MEMORY_FORMAT": MEMORY_FORMATS,
}

# numbers torch's optimizers and schedules refuse when negative (with a traceback)
_NON_NEGATIVE = ("SOLVER.BASE_LR", "SOLVER.WEIGHT_DECAY", "SOLVER.WEIGHT_DECAY_NORM", "SOLVER.MOMENTUM",
                 "SOLVER.BASE_LR_END", "SOLVER.GAMMA", "SOLVER.MAX_ITER", "SOLVER.WARMUP_ITERS")


def check_value(full_key: str, value: Any, source: str) -> None:
    """Raise ConfigError (one line) if `value` is outside the contract of `full_key`.

    Called for every merged value, before it is written, so a rejected merge leaves the key as it was.
    """
    allowed = _CHOICES.get(full_key)
    if allowed is not None and (isinstance(value, bool) or value not in allowed):
        choices = ", ".join(repr(choice) for choice in allowed)
        raise ConfigError(
            f"config key '{full_key}' in {source} must be one of ({choices}), got {short_repr(value)}"
        )
    check_refused(full_key, value, source)
    if full_key == "LOSS_SCALE_VALUE":
        _check_loss_scale(value, source)
    elif full_key == "INPUT.FIX_SHAPE":
        _check_fix_shape(value, source)
    elif full_key == "TEST.EXPECTED_RESULTS":
        _check_expected_results(value, source)
    elif full_key in _NON_NEGATIVE and isinstance(value, (int, float)) and not value >= 0:
        raise ConfigError(f"config key '{full_key}' in {source} must be >= 0, got {short_repr(value)}")
    elif full_key == "INPUT.FIX_MAX_GT" and value < 0:
        raise ConfigError(f"config key 'INPUT.FIX_MAX_GT' in {source} must be >= 0, got {value}")


def _check_loss_scale(value: Any, source: str) -> None:
    if is_valid_loss_scale(value):
        return
    raise ConfigError(
        f"config key 'LOSS_SCALE_VALUE' in {source} must be {describe_loss_scale_rule()}, got {short_repr(value)}"
    )


def _check_fix_shape(value: Any, source: str) -> None:
    if len(value) == 0:
        return
    if len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return
    raise ConfigError(
        f"config key 'INPUT.FIX_SHAPE' in {source} must be () (off) or (height, width) in pixels, "
        f"got {short_repr(value)}"
    )


def _check_expected_results(value: Any, source: str) -> None:
    for entry in value:
        if (isinstance(entry, (list, tuple)) and len(entry) == 4 and all(isinstance(v, str) for v in entry[:2])
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry[2:])):
            continue
        raise ConfigError(
            f"config key 'TEST.EXPECTED_RESULTS' in {source}: each entry must be [task, metric, expected, "
            f"tolerance], e.g. [\"bbox\", \"AP\", 38.5, 0.2]; got {short_repr(entry)}"
        )
