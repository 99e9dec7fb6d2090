#!/usr/bin/env bash
# Shared body of the ModelZoo launch scripts (test/train_*.sh). A script sets:
#   NETWORK, CONFIG_FILE, MODE (perf|acc), TOPOLOGY (1p|8p|multinodes), DEFAULT_BATCH (images per iteration
#   without --batch_size), DEFAULT_STEPS (a run's length without --train_steps: a perf run's iterations,
#   whatever the batch; an acc run's iterations at DEFAULT_BATCH, scaled to the batch), BASE_BATCH and
#   BASE_LR (the LR per BASE_BATCH images, scaled linearly to the batch), NUM_WORKERS
# then sources this file and calls `mm_main "$@"`.
# Arguments are the ModelZoo's `--name=value` set plus ours (--device, --nproc_per_node, --dry_run); anything
# after a bare `--` is passed to train_net as extra `KEY VALUE` config pairs (they win over ours).
# Order of a run: every argument, the data layout and the config pairs (tools/schedule.py merges them and
# checks the device) are checked first; a user error is one line on stderr and exit code 2, with nothing
# written. Only then is an earlier test/output/<id> kept aside as test/output/<id>.<its last-modified
# time, YYYYmmdd-HHMMSS> (never deleted) and the run written to a fresh test/output/<id>.
# Environment read: PYTHON (default python3), MASKRCNN_DIST_TIMEOUT (seconds to wait for the other ranks /
# nodes, default 300).
set -u

mm_usage() {
  cat <<USAGE
usage: bash $0 --data_path=/path/to/coco [--batch_size=N] [--train_steps=N] [--device_id=N]
       [--nnodes=N --node_rank=R --local_addr=IP --master_addr=IP --master_port=P]
       [--hf32 | --fp32] [--device=npu|cuda|cpu] [--nproc_per_node=N] [--dry_run] [-- KEY VALUE ...]
--data_path must be a COCO 2017 layout: annotations/instances_{train,val}2017.json, train2017/, val2017/
defaults: --batch_size=$DEFAULT_BATCH, --train_steps=$DEFAULT_STEPS$([ "$MODE" = acc ] && echo " at batch $DEFAULT_BATCH (scaled to the batch)")
--dry_run checks everything and prints the training command without running or writing anything
USAGE
}

# A user error: one line naming the culprit, exit code 2.
mm_user_error() { echo "$(basename "$0"): error: $*" >&2; exit 2; }
mm_die() { mm_user_error "$* (--help shows the usage)"; }

mm_set_precision() {
  if [ "$precision_mode" != amp ] && [ "$precision_mode" != "$1" ]; then
    mm_die "--hf32 and --fp32 exclude each other: give one of them"
  fi
  precision_mode=$1
}

mm_parse_args() {
  data_path=""; data_path_given=0; batch_size="$DEFAULT_BATCH"; batch_given=0; train_steps=""; steps_given=0
  device_id=0; nnodes=1; node_rank=0; local_addr=127.0.0.1; master_addr=127.0.0.1; master_port=23333
  precision_mode=amp; device=""; nproc_per_node=""; dry_run=0; extra_opts=()
  local arg
  while [ $# -gt 0 ]; do
    arg=$1
    case "$arg" in
      --data_path=*) data_path="${arg#*=}"; data_path_given=1 ;;
      --batch_size=*) batch_size="${arg#*=}"; batch_given=1 ;;
      --train_steps=*) train_steps="${arg#*=}"; steps_given=1 ;;
      --device_id=*) device_id="${arg#*=}" ;;
      --nnodes=*) nnodes="${arg#*=}" ;;
      --node_rank=*) node_rank="${arg#*=}" ;;
      --local_addr=*) local_addr="${arg#*=}" ;;
      --master_addr=*) master_addr="${arg#*=}" ;;
      --master_port=*) master_port="${arg#*=}" ;;
      --hf32) mm_set_precision hf32 ;;
      --fp32) mm_set_precision fp32 ;;
      --device=*) device="${arg#*=}" ;;
      --nproc_per_node=*) nproc_per_node="${arg#*=}" ;;
      --dry_run) dry_run=1 ;;
      --data_path|--batch_size|--train_steps|--device_id|--nnodes|--node_rank|--local_addr|--master_addr|--master_port|--device|--nproc_per_node)
        mm_die "$arg takes its value after '=': $arg=VALUE" ;;
      --) shift; extra_opts=("$@"); break ;;
      -h|--help) mm_usage; exit 0 ;;
      *) mm_die "unknown argument '$arg'" ;;
    esac
    shift
  done
}

