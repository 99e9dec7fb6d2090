#!/usr/bin/env bash
# Shared body of the ModelZoo launch scripts (test/train_*.sh). A script sets:
#   NETWORK, CONFIG_FILE, MODE (perf|acc), TOPOLOGY (1p|8p|multinodes), DEFAULT_BATCH, DEFAULT_STEPS
#   (a perf run's length; an acc run's length at DEFAULT_BATCH, scaled to the batch), BASE_BATCH and
#   BASE_LR (the LR per BASE_BATCH images, scaled linearly to the batch), NUM_WORKERS
# then sources this file and calls `mm_main "$@"`.
# Arguments are the ModelZoo's `--name=value` set plus ours (--device, --nproc_per_node); anything
# after a bare `--` is passed to train_net as extra `KEY VALUE` config pairs (they win over ours).
# Environment read: MASKRCNN_DIST_TIMEOUT (seconds to wait for the other ranks / nodes, default 300).
set -u

mm_usage() {
  cat >&2 <<USAGE
usage: bash $0 --data_path=/path/to/coco [--batch_size=N] [--train_steps=N] [--device_id=N]
       [--nnodes=N --node_rank=R --local_addr=IP --master_addr=IP --master_port=P]
       [--hf32 | --fp32] [--device=npu|cuda|cpu] [--nproc_per_node=N] [-- KEY VALUE ...]
--data_path must be a COCO 2017 layout: annotations/instances_{train,val}2017.json, train2017/, val2017/
USAGE
}

mm_die() { echo "$(basename "$0"): $*" >&2; mm_usage; exit 2; }

