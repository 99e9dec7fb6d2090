"""The default configuration: detectron2's keys and values, plus the Ascend ModelZoo keys.

detectron2's values are kept exactly (detectron2/config/defaults.py, main branch), so a detectron2
YAML means the same thing here. Our additions and the choices behind them:

- `MODEL.DEVICE = "cuda"`, detectron2's default (the ModelZoo port changed it to "npu"). A config that
  does not name a device means what it means in detectron2; on a machine without CUDA
  `backends.get_backend` then fails at once with a one-line reason instead of silently training on
  the CPU. Our CPU-only configs (configs/Synthetic) set `MODEL.DEVICE: "cpu"` themselves.
- Top-level `AMP` (0/1), `OPT_LEVEL` ("O0"/"O1"/"O2"), `LOSS_SCALE_VALUE`: the ModelZoo port's keys,
  spelled as its scripts pass them (`AMP 1 OPT_LEVEL O2 LOSS_SCALE_VALUE 64`). detectron2's own
  `SOLVER.AMP.ENABLED` is kept too; `config.amp.amp_settings` says how the two combine.
- `LOSS_SCALE_VALUE = "dynamic"` (a positive number is a static scale). The port's default is 64 (a
  static scale, apex style); we default to dynamic scaling because that is what detectron2 does under
  `SOLVER.AMP.ENABLED` (torch GradScaler) and what apex itself does for O1/O2 when no scale is given.
  The ModelZoo scripts pass `LOSS_SCALE_VALUE 64` explicitly, so they get 64 either way.
- `AMP_DTYPE = ""`: the backend's preferred half type (bfloat16 on CPU, float16 on CUDA and NPU);
  "float16" or "bfloat16" force one.
- `INPUT.FIX_SHAPE = ()`: off. (H, W) pads every image to that fixed size (static shapes for graph
  compilers); with () a backend that wants static shapes (NPU) supplies its default, (1344, 1344),
  the port's value: see `Backend.fixed_input_shape`.
- `INPUT.FIX_MAX_GT = 20`: with static shapes, ground truth per image is capped to this many boxes
  (a random subset; the port also pads to exactly 20, we do not), the port's value. Unused when static shapes are off. Raise it for crowded data sets (COCO
  has images with ~90 objects; the port drops all but 20 of them).
- `DEBUG_MODE = 0`: the port's key; 1 enables extra checks in training (`engine.debug_checks`:
  inputs, the parameter with a non-finite gradient, autograd anomaly detection; several times slower).
- `FLOAT32_PRECISION` and `CUDNN_BENCHMARK` are detectron2's and act through the backend
  (`engine.runtime`); the launch scripts' `--hf32` / `--fp32` set FLOAT32_PRECISION "high" / "highest".
- The fast path (`engine.inference`): `TEST.AMP.ENABLED = False` (True: inference in the AMP dtype),
  `MODEL.MEMORY_FORMAT = "auto"` (the backend's preferred layout for the dtype the convolutions run
  in; "channels_last", "contiguous"), `TEST.FUSE_LAYERS = True` (FrozenBN folded into convolutions,
  bias / residual / ReLU fused, at inference only; the parameters and checkpoints are unchanged).
- `TEST.IMS_PER_BATCH = 1` (maskrcnn-benchmark's key; detectron2 always tests one image per batch):
  images per batch in the test loader *on each process* (detectron2's `batch_size` of
  build_detection_test_loader), so 1 keeps detectron2's behaviour on any number of processes.
"""
from .config import CfgNode as CN
from .defaults_model import add_model_defaults

_C = CN()
_C.VERSION = 2
add_model_defaults(_C)

# ---------------------------------------------------------------------------- #
# INPUT
# ---------------------------------------------------------------------------- #
_C.INPUT = CN()
_C.INPUT.MIN_SIZE_TRAIN = (800,)
_C.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
_C.INPUT.MAX_SIZE_TRAIN = 1333
# 0 disables resizing at test time.
_C.INPUT.MIN_SIZE_TEST = 800
_C.INPUT.MAX_SIZE_TEST = 1333
_C.INPUT.RANDOM_FLIP = "horizontal"
_C.INPUT.CROP = CN({"ENABLED": False})
_C.INPUT.CROP.TYPE = "relative_range"
_C.INPUT.CROP.SIZE = [0.9, 0.9]
_C.INPUT.FORMAT = "BGR"
_C.INPUT.MASK_FORMAT = "polygon"
# Ascend ModelZoo: static input shapes (see the module docstring).
_C.INPUT.FIX_SHAPE = ()
_C.INPUT.FIX_MAX_GT = 20

