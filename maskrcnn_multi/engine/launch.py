"""Distributed start-up and the few collectives the engine needs.

We ship no process launcher of our own: torchrun (``python -m torch.distributed.run``) starts one
process per device and sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT;
``init_distributed`` reads them. When ``train_net --num-gpus N`` (N > 1, or several machines) is run
outside torchrun, ``launch`` logs the equivalent torchrun line and runs torchrun's elastic agent on
the same command, in this process (``engine.torchrun_agent``), which is what detectron2's ``launch`` did
with ``mp.spawn`` but with torchrun's error handling. The sizes and --dist-url are checked before
anything starts; ``MASKRCNN_DIST_TIMEOUT`` bounds the rendezvous between machines as well as the
wait for the ranks; ranks that stop on a user error end the launch with one line and exit code 2.
"""
import atexit
import datetime
import logging
import math
import os
import shlex
import socket
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist

from ..config.errors import UserError
from .torchrun_agent import run_torchrun, wait_for_master

__all__ = [
    "launch",
    "check_launch_sizes",
    "init_distributed",
    "torchrun_command",
    "parse_dist_url",
    "under_torchrun",
    "get_world_size",
    "get_rank",
    "get_local_rank",
    "is_main_process",
    "synchronize",
    "reduce_mean",
    "all_gather_object",
    "DEFAULT_TIMEOUT_S",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 300
TIMEOUT_ENV = "MASKRCNN_DIST_TIMEOUT"  # seconds to wait for every rank at init and in collectives


# --------------------------------------------------------------------------- collectives
def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if get_world_size() > 1 else 0


def is_main_process() -> bool:
    return get_rank() == 0


def synchronize() -> None:
    """A barrier across ranks (no-op in a single process)."""
    if get_world_size() > 1:
        dist.barrier()


def reduce_mean(values: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Each scalar tensor averaged over ranks (one all_reduce), returned as Python floats."""
    names = sorted(values)
    if not names:
        return {}
    stacked = torch.stack([values[name].detach().float() for name in names])
    if get_world_size() > 1:
        dist.all_reduce(stacked)
        stacked /= get_world_size()
    return dict(zip(names, stacked.tolist()))


def all_gather_object(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if get_world_size() == 1:
        return [obj]
    gathered = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


# --------------------------------------------------------------------------- start-up
def under_torchrun(environ=os.environ) -> bool:
    """True when this process was started by torchrun (or anything setting RANK and WORLD_SIZE)."""
    return "RANK" in environ and "WORLD_SIZE" in environ


def parse_dist_url(dist_url: str) -> Tuple[str, int]:
    """``tcp://host:port`` -> (host, port); ``auto`` -> (127.0.0.1, a free local port). Anything else
    (another scheme, no host, a port that is not 1..65535) is a UserError naming --dist-url."""
    if dist_url == "auto":
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            return "127.0.0.1", probe.getsockname()[1]
    if not dist_url.startswith("tcp://") or ":" not in dist_url[len("tcp://"):]:
        raise UserError(f"--dist-url '{dist_url}' is not 'auto' or tcp://HOST:PORT")
    host, _, port = dist_url[len("tcp://"):].rpartition(":")
    if not host:
        raise UserError(f"--dist-url '{dist_url}' has no host (tcp://HOST:PORT)")
    if not port.isdigit():
        raise UserError(f"--dist-url '{dist_url}': port '{port}' is not a number")
    if not 1 <= int(port) <= 65535:
        raise UserError(f"--dist-url '{dist_url}': port {int(port)} is not in 1..65535")
    return host, int(port)


def torchrun_command(
    script_args: Sequence[str],
    num_gpus_per_machine: int,
    num_machines: int,
    machine_rank: int,
    master_addr: str,
    master_port: int,
    module: str = "maskrcnn_multi.tools.train_net",
    rdzv_timeout_s: Optional[int] = None,
) -> List[str]:
    """argv running ``python -m <module> <script_args>`` under torchrun with these sizes;
    ``rdzv_timeout_s`` bounds the static rendezvous (torchrun's default: 600 s)."""
    rendezvous = [f"--rdzv-conf=timeout={rdzv_timeout_s}"] if rdzv_timeout_s is not None else []
    return [
        sys.executable, "-m", "torch.distributed.run",
        f"--nproc_per_node={num_gpus_per_machine}", f"--nnodes={num_machines}",
        f"--node_rank={machine_rank}", f"--master_addr={master_addr}", f"--master_port={master_port}",
        *rendezvous, "-m", module, *script_args,
    ]


def _timeout() -> datetime.timedelta:
    raw = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(raw)
    except ValueError:
        raise UserError(f"{TIMEOUT_ENV}='{raw}' is not a number of seconds") from None
    if not 0 < seconds < 10 ** 7:  # NaN and infinity too
        raise UserError(f"{TIMEOUT_ENV}='{raw}' must be a positive number of seconds (below 10000000)")
    return datetime.timedelta(seconds=seconds)


def _env_int(name: str) -> int:
    raw = os.environ.get(name, "")
    if not raw.isdigit():
        raise RuntimeError(f"environment variable {name}='{raw}' must be a non-negative integer (set by torchrun)")
    return int(raw)


def _store_prefix() -> str:
    """Keys of this attempt: torchrun's restart count keeps an elastic restart off the last one's keys."""
    return f"maskrcnn_multi/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"


def _wait_for_ranks(store, rank: int, world_size: int, timeout: datetime.timedelta, where: str) -> None:
    """Every rank checks in at the store; on timeout the error names the ranks that never came."""
    prefix = f"{_store_prefix()}/alive"
    store.set(f"{prefix}/{rank}", "1")
    keys = [f"{prefix}/{r}" for r in range(world_size)]
    try:
        store.wait(keys, timeout)
    except Exception:
        missing = [str(r) for r, key in enumerate(keys) if not store.check([key])]
        raise RuntimeError(
            f"distributed init at {where}: rank(s) {', '.join(missing) or '?'} of world size {world_size} "
            f"did not start within {timeout.total_seconds():.0f}s (set {TIMEOUT_ENV} to wait longer)"
        ) from None


def init_distributed(dist_backend: str) -> bool:
    """Join the process group described by torchrun's environment; False when not distributed.

    ``dist_backend`` is the backend's process-group transport (gloo / nccl / hccl). The wait for the
    other ranks is bounded by ``MASKRCNN_DIST_TIMEOUT`` seconds (default 300), and a rank that never
    arrives is named in the error.
    """
    if not under_torchrun() or dist.is_initialized():
        return dist.is_initialized()
    rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
    if world_size <= 1:
        return False
    host, port = os.environ.get("MASTER_ADDR", "127.0.0.1"), _env_int("MASTER_PORT")
    timeout = _timeout()
    # torchrun's agent already serves a store at MASTER_PORT; only without it does rank 0 host one.
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    try:
        store = dist.TCPStore(
            host, port, world_size, is_master=(rank == 0 and not agent_store),
            timeout=timeout, wait_for_workers=False,
        )
    except Exception as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise RuntimeError(
            f"rank {rank}: cannot reach the rendezvous store at {host}:{port} hosted by rank 0 "
            f"(is rank 0 running there?): {reason}"
        ) from None
    _wait_for_ranks(store, rank, world_size, timeout, f"{host}:{port}")
    dist.init_process_group(
        backend=dist_backend, store=dist.PrefixStore(f"{_store_prefix()}/pg", store),
        rank=rank, world_size=world_size, timeout=timeout,
    )
    logger.info("rank %d of %d joined the %s process group at %s:%d", rank, world_size, dist_backend, host, port)
    # Left to interpreter exit, gloo's worker threads are destroyed while running and the process
    # aborts ("terminate called without an active exception", exit -6) after a successful run.
    atexit.register(_destroy_process_group)
    return True


def _destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_launch_sizes(num_gpus_per_machine: int, num_machines: int, machine_rank: int) -> None:
    """--num-gpus and --num-machines at least 1, --machine-rank in 0 .. num_machines - 1."""
    if num_gpus_per_machine < 1:
        raise UserError(f"--num-gpus {num_gpus_per_machine}: the number of processes per machine must be at least 1")
    if num_machines < 1:
        raise UserError(f"--num-machines {num_machines}: the number of machines must be at least 1")
    if not 0 <= machine_rank < num_machines:
        raise UserError(f"--machine-rank {machine_rank}: machine rank must be in 0..{num_machines - 1} "
                        f"(--num-machines {num_machines})")


def launch(
    main_func: Callable,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = None,
    script_args: Optional[Sequence[str]] = None,
    args: tuple = (),
    module: str = "maskrcnn_multi.tools.train_net",
):
    """Run ``main_func(*args)`` here, or, when the command asks for more than one process and torchrun
    did not start it, run ``python -m <module> <script_args>`` under torchrun's agent (``script_args``
    default to ``sys.argv[1:]``) and return None once every rank has finished. The sizes, --dist-url
    and MASKRCNN_DIST_TIMEOUT are checked first (UserError); see ``engine.torchrun_agent`` for what a
    failed rank or rendezvous raises."""
    check_launch_sizes(num_gpus_per_machine, num_machines, machine_rank)
    if dist_url not in (None, "auto"):
        parse_dist_url(dist_url)  # a bad URL is refused even where one process ignores it
    world_size = num_gpus_per_machine * num_machines
    if world_size <= 1 or under_torchrun():
        return main_func(*args)
    if num_machines > 1 and (dist_url in (None, "auto")):
        raise UserError("--num-machines > 1 needs --dist-url tcp://HOST:PORT (or --master-addr/--master-port)")
    host, port = parse_dist_url(dist_url or "auto")
    timeout_s = max(1, math.ceil(_timeout().total_seconds()))
    command = torchrun_command(
        list(sys.argv[1:] if script_args is None else script_args),
        num_gpus_per_machine, num_machines, machine_rank, host, port, module=module, rdzv_timeout_s=timeout_s,
    )
    logger.info("starting %d processes under torchrun: %s", num_gpus_per_machine, shlex.join(command))
    if machine_rank > 0:
        wait_for_master(host, port, timeout_s, machine_rank, TIMEOUT_ENV)
    sys.stdout.flush()
    sys.stderr.flush()
    run_torchrun(command[3:], host, port, machine_rank, num_machines, world_size, timeout_s, TIMEOUT_ENV)
    return None