mm_parse_args() {
  data_path=""; batch_size="$DEFAULT_BATCH"; train_steps=""; device_id=0
  nnodes=1; node_rank=0; local_addr=127.0.0.1; master_addr=127.0.0.1; master_port=23333
  precision_mode=amp; device=""; nproc_per_node=""; extra_opts=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --data_path=*) data_path="${1#*=}" ;;
      --batch_size=*) batch_size="${1#*=}" ;;
      --train_steps=*) train_steps="${1#*=}" ;;
      --device_id=*) device_id="${1#*=}" ;;
      --nnodes=*) nnodes="${1#*=}" ;;
      --node_rank=*) node_rank="${1#*=}" ;;
      --local_addr=*) local_addr="${1#*=}" ;;
      --master_addr=*) master_addr="${1#*=}" ;;
      --master_port=*) master_port="${1#*=}" ;;
      --hf32) precision_mode=hf32 ;;
      --fp32) precision_mode=fp32 ;;
      --device=*) device="${1#*=}" ;;
      --nproc_per_node=*) nproc_per_node="${1#*=}" ;;
      --) shift; extra_opts=("$@"); break ;;
      -h|--help) mm_usage; exit 0 ;;
      *) mm_die "unknown argument '$1'" ;;
    esac
    shift
  done
  [ -n "$data_path" ] || mm_die "--data_path is required"
  local f
  for f in annotations/instances_train2017.json annotations/instances_val2017.json train2017 val2017; do
    [ -e "$data_path/$f" ] || mm_die "--data_path=$data_path is not a COCO 2017 layout: $data_path/$f is missing"
  done
  data_path="$(cd "$data_path" && pwd)"   # the run starts from the repo root
  local n
  for n in batch_size device_id nnodes node_rank master_port; do
    [[ "${!n}" =~ ^[0-9]+$ ]] || mm_die "--$n must be a non-negative integer, got '${!n}'"
  done
  [ "$batch_size" -gt 0 ] || mm_die "--batch_size must be positive"
  [ "$nnodes" -gt 0 ] && [ "$node_rank" -lt "$nnodes" ] || mm_die "--node_rank=$node_rank must be below --nnodes=$nnodes"
  [ -z "$train_steps" ] || [[ "$train_steps" =~ ^[1-9][0-9]*$ ]] || mm_die "--train_steps must be a positive integer, got '$train_steps'"
  [[ "${MASKRCNN_DIST_TIMEOUT:-300}" =~ ^[1-9][0-9]*$ ]] \
    || mm_die "MASKRCNN_DIST_TIMEOUT must be a positive number of seconds, got '${MASKRCNN_DIST_TIMEOUT:-}'"
  [ $(( ${#extra_opts[@]} % 2 )) -eq 0 ] || mm_die "the config overrides after -- must be KEY VALUE pairs, got: ${extra_opts[*]}"
}

# --device, else npu if torch_npu imports and sees a device, else cuda if available, else cpu.
mm_pick_device() {
  if [ -n "$device" ]; then
    case "$device" in npu|cuda|cpu) ;; *) mm_die "unknown --device '$device' (choose from: npu, cuda, cpu)" ;; esac
    return
  fi
  if "$PYTHON" -c 'import torch, torch_npu; raise SystemExit(0 if torch.npu.is_available() else 1)' >/dev/null 2>&1; then
    device=npu
  elif TORCH_DEVICE_BACKEND_AUTOLOAD=0 "$PYTHON" -c 'import torch; raise SystemExit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    device=cuda
  else
    device=cpu
  fi
}

# The SOLVER.* pairs of this run (tools/schedule.py): LR scaled with the batch, the run's length.
mm_plan_schedule() {
  local plan
  plan=$("$PYTHON" -m maskrcnn_multi.tools.schedule --config-file "$CONFIG_FILE" --mode "$MODE" \
      --batch-size "$batch_size" --train-steps "${train_steps:-0}" --default-steps "$DEFAULT_STEPS" \
      --default-batch "$DEFAULT_BATCH" --reference-batch "$BASE_BATCH" --reference-lr "$BASE_LR") \
    || mm_die "cannot plan the schedule for $CONFIG_FILE"
  read -r -a schedule <<<"$plan"
}

mm_log_command() { printf '%q ' "$@" >>"$train_log"; echo >>"$train_log"; }

# Runs train_net (under torchrun when more than one process) into $train_log; returns its exit status.
mm_run_training() {
  local world_size=$((nnodes * nproc_per_node))
  local -a precision schedule
  case "$precision_mode" in
    amp) precision=(AMP 1 OPT_LEVEL O2 LOSS_SCALE_VALUE 64) ;;
    hf32) export ALLOW_HF32=True; precision=(AMP 0 OPT_LEVEL O0) ;;
    fp32) export ALLOW_FP32=True; precision=(AMP 0 OPT_LEVEL O0) ;;
  esac
  local model_device="$device"
  if [ "$world_size" -eq 1 ] && [ "$device" != cpu ]; then model_device="$device:$device_id"; fi
  mm_plan_schedule
  local -a train_cmd=(-m maskrcnn_multi.tools.train_net --config-file "$CONFIG_FILE" --data_path "$data_path"
      "${precision[@]}" MODEL.DEVICE "$model_device" "${schedule[@]}" SEED 1234
      MODEL.RPN.NMS_THRESH 0.8 MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO 2
      MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO 2 DATALOADER.NUM_WORKERS "$NUM_WORKERS"
      OUTPUT_DIR "$output_dir/train_dir" "${extra_opts[@]}")
  echo "world size $world_size ($nnodes node(s) x $nproc_per_node), device $device, batch $batch_size" | tee "$train_log"
  if [ "$world_size" -eq 1 ]; then
    mm_log_command "$PYTHON" "${train_cmd[@]}"
    "$PYTHON" "${train_cmd[@]}" >>"$train_log" 2>&1
  else
    if [ "$TOPOLOGY" = multinodes ]; then export HCCL_IF_IP="$local_addr"; fi
    # the static rendezvous waits this long for the other nodes (torchrun's default: 600 s)
    local -a launcher=(-m torch.distributed.run --nnodes "$nnodes" --node_rank "$node_rank"
        --nproc_per_node "$nproc_per_node" --master_addr "$master_addr" --master_port "$master_port"
        --rdzv_conf "timeout=${MASKRCNN_DIST_TIMEOUT:-300}")
    mm_log_command "$PYTHON" "${launcher[@]}" "${train_cmd[@]}"
    "$PYTHON" "${launcher[@]}" "${train_cmd[@]}" >>"$train_log" 2>&1
  fi
}

