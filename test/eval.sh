#!/usr/bin/env bash
# Evaluation launch script (NVIDIA's eval.sh, ModelZoo style): COCO box and mask AP of --checkpoint on
# coco_2017_val, with throughput and latency (tools/test_net; see test/eval_common.sh).
# usage: bash test/eval.sh --data_path=/data/coco --checkpoint=test/output/0/train_dir/model_final.pth \
#        [--batch_size=1] [--nproc_per_node=1] [--device=npu|cuda|cpu] [--config=FILE] [--amp] [-- KEY VALUE ...]
NETWORK="Faster_Mask_RCNN_ID0101_for_PyTorch"
CONFIG_FILE="configs/COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml"
MODE=eval
DEFAULT_BATCH=1
NUM_WORKERS=4
# shellcheck source=test/eval_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/eval_common.sh"
mm_eval_main "$@"
