"""MODEL.* defaults: detectron2's keys and values (detectron2/config/defaults.py, main branch).

Every value here is detectron2's; change nothing without saying so in the docstring of
`maskrcnn_multi.config.defaults`. The R-CNN family uses BACKBONE, RESNETS, FPN, PROPOSAL_GENERATOR,
ANCHOR_GENERATOR, RPN, ROI_HEADS and the ROI_*_HEAD nodes; SEM_SEG_HEAD, PANOPTIC_FPN and RETINANET
exist only so that detectron2 YAMLs which mention them load unchanged.
"""
from .config import CfgNode as CN


def add_model_defaults(root: CN) -> None:
    """Add `root.MODEL` with detectron2's defaults. `root` is the (still empty) config root."""
    model = root.MODEL = CN()
    model.LOAD_PROPOSALS = False
    model.MASK_ON = False
    model.KEYPOINT_ON = False
    # detectron2's default; see maskrcnn_multi.config.defaults for why we keep it.
    model.DEVICE = "cuda"
    model.META_ARCHITECTURE = "GeneralizedRCNN"
    model.WEIGHTS = ""
    # BGR order (INPUT.FORMAT defaults to BGR); std 1.0: MSRA weights absorbed it into conv1.
    model.PIXEL_MEAN = [103.530, 116.280, 123.675]
    model.PIXEL_STD = [1.0, 1.0, 1.0]
    # ours: the layout convolutions run in ("auto": the backend's choice; see engine.inference)
    model.MEMORY_FORMAT = "auto"

    model.BACKBONE = CN()
    model.BACKBONE.NAME = "build_resnet_backbone"
    model.BACKBONE.FREEZE_AT = 2

    model.FPN = CN()
    model.FPN.IN_FEATURES = []
    model.FPN.OUT_CHANNELS = 256
    model.FPN.NORM = ""
    model.FPN.FUSE_TYPE = "sum"

    model.PROPOSAL_GENERATOR = CN()
    model.PROPOSAL_GENERATOR.NAME = "RPN"
    model.PROPOSAL_GENERATOR.MIN_SIZE = 0

    model.ANCHOR_GENERATOR = CN()
    model.ANCHOR_GENERATOR.NAME = "DefaultAnchorGenerator"
    model.ANCHOR_GENERATOR.SIZES = [[32, 64, 128, 256, 512]]
    model.ANCHOR_GENERATOR.ASPECT_RATIOS = [[0.5, 1.0, 2.0]]
    model.ANCHOR_GENERATOR.ANGLES = [[-90, 0, 90]]
    model.ANCHOR_GENERATOR.OFFSET = 0.0

    _add_rpn(model)
    _add_roi_heads(model)
    _add_other_heads(model)
    _add_resnets(model)


def _add_rpn(model: CN) -> None:
    rpn = model.RPN = CN()
    rpn.HEAD_NAME = "StandardRPNHead"
    rpn.IN_FEATURES = ["res4"]
    rpn.BOUNDARY_THRESH = -1
    rpn.IOU_THRESHOLDS = [0.3, 0.7]
    rpn.IOU_LABELS = [0, -1, 1]
    rpn.BATCH_SIZE_PER_IMAGE = 256
    rpn.POSITIVE_FRACTION = 0.5
    rpn.BBOX_REG_LOSS_TYPE = "smooth_l1"
    rpn.BBOX_REG_LOSS_WEIGHT = 1.0
    rpn.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
    rpn.SMOOTH_L1_BETA = 0.0
    rpn.LOSS_WEIGHT = 1.0
    # With FPN these are per level (PRE) and per level then per image (POST).
    rpn.PRE_NMS_TOPK_TRAIN = 12000
    rpn.PRE_NMS_TOPK_TEST = 6000
    rpn.POST_NMS_TOPK_TRAIN = 2000
    rpn.POST_NMS_TOPK_TEST = 1000
    rpn.NMS_THRESH = 0.7
    rpn.CONV_DIMS = [-1]