# mm_check_int NAME MIN [MAX]: the option --NAME holds a decimal integer in [MIN, MAX]; rewritten without
# leading zeros (bash arithmetic would read "08" as octal).
mm_check_int() {
  local name=$1 min=$2 max=${3:-} value=${!1} expected
  if [ -n "$max" ]; then expected="an integer from $min to $max"
  elif [ "$min" -eq 0 ]; then expected="a non-negative integer"; max=999999999
  else expected="a positive integer"; max=999999999
  fi
  if ! [[ "$value" =~ ^[0-9]{1,9}$ ]] || [ $((10#$value)) -lt "$min" ] || [ $((10#$value)) -gt "$max" ]; then
    mm_die "--$name must be $expected, got '$value'"
  fi
  printf -v "$name" '%d' "$((10#$value))"
}

mm_check_address() {
  [[ "${!1}" =~ ^[][A-Za-z0-9._:%-]+$ ]] || mm_die "--$1 must be a host name or an IP address, got '${!1}'"
}

mm_check_args() {
  mm_check_int batch_size 1
  [ "$steps_given" -eq 0 ] || mm_check_int train_steps 1
  mm_check_int device_id 0
  mm_check_int nnodes 1
  mm_check_int node_rank 0
  mm_check_int master_port 1 65535
  mm_check_address local_addr
  mm_check_address master_addr
  [ "$node_rank" -lt "$nnodes" ] || mm_die "--node_rank=$node_rank must be below --nnodes=$nnodes"
  case "$device" in ""|npu|cuda|cpu) ;; *) mm_die "unknown --device '$device' (choose from: npu, cuda, cpu)" ;; esac
  if [ -z "$nproc_per_node" ]; then
    if [ "$TOPOLOGY" = 1p ]; then nproc_per_node=1; else nproc_per_node=8; fi
  fi
  mm_check_int nproc_per_node 1
  if [ "$TOPOLOGY" = 1p ] && [ "$nproc_per_node" -ne 1 ]; then
    mm_die "--nproc_per_node=$nproc_per_node: 1p scripts run one process; use the 8p script for more"
  fi
  if [ "$TOPOLOGY" != multinodes ] && [ "$nnodes" -ne 1 ]; then
    mm_die "--nnodes=$nnodes: use the multinodes script for more than one node"
  fi
  world_size=$((nnodes * nproc_per_node))
  [ $((batch_size % world_size)) -eq 0 ] \
    || mm_die "--batch_size=$batch_size does not split evenly over $world_size processes (--nnodes x --nproc_per_node)"
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

# --data_path must be a readable COCO 2017 layout; made absolute (the run starts from the repo root).
mm_check_data_path() {
  [ "$data_path_given" -eq 1 ] || mm_die "--data_path is required (a COCO 2017 layout)"
  [ -n "$data_path" ] || mm_die "--data_path is empty"
  [ -e "$data_path" ] || mm_die "--data_path=$data_path does not exist"
  [ -d "$data_path" ] || mm_die "--data_path=$data_path is not a folder"
  local f first
  for f in annotations/instances_train2017.json annotations/instances_val2017.json train2017 val2017; do
    [ -e "$data_path/$f" ] || mm_die "--data_path=$data_path is not a COCO 2017 layout: $data_path/$f is missing"
  done
  for f in annotations/instances_train2017.json annotations/instances_val2017.json; do
    [ -f "$data_path/$f" ] && [ -r "$data_path/$f" ] || mm_die "--data_path=$data_path: $data_path/$f is not a readable file"
    first=$(LC_ALL=C head -c 256 "$data_path/$f" | LC_ALL=C tr -d ' \t\r\n' | LC_ALL=C head -c 1)
    [ "$first" = "{" ] || mm_die "--data_path=$data_path: $data_path/$f is not a COCO JSON file (it does not start with '{')"
  done
  for f in train2017 val2017; do
    [ -d "$data_path/$f" ] && [ -r "$data_path/$f" ] && [ -x "$data_path/$f" ] \
      || mm_die "--data_path=$data_path: $data_path/$f is not a readable folder"
    [ -n "$(find "$data_path/$f" -mindepth 1 -maxdepth 1 -print -quit 2>/dev/null)" ] \
      || mm_die "--data_path=$data_path: $data_path/$f holds no images"
  done
  data_path="$(cd "$data_path" && pwd)"
}

# --device, else npu if torch_npu imports and sees a device, else cuda if available, else cpu.
mm_pick_device() {
  [ -n "$device" ] && return
  if "$PYTHON" -c 'import torch, torch_npu; raise SystemExit(0 if torch.npu.is_available() else 1)' >/dev/null 2>&1; then
    device=npu
  elif TORCH_DEVICE_BACKEND_AUTOLOAD=0 "$PYTHON" -c 'import torch; raise SystemExit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    device=cuda
  else
    device=cpu
  fi
}

# The pairs train_net gets besides the schedule: AMP or not, the device, the ModelZoo's fixed pairs.
mm_fixed_pairs() {
  case "$precision_mode" in
    amp) precision=(AMP 1 OPT_LEVEL O2 LOSS_SCALE_VALUE 64) ;;
    hf32) export ALLOW_HF32=True; precision=(AMP 0 OPT_LEVEL O0 FLOAT32_PRECISION high) ;;
    fp32) export ALLOW_FP32=True; precision=(AMP 0 OPT_LEVEL O0 FLOAT32_PRECISION highest) ;;
  esac
  model_device="$device"
  if [ "$world_size" -eq 1 ] && [ "$device" != cpu ]; then model_device="$device:$device_id"; fi
  modelzoo_pairs=(SEED 1234 MODEL.RPN.NMS_THRESH 0.8 MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO 2
      MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO 2 DATALOADER.NUM_WORKERS "$NUM_WORKERS")
}

