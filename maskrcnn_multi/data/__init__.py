"""Data: transforms, dataset catalogs, COCO loading, the dataset mapper, samplers and loaders.

Datasets live under ``$MASKRCNN_MULTI_DATASETS`` (default ``./datasets``): the synthetic shapes set in
``<root>/shapes`` (generated on first load), COCO 2017 in ``<root>/coco``; both are registered on
import (see ``builtin.py``).
"""
from .build import (
    MapDataset,
    build_detection_test_loader,
    build_detection_train_loader,
    check_dataset_names,
    check_num_classes,
    filter_images_without_annotations,
    get_detection_dataset_dicts,
    orientation_groups,
    trivial_batch_collator,
)
from .catalog import DatasetCatalog, Metadata, MetadataCatalog, datasets_root
from .coco import load_coco_json, read_coco_json, register_coco_2017, register_coco_instances
from .dataset_mapper import DatasetMapper
from .lvis import load_lvis_json, register_cityscapes_coco, register_lvis, register_lvis_instances
from .detection_utils import (
    BadImageError,
    annotations_to_instances,
    build_augmentation,
    check_annotation_values,
    check_image_size,
    filter_empty_instances,
    read_image,
    transform_instance_annotations,
)
from .samplers import InferenceSampler, RepeatFactorTrainingSampler, TrainingBatchSampler, TrainingSampler
from .transforms import (
    HFlipTransform,
    NoOpTransform,
    RandomFlip,
    ResizeShortestEdge,
    ResizeTransform,
    Transform,
    TransformGen,
    TransformList,
    apply_transform_gens,
)
from .validation import DatasetError, DatasetFileNotFoundError, UnknownDatasetError
from .synthetic import ensure_synthetic, generate_shapes_dataset, register_synthetic
from .builtin import register_all_builtin

register_all_builtin()
