#!/usr/bin/env bash
# ModelZoo launch script: Faster_RCNN_ID0101_for_PyTorch, 8p, accuracy run (trains, then COCO evaluation).
# usage: bash test/train_faster_rcnn_full_8p.sh --data_path=/data/coco [--batch_size=64] [--train_steps=N] [--device=npu|cuda|cpu] ...
NETWORK="Faster_RCNN_ID0101_for_PyTorch"
CONFIG_FILE="configs/COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml"
MODE=acc
TOPOLOGY=8p
DEFAULT_BATCH=64
DEFAULT_STEPS="11250"
BASE_BATCH=8
BASE_LR=0.0025
NUM_WORKERS=8
# shellcheck source=test/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
mm_main "$@"