# tools/schedule.py: merges every pair onto the config (a bad key or value is named here), checks the
# device and prints the SOLVER.* pairs (LR scaled with the batch, the run's length) into `schedule`.
mm_plan_schedule() {
  local -a args=(--config-file "$CONFIG_FILE" --mode "$MODE" --batch-size "$batch_size"
      --default-steps "$DEFAULT_STEPS" --default-batch "$DEFAULT_BATCH" --reference-batch "$BASE_BATCH"
      --reference-lr "$BASE_LR" --check-device)
  [ "$steps_given" -eq 0 ] || args+=(--train-steps "$train_steps")
  local errors plan status=0 message
  errors=$(mktemp) || mm_user_error "cannot create a temporary file (is TMPDIR writable?)"
  plan=$("$PYTHON" -m maskrcnn_multi.tools.schedule "${args[@]}" "${precision[@]}" MODEL.DEVICE "$model_device" \
      "${modelzoo_pairs[@]}" OUTPUT_DIR "$output_dir/train_dir" "${extra_opts[@]}" 2>"$errors") || status=$?
  if [ "$status" -eq 2 ]; then
    message=$(grep -a -v '^[[:space:]]*$' "$errors" | tail -n 1)
    rm -f "$errors"
    mm_user_error "${message#*: error: }"
  fi
  cat "$errors" >&2   # warnings on success, the traceback of an internal error
  rm -f "$errors"
  [ "$status" -eq 0 ] || { echo "$(basename "$0"): cannot plan the run: maskrcnn_multi.tools.schedule failed (exit $status)" >&2; exit "$status"; }
  read -r -a schedule <<<"$plan"
}