# Reads the training log and writes test/output/<id>/<CaseName>.log (key = value lines).
mm_write_summary() {
  local e2e_seconds=$1 world_size=$((nnodes * nproc_per_node))
  local fps compile_time loss accuracy training_time case_name summary
  fps=$(grep -ao "FPS = [0-9.eE+-]*" "$train_log" | awk '{s += $3; n++} END {if (n) printf "%.3f", s / n}')
  loss=$(grep -ao "total_loss: [0-9.eE+-]*" "$train_log" | tail -n 1 | awk '{print $2}')
  case_name="${NETWORK}_bs${batch_size}_${world_size}p_${MODE}"
  summary="$output_dir/${case_name}.log"
  {
    echo "Network = ${NETWORK}"
    echo "RankSize = ${world_size}"
    echo "BatchSize = ${batch_size}"
    echo "DeviceType = $(uname -m)"
    echo "CaseName = ${case_name}"
    echo "ActualFPS = ${fps:-0}"
    if [ -n "$fps" ] && awk -v f="$fps" 'BEGIN {exit !(f > 0)}'; then
      training_time=$(awk -v b="$batch_size" -v f="$fps" 'BEGIN {printf "%.2f", b * 1000 / f}')
      echo "TrainingTime = ${training_time}"
    fi
    if [ "$MODE" = acc ]; then
      accuracy=$(grep -a "Average Precision" "$train_log" | head -n 1 | awk -F "= " '{print $NF}')
      echo "TrainAccuracy = ${accuracy:-None}"
    fi
    echo "ActualLoss = ${loss:-None}"
    echo "E2ETrainingTime = ${e2e_seconds}"
    if [ "$MODE" = perf ] && [ "$TOPOLOGY" = 1p ]; then
      compile_time=$(grep -ao "step_time = [0-9.eE+-]*" "$train_log" | head -n 2 | awk '{s += $3} END {printf "%.4f", s}')
      echo "CompileTime = ${compile_time}"
    fi
  } >"$summary"
  cat "$summary"
}

mm_main() {
  PYTHON="${PYTHON:-python3}"
  mm_parse_args "$@"
  local here; here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  cd "$here/.." || exit 1   # run from the repo root, whether started from it or from test/
  mm_pick_device
  if [ -z "$nproc_per_node" ]; then
    if [ "$TOPOLOGY" = 1p ]; then nproc_per_node=1; else nproc_per_node=8; fi
  fi
  [[ "$nproc_per_node" =~ ^[1-9][0-9]*$ ]] || mm_die "--nproc_per_node must be a positive integer, got '$nproc_per_node'"
  if [ "$TOPOLOGY" = 1p ] && [ "$nproc_per_node" -ne 1 ]; then
    mm_die "1p scripts run one process; use the 8p script for more"
  fi
  if [ "$TOPOLOGY" != multinodes ] && [ "$nnodes" -ne 1 ]; then
    mm_die "--nnodes=$nnodes: use the multinodes script for more than one node"
  fi
  if [ "$device" = npu ]; then
    set +u   # CANN's set_env.sh reads unset variables
    # shellcheck source=/dev/null
    source "$here/env_npu.sh"
    set -u
  else
    # an installed but unusable torch_npu must not be auto-loaded by `import torch`
    export TORCH_DEVICE_BACKEND_AUTOLOAD="${TORCH_DEVICE_BACKEND_AUTOLOAD:-0}"
  fi
  if [ "$MODE" = perf ]; then export PERF_ONLY=True; else unset PERF_ONLY; fi
  export ASCEND_DEVICE_ID="$device_id" RANK_SIZE=$((nnodes * nproc_per_node))
  output_dir="test/output/${device_id}"
  train_log="$output_dir/train_${device_id}.log"
  rm -rf "$output_dir"   # as the ModelZoo's scripts: each run starts a fresh test/output/<id>
  mkdir -p "$output_dir"
  local start end status=0
  start=$(date +%s)
  mm_run_training || status=$?
  end=$(date +%s)
  if [ "$status" -ne 0 ]; then
    echo "training failed (exit $status); last lines of $train_log:" >&2
    tail -n 25 "$train_log" >&2
    exit "$status"
  fi
  mm_write_summary $((end - start))
}
