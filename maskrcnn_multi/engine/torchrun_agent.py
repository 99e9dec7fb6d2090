"""Running torchrun's elastic agent in this process, and reading how its ranks ended.

``launch`` (engine/launch.py) hands torchrun's argv here instead of ``os.execv``-ing torchrun, so that
what comes back can be told apart:
- every failed rank exited with code 2 (a user error, whose one line the rank printed itself), the
  others being stopped by the agent: `RanksFailedError`, a UserError (one line, exit code 2) naming the
  ranks, in place of torchrun's ChildFailedError block;
- every failed rank was interrupted (exit code 130), or the agent got SIGINT: KeyboardInterrupt;
- any other rank failure: torchrun's ChildFailedError with its report (a bug keeps its traceback);
- the rendezvous between machines failed (no master, a machine that never joined, a port in use):
  a UserError naming the master's address and the timeout.
A machine other than 0 first waits, bounded, for the master to listen (`wait_for_master`): a TCP store
client that cannot connect floods stderr with C++ stack traces before it gives up.
"""
import signal
import socket
import time
from typing import Dict, Sequence

import torch.distributed as dist

from ..config.errors import UserError

__all__ = ["RanksFailedError", "run_torchrun", "wait_for_master", "USER_ERROR_EXIT", "INTERRUPTED_EXIT"]

USER_ERROR_EXIT = 2  # tools/_cli.py run_main's code for a user error
INTERRUPTED_EXIT = 130  # run_main's code for Ctrl-C (128 + SIGINT)
# how the agent stops the ranks still running once one has failed
_STOPPED_BY_AGENT = frozenset({-signal.SIGTERM, -signal.SIGKILL})
# the agent installs handlers for these; they are put back when it returns
_AGENT_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, name))


class RanksFailedError(UserError):
    """Ranks stopped on a user error; each printed its own one-line message."""


def wait_for_master(host: str, port: int, timeout_s: int, machine_rank: int, timeout_env: str) -> None:
    """Return once something listens at host:port; after ``timeout_s`` seconds a UserError names the
    master's address and the timeout (``timeout_env`` is the variable that sets it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(2.0, remaining))):
                return
        except socket.gaierror as error:
            raise UserError(f"--dist-url host '{host}' cannot be resolved: {error.strerror or error}") from None
        except OSError:
            if time.monotonic() >= deadline:
                raise UserError(
                    f"machine {machine_rank}: no master answered at {host}:{port} (--dist-url) within "
                    f"{timeout_s}s ({timeout_env}): start machine 0 (--machine-rank 0) first, or check the address"
                ) from None
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def _classify(exit_codes: Dict[int, int]) -> str:
    """'user' when the failed ranks exited with code 2 (the rest stopped by the agent), 'interrupted'
    when they were interrupted, else 'bug'."""
    user = [rank for rank, code in exit_codes.items() if code == USER_ERROR_EXIT]
    interrupted = [rank for rank, code in exit_codes.items() if code in (INTERRUPTED_EXIT, -signal.SIGINT)]
    stopped = [rank for rank, code in exit_codes.items() if code in _STOPPED_BY_AGENT]
    if user and len(user) + len(stopped) == len(exit_codes):
        return "user"
    if interrupted and len(interrupted) + len(stopped) == len(exit_codes):
        return "interrupted"
    return "bug"


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def run_torchrun(torchrun_args: Sequence[str], host: str, port: int, machine_rank: int, num_machines: int,
                 world_size: int, timeout_s: int, timeout_env: str) -> None:
    """Run ``python -m torch.distributed.run <torchrun_args>`` here; see the module docstring for how
    a failure is reported."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    handlers = {number: signal.getsignal(number) for number in _AGENT_SIGNALS}
    try:
        torchrun.run(torchrun.parse_args(list(torchrun_args)))
    except ChildFailedError as error:
        exit_codes = {rank: failure.exitcode for rank, failure in error.failures.items()}
        kind = _classify(exit_codes)
        if kind == "user":
            failed = sorted(rank for rank, code in exit_codes.items() if code == USER_ERROR_EXIT)
            raise RanksFailedError(
                f"rank(s) {', '.join(map(str, failed))} of {world_size} stopped on the error printed above"
            ) from None
        if kind == "interrupted":
            raise KeyboardInterrupt from None
        raise
    except SignalException as error:
        if error.sigval == signal.SIGINT:
            raise KeyboardInterrupt from None
        raise
    except dist.DistError as error:
        raise UserError(
            f"machine {machine_rank} of {num_machines}: rendezvous with the master at {host}:{port} (--dist-url) "
            f"failed within {timeout_s}s ({timeout_env}): {_first_line(error)}"
        ) from None
    finally:
        for number, handler in handlers.items():
            if handler is not None:
                signal.signal(number, handler)