# ---------------------------------------------------------------------------- #
# DATASETS / DATALOADER
# ---------------------------------------------------------------------------- #
_C.DATASETS = CN()
_C.DATASETS.TRAIN = ()
_C.DATASETS.PROPOSAL_FILES_TRAIN = ()
_C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN = 2000
_C.DATASETS.TEST = ()
_C.DATASETS.PROPOSAL_FILES_TEST = ()
_C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST = 1000

_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
_C.DATALOADER.ASPECT_RATIO_GROUPING = True
_C.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"
_C.DATALOADER.REPEAT_THRESHOLD = 0.0
_C.DATALOADER.REPEAT_SQRT = True
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = True

# ---------------------------------------------------------------------------- #
# SOLVER
# ---------------------------------------------------------------------------- #
_C.SOLVER = CN()
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"
_C.SOLVER.MAX_ITER = 40000
_C.SOLVER.BASE_LR = 0.001
_C.SOLVER.BASE_LR_END = 0.0
_C.SOLVER.MOMENTUM = 0.9
# ours (detectron2's yacs config has SGD only): "SGD" or "AdamW" (betas (MOMENTUM, 0.999), decoupled
# weight decay per parameter group as below)
_C.SOLVER.OPTIMIZER = "SGD"
_C.SOLVER.NESTEROV = False
_C.SOLVER.WEIGHT_DECAY = 0.0001
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0
_C.SOLVER.GAMMA = 0.1
_C.SOLVER.STEPS = (30000,)
_C.SOLVER.NUM_DECAYS = 3
_C.SOLVER.WARMUP_FACTOR = 1.0 / 1000
_C.SOLVER.WARMUP_ITERS = 1000
_C.SOLVER.WARMUP_METHOD = "linear"
_C.SOLVER.RESCALE_INTERVAL = False
_C.SOLVER.CHECKPOINT_PERIOD = 5000
# Images per iteration across all workers.
_C.SOLVER.IMS_PER_BATCH = 16
# 0: off. Otherwise the world size this config was tuned for (detectron2's auto_scale_workers).
_C.SOLVER.REFERENCE_WORLD_SIZE = 0
_C.SOLVER.BIAS_LR_FACTOR = 1.0
# None: follow SOLVER.WEIGHT_DECAY.
_C.SOLVER.WEIGHT_DECAY_BIAS = None
_C.SOLVER.CLIP_GRADIENTS = CN({"ENABLED": False})
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "value"
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
# detectron2's AMP switch (autocast + dynamic loss scaling); see config.amp.amp_settings.
_C.SOLVER.AMP = CN({"ENABLED": False})

# ---------------------------------------------------------------------------- #
# TEST
# ---------------------------------------------------------------------------- #
_C.TEST = CN()
# Items are [task, metric, value, tolerance], e.g. [["bbox", "AP", 38.5, 0.2]].
_C.TEST.EXPECTED_RESULTS = []
_C.TEST.EVAL_PERIOD = 0
_C.TEST.KEYPOINT_OKS_SIGMAS = []
_C.TEST.DETECTIONS_PER_IMAGE = 100
# ours (see the module docstring): images per test batch on each process
_C.TEST.IMS_PER_BATCH = 1
_C.TEST.AUG = CN({"ENABLED": False})
_C.TEST.AUG.MIN_SIZES = (400, 500, 600, 700, 800, 900, 1000, 1100, 1200)
_C.TEST.AUG.MAX_SIZE = 4000
_C.TEST.AUG.FLIP = True
_C.TEST.PRECISE_BN = CN({"ENABLED": False})
_C.TEST.PRECISE_BN.NUM_ITER = 200
# ours (see the module docstring): inference precision and the fused inference graph
_C.TEST.AMP = CN({"ENABLED": False})
_C.TEST.FUSE_LAYERS = True
# ours: compile the backbone (+FPN) for inference with torch.compile (inductor, freezing); pays off
# for a fixed input size only (each new size compiles again); see engine.inference
_C.TEST.COMPILE = False

# ---------------------------------------------------------------------------- #
# Misc
# ---------------------------------------------------------------------------- #
_C.OUTPUT_DIR = "./output"
# Negative: a fresh random seed per run.
_C.SEED = -1
_C.CUDNN_BENCHMARK = False
# "" leaves torch's float32 matmul precision alone; else "highest" / "high" / "medium".
_C.FLOAT32_PRECISION = ""
_C.VIS_PERIOD = 0
_C.GLOBAL = CN()
_C.GLOBAL.HACK = 1.0

# ---------------------------------------------------------------------------- #
# Ascend ModelZoo keys (see the module docstring)
# ---------------------------------------------------------------------------- #
_C.AMP = 0
_C.OPT_LEVEL = "O0"
_C.LOSS_SCALE_VALUE = "dynamic"
_C.AMP_DTYPE = ""
_C.DEBUG_MODE = 0


def get_cfg() -> CN:
    """A fresh, mutable copy of the defaults; changing it never changes the next `get_cfg()`."""
    return _C.clone()