mm_schedule_value() {
  local i
  for ((i = 0; i + 1 < ${#schedule[@]}; i += 2)); do
    [ "${schedule[i]}" = "$1" ] && { echo "${schedule[i + 1]}"; return; }
  done
}

# The training command (run_cmd) and, for more than one process, its torchrun launcher (launcher).
mm_build_command() {
  run_cmd=(-m maskrcnn_multi.tools.train_net --config-file "$CONFIG_FILE" --data_path "$data_path"
      "${precision[@]}" MODEL.DEVICE "$model_device" "${schedule[@]}" "${modelzoo_pairs[@]}"
      OUTPUT_DIR "$output_dir/train_dir" "${extra_opts[@]}")
  launcher=()
  if [ "$world_size" -gt 1 ]; then
    # the static rendezvous waits this long for the other nodes (torchrun's default: 600 s)
    launcher=(-m torch.distributed.run --nnodes "$nnodes" --node_rank "$node_rank"
        --nproc_per_node "$nproc_per_node" --master_addr "$master_addr" --master_port "$master_port"
        --rdzv_conf "timeout=${MASKRCNN_DIST_TIMEOUT:-300}")
  fi
}

# An earlier run's test/output/<id> is renamed to test/output/<id>.<its mtime>, never deleted; the run
# gets a fresh test/output/<id>. Sets kept_output ("" when there was nothing to keep).
mm_prepare_output() {
  kept_output=""
  if [ -L "$output_dir" ] || { [ -e "$output_dir" ] && ! { [ -d "$output_dir" ] && [ -z "$(ls -A "$output_dir")" ]; }; }; then
    local stamp n=1
    stamp=$(date -r "$output_dir" +%Y%m%d-%H%M%S 2>/dev/null || date +%Y%m%d-%H%M%S)
    kept_output="$output_dir.$stamp"
    while [ -e "$kept_output" ] || [ -L "$kept_output" ]; do n=$((n + 1)); kept_output="$output_dir.$stamp-$n"; done
    mv -T -- "$output_dir" "$kept_output" \
      || mm_user_error "cannot keep the earlier output $output_dir aside as $kept_output (is test/output writable?)"
  fi
  mkdir -p -- "$output_dir" || mm_user_error "cannot create $output_dir (is test/ writable?)"
  : >"$run_log" || mm_user_error "cannot write $run_log"
}

mm_log_command() { printf '%q ' "$@" >>"$run_log"; echo >>"$run_log"; }

# Runs run_cmd (train_net or test_net; under torchrun when more than one process) into $run_log; returns its
# exit status.
mm_run_training() {
  if [ "$world_size" -eq 1 ]; then
    mm_log_command "$PYTHON" "${run_cmd[@]}"
    "$PYTHON" "${run_cmd[@]}" >>"$run_log" 2>&1
  else
    if [ "$TOPOLOGY" = multinodes ]; then export HCCL_IF_IP="$local_addr"; fi
    mm_log_command "$PYTHON" "${launcher[@]}" "${run_cmd[@]}"
    "$PYTHON" "${launcher[@]}" "${run_cmd[@]}" >>"$run_log" 2>&1
  fi
}

# True when torchrun's failure report names a rank that exited with 2 (train_net's user error) as the
# root cause (the first failure; the other ranks are then stopped by torchrun).
mm_root_cause_is_user_error() {
  local code
  code=$(sed -n '/Root Cause/,$p' "$run_log" | grep -a -m 1 -E '^[[:space:]]*exitcode[[:space:]]*:' \
      | sed -E 's/^[^:]*:[[:space:]]*([^ ]+).*/\1/')
  [ "$code" = 2 ]
}

# A failed run: train_net's own user error (exit 2; under torchrun, the root cause's) as one line,
# else (a crash, a killed rank, a rendezvous timeout) the log's tail.
mm_report_failure() {
  local status=$1 message
  if { [ "$world_size" -eq 1 ] && [ "$status" -eq 2 ]; } || { [ "$world_size" -gt 1 ] && mm_root_cause_is_user_error; }; then
    message=$(grep -a -E '^[^ ]+: error: ' "$run_log" | tail -n 1)
    [ -n "$message" ] || message=$(grep -a -v '^[[:space:]]*$' "$run_log" | tail -n 1)
    mm_user_error "${message#*: error: } (log: $run_log)"
  fi
  echo "${RUN_WHAT:-training} failed (exit $status); last lines of $run_log:" >&2
  tail -n 25 "$run_log" >&2
  exit "$status"
}

# Reads the training log and writes test/output/<id>/<CaseName>.log (key = value lines).
mm_write_summary() {
  local e2e_seconds=$1
  local fps compile_time loss accuracy training_time case_name summary
  fps=$(grep -ao "FPS = [0-9.eE+-]*" "$run_log" | awk '{s += $3; n++} END {if (n) printf "%.3f", s / n}')
  loss=$(grep -ao "total_loss: [0-9.eE+-]*" "$run_log" | tail -n 1 | awk '{print $2}')
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
      accuracy=$(grep -a "Average Precision" "$run_log" | head -n 1 | awk -F "= " '{print $NF}')
      echo "TrainAccuracy = ${accuracy:-None}"
    fi
    echo "ActualLoss = ${loss:-None}"
    echo "E2ETrainingTime = ${e2e_seconds}"
    if [ "$MODE" = perf ] && [ "$TOPOLOGY" = 1p ]; then
      compile_time=$(grep -ao "step_time = [0-9.eE+-]*" "$run_log" | head -n 2 | awk '{s += $3} END {printf "%.4f", s}')
      echo "CompileTime = ${compile_time}"
    fi
  } >"$summary"
  cat "$summary"
}

mm_main() {
  PYTHON="${PYTHON:-python3}"
  mm_parse_args "$@"
  mm_check_args
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
    # an installed but unusable torch_npu must not be auto-loaded by `import torch`
    export TORCH_DEVICE_BACKEND_AUTOLOAD="${TORCH_DEVICE_BACKEND_AUTOLOAD:-0}"
  fi
  output_dir="test/output/${device_id}"
  run_log="$output_dir/train_${device_id}.log"
  local -a precision modelzoo_pairs schedule run_cmd launcher
  local model_device kept_output
  mm_fixed_pairs
  mm_plan_schedule
  mm_build_command
  local steps; steps=$(mm_schedule_value SOLVER.MAX_ITER)
  local plan="world size $world_size ($nnodes node(s) x $nproc_per_node), device $device, batch $batch_size"
  [ "$batch_given" -eq 1 ] || plan+=" (default)"
  plan+=", $steps iterations"
  [ "$steps_given" -eq 1 ] || plan+=" (default)"
  if [ "$dry_run" -eq 1 ]; then
    echo "$plan"
    echo "dry run, nothing written; the run would be:"
    printf '%q ' "$PYTHON" "${launcher[@]}" "${run_cmd[@]}"; echo
    exit 0
  fi
  if [ "$MODE" = perf ]; then export PERF_ONLY=True; else unset PERF_ONLY; fi
  export ASCEND_DEVICE_ID="$device_id" RANK_SIZE="$world_size"
  mm_prepare_output
  [ -z "$kept_output" ] || echo "the earlier run's output is kept as $kept_output" | tee -a "$run_log"
  echo "$plan" | tee -a "$run_log"
  local start end status=0
  start=$(date +%s)
  mm_run_training || status=$?
  end=$(date +%s)
  [ "$status" -eq 0 ] || mm_report_failure "$status"
  mm_write_summary $((end - start))
}