def _add_roi_heads(model: CN) -> None:
    heads = model.ROI_HEADS = CN()
    heads.NAME = "Res5ROIHeads"
    heads.NUM_CLASSES = 80
    heads.IN_FEATURES = ["res4"]
    heads.IOU_THRESHOLDS = [0.5]
    heads.IOU_LABELS = [0, 1]
    heads.BATCH_SIZE_PER_IMAGE = 512
    heads.POSITIVE_FRACTION = 0.25
    heads.SCORE_THRESH_TEST = 0.05
    heads.NMS_THRESH_TEST = 0.5
    heads.PROPOSAL_APPEND_GT = True

    box = model.ROI_BOX_HEAD = CN()
    box.NAME = ""
    box.BBOX_REG_LOSS_TYPE = "smooth_l1"
    box.BBOX_REG_LOSS_WEIGHT = 1.0
    box.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
    box.SMOOTH_L1_BETA = 0.0
    box.POOLER_RESOLUTION = 14
    box.POOLER_SAMPLING_RATIO = 0
    box.POOLER_TYPE = "ROIAlignV2"
    box.NUM_FC = 0
    box.FC_DIM = 1024
    box.NUM_CONV = 0
    box.CONV_DIM = 256
    box.NORM = ""
    box.CLS_AGNOSTIC_BBOX_REG = False
    box.TRAIN_ON_PRED_BOXES = False
    box.USE_FED_LOSS = False
    box.USE_SIGMOID_CE = False
    box.FED_LOSS_FREQ_WEIGHT_POWER = 0.5
    box.FED_LOSS_NUM_CLASSES = 50

    cascade = model.ROI_BOX_CASCADE_HEAD = CN()
    cascade.BBOX_REG_WEIGHTS = (
        (10.0, 10.0, 5.0, 5.0),
        (20.0, 20.0, 10.0, 10.0),
        (30.0, 30.0, 15.0, 15.0),
    )
    cascade.IOUS = (0.5, 0.6, 0.7)

    mask = model.ROI_MASK_HEAD = CN()
    mask.NAME = "MaskRCNNConvUpsampleHead"
    mask.POOLER_RESOLUTION = 14
    mask.POOLER_SAMPLING_RATIO = 0
    mask.NUM_CONV = 0
    mask.CONV_DIM = 256
    mask.NORM = ""
    mask.CLS_AGNOSTIC_MASK = False
    mask.POOLER_TYPE = "ROIAlignV2"

    keypoint = model.ROI_KEYPOINT_HEAD = CN()
    keypoint.NAME = "KRCNNConvDeconvUpsampleHead"
    keypoint.POOLER_RESOLUTION = 14
    keypoint.POOLER_SAMPLING_RATIO = 0
    keypoint.CONV_DIMS = tuple(512 for _ in range(8))
    keypoint.NUM_KEYPOINTS = 17
    keypoint.MIN_KEYPOINTS_PER_IMAGE = 1
    keypoint.NORMALIZE_LOSS_BY_VISIBLE_KEYPOINTS = True
    keypoint.LOSS_WEIGHT = 1.0
    keypoint.POOLER_TYPE = "ROIAlignV2"


def _add_other_heads(model: CN) -> None:
    """Semantic segmentation, panoptic and RetinaNet keys: loaded, not used by the R-CNN family."""
    sem_seg = model.SEM_SEG_HEAD = CN()
    sem_seg.NAME = "SemSegFPNHead"
    sem_seg.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    sem_seg.IGNORE_VALUE = 255
    sem_seg.NUM_CLASSES = 54
    sem_seg.CONVS_DIM = 128
    sem_seg.COMMON_STRIDE = 4
    sem_seg.NORM = "GN"
    sem_seg.LOSS_WEIGHT = 1.0

    panoptic = model.PANOPTIC_FPN = CN()
    panoptic.INSTANCE_LOSS_WEIGHT = 1.0
    panoptic.COMBINE = CN({"ENABLED": True})
    panoptic.COMBINE.OVERLAP_THRESH = 0.5
    panoptic.COMBINE.STUFF_AREA_LIMIT = 4096
    panoptic.COMBINE.INSTANCES_CONFIDENCE_THRESH = 0.5

    retina = model.RETINANET = CN()
    retina.NUM_CLASSES = 80
    retina.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    retina.NUM_CONVS = 4
    retina.IOU_THRESHOLDS = [0.4, 0.5]
    retina.IOU_LABELS = [0, -1, 1]
    retina.PRIOR_PROB = 0.01
    retina.SCORE_THRESH_TEST = 0.05
    retina.TOPK_CANDIDATES_TEST = 1000
    retina.NMS_THRESH_TEST = 0.5
    retina.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
    retina.FOCAL_LOSS_GAMMA = 2.0
    retina.FOCAL_LOSS_ALPHA = 0.25
    retina.SMOOTH_L1_LOSS_BETA = 0.1
    retina.BBOX_REG_LOSS_TYPE = "smooth_l1"
    retina.NORM = ""


def _add_resnets(model: CN) -> None:
    resnets = model.RESNETS = CN()
    resnets.DEPTH = 50
    resnets.OUT_FEATURES = ["res4"]
    resnets.NUM_GROUPS = 1
    resnets.NORM = "FrozenBN"
    resnets.WIDTH_PER_GROUP = 64
    resnets.STRIDE_IN_1X1 = True
    resnets.RES5_DILATION = 1
    # 64 for R18 / R34.
    resnets.RES2_OUT_CHANNELS = 256
    resnets.STEM_OUT_CHANNELS = 64
    resnets.DEFORM_ON_PER_STAGE = [False, False, False, False]
    resnets.DEFORM_MODULATED = False
    resnets.DEFORM_NUM_GROUPS = 1
