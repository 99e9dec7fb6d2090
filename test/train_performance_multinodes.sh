#!/usr/bin/env bash
# ModelZoo launch script: Faster_Mask_RCNN_ID0101_for_PyTorch, multinodes, performance run (PERF_ONLY, no evaluation).
# usage: bash test/train_performance_multinodes.sh --data_path=/data/coco [--batch_size=64] [--train_steps=200] [--device=npu|cuda|cpu] ...
NETWORK="Faster_Mask_RCNN_ID0101_for_PyTorch"
CONFIG_FILE="configs/COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml"
MODE=perf
TOPOLOGY=multinodes
DEFAULT_BATCH=64
DEFAULT_STEPS="200"
BASE_BATCH=8
BASE_LR=0.0025
NUM_WORKERS=8
# shellcheck source=test/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
mm_main "$@"
