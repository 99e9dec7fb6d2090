#!/usr/bin/env bash
# Shared body of the evaluation / inference launch scripts (test/eval.sh, test/inference.sh), on top of
# test/common.sh (the training scripts' checks, device choice, output keeping, failure reports). A script sets:
#   NETWORK, CONFIG_FILE (default --config), MODE (eval: COCO AP | infer: --skip-eval, throughput only),
#   DEFAULT_BATCH (images per batch over all processes without --batch_size), NUM_WORKERS
# then sources this file and calls `mm_eval_main "$@"`.
# It runs tools/test_net on coco_2017_val of --data_path with --checkpoint, TEST.IMS_PER_BATCH =
# --batch_size / processes, and writes test/output/<MODE>_<device_id>/: the log <MODE>_<id>.log, test_net's
# --json-summary summary.json, OUTPUT_DIR eval_dir/ (inference/coco_2017_val/ predictions) and the summary
# <CaseName>.log: ActualFPS (images/s over all processes), LatencyAvg/P50/P90/P95/P99 (ms per batch),
# "bbox AP" / "segm AP" (MODE eval), E2EInferenceTime (s). Anything after a bare `--` is passed to test_net
# as extra KEY VALUE config pairs (they win over ours). A user error is one line on stderr and exit code 2,
# found before anything is written; an earlier output folder is kept aside, never deleted (as common.sh).
set -u
# shellcheck source=test/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

mm_eval_usage() {
  cat <<USAGE
usage: bash $0 --data_path=/path/to/coco --checkpoint=model_final.pth [--config=FILE] [--batch_size=N]
       [--device=npu|cuda|cpu] [--device_id=N] [--nproc_per_node=N] [--master_port=P] [--infer_steps=N]
       [--amp] [--dry_run] [-- KEY VALUE ...]
--data_path must be a COCO 2017 layout: annotations/instances_{train,val}2017.json, train2017/, val2017/
defaults: --config=$CONFIG_FILE, --batch_size=$DEFAULT_BATCH (over all processes), --nproc_per_node=1,
every image of val2017 (--infer_steps=N stops after N batches per process), exact float32 (--amp: the
device's half type), MODE $MODE ($([ "$MODE" = eval ] && echo "COCO box and mask AP" || echo "no AP: throughput and latency"))
--dry_run checks everything and prints the test_net command without running or writing anything
USAGE
}

mm_eval_parse_args() {
  # the default config is the repo's, wherever the script is started from
  data_path=""; data_path_given=0; checkpoint=""; config="$(dirname "${BASH_SOURCE[0]}")/../$CONFIG_FILE"
  batch_size="$DEFAULT_BATCH"
  device=""; device_id=0; nproc_per_node=1; master_port=23334; infer_steps=""; amp=0; dry_run=0; extra_opts=()
  nnodes=1; node_rank=0; master_addr=127.0.0.1; local_addr=127.0.0.1
  local arg
  while [ $# -gt 0 ]; do
    arg=$1
    case "$arg" in
      --data_path=*) data_path="${arg#*=}"; data_path_given=1 ;;
      --checkpoint=*) checkpoint="${arg#*=}" ;;
      --config=*) config="${arg#*=}" ;;
      --batch_size=*) batch_size="${arg#*=}" ;;
      --device=*) device="${arg#*=}" ;;
      --device_id=*) device_id="${arg#*=}" ;;
      --nproc_per_node=*) nproc_per_node="${arg#*=}" ;;
      --master_port=*) master_port="${arg#*=}" ;;
      --infer_steps=*) infer_steps="${arg#*=}" ;;
      --amp) amp=1 ;;
      --dry_run) dry_run=1 ;;
      --data_path|--checkpoint|--config|--batch_size|--device|--device_id|--nproc_per_node|--master_port|--infer_steps)
        mm_die "$arg takes its value after '=': $arg=VALUE" ;;
      --) shift; extra_opts=("$@"); break ;;
      -h|--help) mm_eval_usage; exit 0 ;;
      *) mm_die "unknown argument '$arg'" ;;
    esac
    shift
  done
}

