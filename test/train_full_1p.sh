#!/usr/bin/env bash
# ModelZoo launch script: Faster_Mask_RCNN_ID0101_for_PyTorch, 1p, accuracy run (trains, then COCO evaluation).
# usage: bash test/train_full_1p.sh --data_path=/data/coco [--batch_size=8] [--train_steps=N] [--device=npu|cuda|cpu] ...
NETWORK="Faster_Mask_RCNN_ID0101_for_PyTorch"
CONFIG_FILE="configs/COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml"
MODE=acc
TOPOLOGY=1p
DEFAULT_BATCH=8
DEFAULT_STEPS="82000"
BASE_BATCH=8
BASE_LR=0.0025
NUM_WORKERS=4
# shellcheck source=test/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
mm_main "$@"
