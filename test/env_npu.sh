#!/usr/bin/env bash
# Ascend runtime environment, sourced by the launch scripts only when --device=npu (or auto-detected).
# CANN's location comes from the install info file, else /usr/local/Ascend.
install_info=/etc/Ascend/ascend_cann_install.info
if [ -f "$install_info" ]; then
  cann_root=$(grep -E "^Install_Path=" "$install_info" | head -n 1 | cut -d= -f2-)
fi
cann_root=${cann_root:-/usr/local/Ascend}
if [ -f "$cann_root/ascend-toolkit/set_env.sh" ]; then
  # shellcheck source=/dev/null
  source "$cann_root/ascend-toolkit/set_env.sh"
elif [ -f "$cann_root/nnae/set_env.sh" ]; then
  # shellcheck source=/dev/null
  source "$cann_root/nnae/set_env.sh"
else
  echo "env_npu.sh: no CANN set_env.sh under $cann_root (ascend-toolkit/ or nnae/)" >&2
fi
export ASCEND_SLOG_PRINT_TO_STDOUT=0   # device logs to files, not the training log
export ASCEND_GLOBAL_LOG_LEVEL=3       # errors only
export TASK_QUEUE_ENABLE=1             # asynchronous op dispatch
export PTCOPY_ENABLE=1
export COMBINED_ENABLE=1               # fuse non-contiguous copies
export HCCL_WHITELIST_DISABLE=1