# A file the run reads: given, present, a readable file.
mm_check_file() {
  local name=$1 value=${!1}
  [ -n "$value" ] || mm_die "--$name is required"
  [ -e "$value" ] || mm_die "--$name=$value does not exist"
  [ -f "$value" ] && [ -r "$value" ] || mm_die "--$name=$value is not a readable file"
}

mm_eval_check_args() {
  mm_check_int batch_size 1
  mm_check_int device_id 0
  mm_check_int nproc_per_node 1
  mm_check_int master_port 1 65535
  [ -z "$infer_steps" ] || mm_check_int infer_steps 1
  case "$device" in ""|npu|cuda|cpu) ;; *) mm_die "unknown --device '$device' (choose from: npu, cuda, cpu)" ;; esac
  world_size=$nproc_per_node
  [ $((batch_size % world_size)) -eq 0 ] \
    || mm_die "--batch_size=$batch_size does not split evenly over --nproc_per_node=$world_size processes"
  mm_check_file checkpoint
  mm_check_file config
  checkpoint="$(cd "$(dirname "$checkpoint")" && pwd)/$(basename "$checkpoint")"
  config="$(cd "$(dirname "$config")" && pwd)/$(basename "$config")"
  [[ "${MASKRCNN_DIST_TIMEOUT:-300}" =~ ^[1-9][0-9]*$ ]] \
    || mm_user_error "MASKRCNN_DIST_TIMEOUT must be a positive number of seconds, got '${MASKRCNN_DIST_TIMEOUT:-}'"
  local i
  for ((i = 0; i < ${#extra_opts[@]}; i += 2)); do
    if [[ "${extra_opts[i]}" == -* ]]; then
      mm_die "'${extra_opts[i]}' comes after '--', where only KEY VALUE config pairs go; put the script's options before '--'"
    fi
  done
  [ $(( ${#extra_opts[@]} % 2 )) -eq 0 ] || mm_die "the config overrides after -- must be KEY VALUE pairs, got: ${extra_opts[*]}"
}

# test_net's command (run_cmd) and, for more than one process, its torchrun launcher (launcher).
mm_eval_build_command() {
  local model_device="$device" per_rank=$((batch_size / world_size))
  if [ "$world_size" -eq 1 ] && [ "$device" != cpu ]; then model_device="$device:$device_id"; fi
  run_cmd=(-m maskrcnn_multi.tools.test_net --config-file "$config" --data_path "$data_path"
      --json-summary "$summary_json")
  [ "$MODE" = eval ] || run_cmd+=(--skip-eval)
  [ -z "$infer_steps" ] || run_cmd+=(--infer-steps "$infer_steps")
  pairs=(MODEL.WEIGHTS "$checkpoint" MODEL.DEVICE "$model_device" TEST.IMS_PER_BATCH "$per_rank"
      TEST.AMP.ENABLED "$([ "$amp" -eq 1 ] && echo True || echo False)" DATASETS.TEST "('coco_2017_val',)"
      DATALOADER.NUM_WORKERS "$NUM_WORKERS" OUTPUT_DIR "$output_dir/eval_dir" "${extra_opts[@]}")
  run_cmd+=("${pairs[@]}")
  launcher=()
  if [ "$world_size" -gt 1 ]; then
    launcher=(-m torch.distributed.run --nnodes 1 --node_rank 0 --nproc_per_node "$nproc_per_node"
        --master_addr 127.0.0.1 --master_port "$master_port" --rdzv_conf "timeout=${MASKRCNN_DIST_TIMEOUT:-300}")
  fi
}

# The config with every pair merged and its device checked before anything is written (a bad key or
# value is one line, as tools/schedule.py does for the training scripts).
mm_eval_check_config() {
  local errors status=0 message
  errors=$(mktemp) || mm_user_error "cannot create a temporary file (is TMPDIR writable?)"
  "$PYTHON" - "$config" "${pairs[@]}" 2>"$errors" <<'PYTHON' || status=$?
import sys
from maskrcnn_multi.backends import get_backend
from maskrcnn_multi.config import get_cfg
from maskrcnn_multi.tools._cli import run_main

def check(argv):
    cfg = get_cfg()
    cfg.merge_from_file(argv[0])
    cfg.merge_from_list(argv[1:])
    get_backend(cfg.MODEL.DEVICE)

sys.exit(run_main(check, sys.argv[1:], prog="config"))
PYTHON
  if [ "$status" -eq 2 ]; then
    message=$(grep -a -v '^[[:space:]]*$' "$errors" | tail -n 1)
    rm -f "$errors"
    mm_user_error "${message#*: error: }"
  fi
  cat "$errors" >&2
  rm -f "$errors"
  [ "$status" -eq 0 ] || { echo "$(basename "$0"): cannot check the config (exit $status)" >&2; exit "$status"; }
}

# Reads test_net's JSON summary and writes test/output/<MODE>_<id>/<CaseName>.log (key = value lines).
mm_eval_write_summary() {
  local e2e_seconds=$1 case_name summary values
  case_name="${NETWORK}_bs${batch_size}_${world_size}p_${MODE}"
  summary="$output_dir/${case_name}.log"
  values=$("$PYTHON" - "$summary_json" "$MODE" <<'PYTHON'
import json, sys
summary = json.load(open(sys.argv[1]))
latency = summary["latency_ms"]
print(f"ActualFPS = {summary['images_per_s']:.3f}")
for name in ("avg", "p50", "p90", "p95", "p99"):
    print(f"Latency{name.capitalize()} = {latency[name]:.2f}")
if sys.argv[2] == "eval":
    ap = summary["ap"] or {}
    for task in ("bbox", "segm"):
        print(f"{task} AP = {ap[task]:.3f}" if task in ap else f"{task} AP = None")
print(f"Precision = {summary['precision']}")
print(f"Images = {summary['images']}")
PYTHON
  ) || { echo "$(basename "$0"): cannot read test_net's summary $summary_json" >&2; exit 1; }
  {
    echo "Network = ${NETWORK}"
    echo "RankSize = ${world_size}"
    echo "BatchSize = ${batch_size}"
    echo "DeviceType = $(uname -m)"
    echo "CaseName = ${case_name}"
    echo "$values"
    echo "E2EInferenceTime = ${e2e_seconds}"
  } >"$summary"
  cat "$summary"
}

mm_eval_main() {
  PYTHON="${PYTHON:-python3}"
  TOPOLOGY=single   # common.sh's run helpers: one node
  RUN_WHAT="$([ "$MODE" = eval ] && echo evaluation || echo inference)"
  mm_eval_parse_args "$@"
  mm_eval_check_args
  mm_check_data_path
  command -v "$PYTHON" >/dev/null 2>&1 || mm_user_error "PYTHON=$PYTHON: no such command (set PYTHON to the interpreter)"
  local here; here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  cd "$here/.." || exit 1   # run from the repo root, whether started from it or from test/
  mm_pick_device
  if [ "$device" = npu ]; then
    set +u   # CANN's set_env.sh reads unset variables
    # shellcheck source=/dev/null
    source "$here/env_npu.sh"
    set -u
  else
    export TORCH_DEVICE_BACKEND_AUTOLOAD="${TORCH_DEVICE_BACKEND_AUTOLOAD:-0}"
  fi
  output_dir="test/output/${MODE}_${device_id}"
  run_log="$output_dir/${MODE}_${device_id}.log"
  summary_json="$output_dir/summary.json"
  local -a run_cmd launcher pairs
  local kept_output
  mm_eval_build_command
  mm_eval_check_config
  local plan="$RUN_WHAT: $world_size process(es), device $device, batch $batch_size"
  plan+=", $([ -n "$infer_steps" ] && echo "$infer_steps batches per process" || echo "every val2017 image")"
  if [ "$dry_run" -eq 1 ]; then
    echo "$plan"
    echo "dry run, nothing written; the run would be:"
    printf '%q ' "$PYTHON" "${launcher[@]}" "${run_cmd[@]}"; echo
    exit 0
  fi
  unset PERF_ONLY
  export ASCEND_DEVICE_ID="$device_id" RANK_SIZE="$world_size"
  mm_prepare_output
  [ -z "$kept_output" ] || echo "the earlier run's output is kept as $kept_output" | tee -a "$run_log"
  echo "$plan" | tee -a "$run_log"
  local start end status=0
  start=$(date +%s)
  mm_run_training || status=$?
  end=$(date +%s)
  [ "$status" -eq 0 ] || mm_report_failure "$status"
  mm_eval_write_summary $((end - start))
}
