"""How the two AMP switches of a config combine into one setting.

The Ascend ModelZoo keys (`AMP`, `OPT_LEVEL`, `LOSS_SCALE_VALUE`, ours `AMP_DTYPE`) and detectron2's
`SOLVER.AMP.ENABLED` both turn mixed precision on:
- `AMP 1` uses `OPT_LEVEL` as given ("O0" there still means off);
- else `SOLVER.AMP.ENABLED True` means "O1" (detectron2: autocast + loss scaling);
- else "O0" (full precision).
The loss scale is `LOSS_SCALE_VALUE` in every case ("dynamic" by default, which is what
detectron2's GradScaler does).
"""
from typing import NamedTuple, Union


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
    if loss_scale != "dynamic":
        loss_scale = float(loss_scale)
    return AmpSettings(opt_level=opt_level, dtype=cfg.AMP_DTYPE, loss_scale=loss_scale)
