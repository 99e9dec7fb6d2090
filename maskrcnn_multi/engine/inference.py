"""How the model runs at inference: precision and memory format chosen by the backend, overridable by
the config, and the lean inference graph.

Config keys (detectron2's YAMLs do not have them; their defaults keep detectron2's outputs):
- `TEST.AMP.ENABLED` (False): autocast at inference in `AMP_DTYPE`, or the backend's preferred half
  type (bfloat16 on the CPU, float16 on CUDA and NPU). False is exact float32.
- `MODEL.MEMORY_FORMAT` ("auto"): "channels_last", "contiguous", or "auto", the backend's preference
  for the dtype the convolutions run in (`Backend.preferred_memory_format`). Training uses it too.
- `TEST.FUSE_LAYERS` (True): run the inference graph (`modeling.inference_graph`): norms folded into
  the convolutions, bias / residual / ReLU fused where the device's library can. Exact up to
  rounding; False runs the model's own modules, layer by layer.
- `TEST.COMPILE` (False): the backbone (with FPN) compiled by torch.compile (inductor, with
  freezing: weights as constants), the heads as above. Measured on the CPU (R50-FPN, 800x1216, 1
  thread): the bfloat16 backbone 0.77 s -> 0.60 s, float32 no gain; the first call of each input
  size compiles (~10-30 s), so it is for fixed input sizes (benchmarks, INPUT.FIX_SHAPE, video).

`InferenceModel` wraps a model with these settings; the predictor, `--eval-only`, the evaluation
during training, the demo and `tools.benchmark` all run through it. The model itself is never
changed: the graph is derived from it and rebuilt whenever its weights change.
"""
import contextlib
import logging
from typing import Callable, ContextManager, List, NamedTuple, Optional, Tuple

import torch
from torch import nn

from ..config.amp import MEMORY_FORMATS
from ..modeling.inference_graph import build_inference_graph

__all__ = [
    "InferenceModel", "InferenceSettings", "for_inference", "inference_settings", "memory_format",
    "set_training_memory_format", "training_memory_format",
]

logger = logging.getLogger(__name__)

_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


class InferenceSettings(NamedTuple):
    """dtype: the autocast dtype, or None for exact float32; memory_format: a torch.memory_format;
    fuse: run the fused inference graph."""

    dtype: Optional[torch.dtype]
    memory_format: torch.memory_format
    fuse: bool
    compile: bool = False

    def describe(self) -> str:
        layout = "channels_last" if self.memory_format == torch.channels_last else "contiguous"
        precision = f"{str(self.dtype).replace('torch.', '')} autocast" if self.dtype is not None else "float32"
        graph = "fused graph" if self.fuse else "unfused modules"
        return f"{precision}, {layout}, {graph}{', compiled backbone' if self.compile else ''}"


def memory_format(name: str, backend, dtype: torch.dtype) -> torch.memory_format:
    """MODEL.MEMORY_FORMAT -> torch.memory_format; "auto" asks the backend for `dtype`."""
    if name not in MEMORY_FORMATS:
        raise ValueError(f"unknown MODEL.MEMORY_FORMAT {name!r} (choose from: {', '.join(MEMORY_FORMATS)})")
    if name == "auto":
        return backend.preferred_memory_format(dtype)
    return _FORMATS[name]


def inference_settings(cfg, backend) -> InferenceSettings:
    """What `cfg` asks of inference on `backend` (see the module docstring)."""
    dtype = backend.amp_dtype(cfg.AMP_DTYPE) if cfg.TEST.AMP.ENABLED else None
    return InferenceSettings(
        dtype=dtype,
        memory_format=memory_format(cfg.MODEL.MEMORY_FORMAT, backend, dtype or torch.float32),
        fuse=bool(cfg.TEST.FUSE_LAYERS),
        compile=bool(cfg.TEST.COMPILE),
    )


def training_memory_format(cfg, backend, dtype: torch.dtype) -> torch.memory_format:
    """MODEL.MEMORY_FORMAT for training in `dtype` (the AMP dtype, or float32)."""
    return memory_format(cfg.MODEL.MEMORY_FORMAT, backend, dtype)


def set_training_memory_format(model: nn.Module, cfg, backend, dtype: torch.dtype) -> torch.memory_format:
    """Put ``model``'s 4-D weights in the training layout for ``dtype`` and have it convert its input
    batch to that layout once (the layout then flows through the network); returns the layout."""
    layout = training_memory_format(cfg, backend, dtype)
    if layout != torch.contiguous_format:
        model.to(memory_format=layout)
        if hasattr(model, "set_input_layout"):
            model.set_input_layout(memory_format=layout)
    return layout


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (inference needs no gradient synchronisation)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _tensor_versions(model: nn.Module) -> Tuple:
    """Changes whenever a parameter or buffer is replaced or written in place (load_state_dict, a step)."""
    tensors: List[torch.Tensor] = list(model.parameters()) + list(model.buffers())
    return tuple((id(tensor), tensor._version) for tensor in tensors)


