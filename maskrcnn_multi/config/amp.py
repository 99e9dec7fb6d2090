"""The mixed-precision and float32 rules of a config, defined once for every layer.

What the keys may hold (`config.checks` refuses anything else at merge time; `backends` uses the
same names when it turns them into torch settings):
- `OPT_LEVEL`: "O0" (full precision), "O1" (autocast), "O2" (half weights, fp32 masters).
- `AMP_DTYPE`: "" (the backend's preferred half type), "float16" or "bfloat16".
- `LOSS_SCALE_VALUE`: a positive number (a static scale) or "dynamic".
- `FLOAT32_PRECISION`: "" (the device's default), "highest" (exact float32), "high" (TF32 on
  CUDA, HF32 on Ascend), "medium" (also bfloat16 internally where the device offers it);
  detectron2's key and values.
- `MODEL.MEMORY_FORMAT`: "auto" (the backend's preference), "channels_last" or "contiguous".
- `TEST.AMP.ENABLED`: inference in the AMP dtype (`AMP_DTYPE` or the backend's half type).

How the two AMP switches combine: the Ascend ModelZoo keys (`AMP`, `OPT_LEVEL`,
`LOSS_SCALE_VALUE`, ours `AMP_DTYPE`) and detectron2's `SOLVER.AMP.ENABLED` both turn mixed
precision on:
- `AMP 1` uses `OPT_LEVEL` as given ("O0" there still means off);
- else `SOLVER.AMP.ENABLED True` means "O1" (detectron2: autocast + loss scaling);
- else "O0" (full precision).
The loss scale is `LOSS_SCALE_VALUE` in every case ("dynamic" by default, which is what
detectron2's GradScaler does).
"""
from typing import Any, NamedTuple, Union

OPT_LEVELS = ("O0", "O1", "O2")
AMP_DTYPES = ("", "float16", "bfloat16")
FLOAT32_PRECISIONS = ("", "highest", "high", "medium")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
DYNAMIC_LOSS_SCALE = "dynamic"


def is_valid_loss_scale(value: Any) -> bool:
    """LOSS_SCALE_VALUE's rule: "dynamic" or a positive number (not a bool)."""
    if value == DYNAMIC_LOSS_SCALE:
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def describe_loss_scale_rule() -> str:
    return f"a positive number (a static loss scale) or '{DYNAMIC_LOSS_SCALE}'"


class AmpSettings(NamedTuple):
    """opt_level: "O0" / "O1" / "O2"; dtype: "" (the backend's choice), "float16" or "bfloat16";
    loss_scale: a positive float (static) or "dynamic"."""

    opt_level: str
    dtype: str
    loss_scale: Union[float, str]

    @property
    def enabled(self) -> bool:
        return self.opt_level != "O0"


def amp_settings(cfg) -> AmpSettings:
    """The AMP setting `cfg` asks for (see the module docstring); the engine passes it to the backend."""
    if cfg.AMP == 1:
        opt_level = cfg.OPT_LEVEL
    elif cfg.SOLVER.AMP.ENABLED:
        opt_level = "O1"
    else:
        opt_level = "O0"
    loss_scale = cfg.LOSS_SCALE_VALUE
    if loss_scale != DYNAMIC_LOSS_SCALE:
        loss_scale = float(loss_scale)
    return AmpSettings(opt_level=opt_level, dtype=cfg.AMP_DTYPE, loss_scale=loss_scale)
