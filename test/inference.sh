#!/usr/bin/env bash
# Inference launch script (NVIDIA's inference.sh, ModelZoo style): test_net --skip-eval on coco_2017_val,
# throughput (ActualFPS) and latency percentiles, no AP (tools/test_net; see test/eval_common.sh).
# usage: bash test/inference.sh --data_path=/data/coco --checkpoint=model_final.pth [--batch_size=1]
#        [--infer_steps=N] [--nproc_per_node=1] [--device=npu|cuda|cpu] [--config=FILE] [--amp] [-- KEY VALUE ...]
NETWORK="Faster_Mask_RCNN_ID0101_for_PyTorch"
CONFIG_FILE="configs/COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml"
MODE=infer
DEFAULT_BATCH=1
NUM_WORKERS=4
# shellcheck source=test/eval_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/eval_common.sh"
mm_eval_main "$@"