class InferenceModel(nn.Module):
    """``model`` as inference runs it under ``settings``: ``InferenceModel(model, settings, autocast)(inputs)``
    returns what ``model.eval()(inputs)`` returns, under ``torch.no_grad()`` and, with a dtype, the device's
    autocast (``autocast(dtype)`` gives the context).

    The inference graph is built on first use and rebuilt when the model's weights change. In fp32
    settings a model trained with AMP O2 (half weights) is evaluated with its weights widened to float32.
    """

    def __init__(self, model: nn.Module, settings: InferenceSettings,
                 autocast: Optional[Callable[[torch.dtype], ContextManager]] = None):
        super().__init__()
        self.model = _unwrap(model)
        self.settings = settings
        self._autocast = autocast
        self._graph: Optional[nn.Module] = None
        self._graph_key: Optional[Tuple] = None
        if settings.dtype is not None and autocast is None:
            raise ValueError("InferenceModel: a half-precision setting needs the backend's autocast")

    def graph(self) -> nn.Module:
        """The module that runs: the fused graph, or the model itself in eval mode with the settings'
        weight layout (built once per version of the weights)."""
        key = _tensor_versions(self.model)
        if self._graph is None or key != self._graph_key:
            self._graph = self._build()
            self._graph_key = key
        return self._graph

    def _build(self) -> nn.Module:
        settings = self.settings
        # exact settings: every weight in float32 (a no-op for an fp32 model; O2's half weights widened)
        dtype = settings.dtype if settings.dtype is not None else _widened(self.model)
        graph = build_inference_graph(self.model, fuse=settings.fuse, dtype=dtype, memory_format=settings.memory_format)
        if settings.compile and hasattr(graph, "backbone"):
            # inductor folds and fuses by itself: give it the backbone's own modules in the graph's
            # weight dtype and layout
            backbone = build_inference_graph(self.model.backbone, fuse=False, dtype=dtype,
                                             memory_format=settings.memory_format)
            graph.backbone = _FrozenCompiled(backbone)
        logger.debug("inference graph built (%s)", settings.describe())
        return graph

    def _context(self) -> ContextManager:
        return self._autocast(self.settings.dtype) if self.settings.dtype is not None else contextlib.nullcontext()

    def forward(self, batched_inputs):
        graph = self.graph()
        with torch.no_grad(), self._context():
            return graph(batched_inputs)

    def inference(self, batched_inputs, detected_instances=None, do_postprocess: bool = True):
        """The model's ``inference`` (given boxes, raw outputs) under the same settings."""
        graph = self.graph()
        with torch.no_grad(), self._context():
            return graph.inference(batched_inputs, detected_instances, do_postprocess=do_postprocess)

    def train(self, mode: bool = True) -> "InferenceModel":
        # inference only: the wrapped model keeps its own mode (the trainer switches it back)
        self.training = False
        return self


class _FrozenCompiled(nn.Module):
    """``module`` compiled by torch.compile with inductor's freezing (weights as constants: the
    graph is rebuilt, so recompiled, when the model's weights change); attributes such as the
    backbone's ``size_divisibility`` are the module's."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        self.compiled = torch.compile(module, dynamic=False)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["module"], name)

    def forward(self, x: torch.Tensor):
        import torch._inductor.config as inductor_config

        with inductor_config.patch(freezing=True):
            return self.compiled(x)


def for_inference(model: nn.Module, cfg, backend) -> nn.Module:
    """``model`` wrapped for inference with the settings ``cfg`` asks of ``backend``; a model that
    runs them already (an InferenceModel, or a wrapper holding one as ``inference_model``) as it is."""
    if isinstance(model, InferenceModel) or isinstance(getattr(model, "inference_model", None), InferenceModel):
        return model
    settings = inference_settings(cfg, backend)
    logger.info("Inference on %s: %s", backend.name, settings.describe())
    return InferenceModel(model, settings, autocast=lambda dtype: backend.autocast("O1", dtype))


def _widened(model: nn.Module) -> Optional[torch.dtype]:
    """float32 when some floating parameter of `model` is half (AMP O2), else None (leave as is)."""
    half = any(p.is_floating_point() and p.dtype in (torch.float16, torch.bfloat16) for p in model.parameters())
    return torch.float32 if half else None
