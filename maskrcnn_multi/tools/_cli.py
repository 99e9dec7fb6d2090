"""The contract of every command-line tool: a user error is one line naming the culprit, exit code 2.

A user error is
- a `UserError` (maskrcnn_multi.config.errors; ConfigError, DatasetError, BadImageError,
  CheckpointError and BackendUnavailableError are ones): a bad value, file or record, whose message
  already names the culprit and where it came from;
- an `OSError` about a file the run was pointed at (missing, not a folder, no permission, disk full),
  which names the file;
- a `FloatingPointError`: training diverged (a NaN or infinite loss, named with its iteration);
- a `SystemExit` carrying a message instead of an exit status;
- a command-line mistake found by `ArgumentParser` below (it raises UserError instead of printing the
  usage and exiting).
It is printed as `prog: error: message` on stderr, nothing else, and the exit code is 2. Any other
exception is a bug and keeps its traceback (exit code 1). Ctrl-C (KeyboardInterrupt) prints
`prog: interrupted` and exits with 130, as a shell reports a SIGINT; what was saved before stays as it
was (checkpoints are written atomically). SIGTERM and SIGHUP (`kill`, Slurm's `scancel`, a closed
terminal) end the run the same way: `prog: terminated by SIGTERM`, exit code 128 + the signal's number;
under `--num-gpus N` torchrun's agent stops the ranks first. MASKRCNN_DEBUG=1 shows the traceback of a
user error, and of an interruption, too.
"""
import argparse
import errno
import os
import signal
import sys
import threading
from typing import Callable, NoReturn, Optional, Sequence

from maskrcnn_multi.config.errors import UserError

__all__ = ["ArgumentParser", "DEBUG_ENV", "INTERRUPTED_EXIT", "Terminated", "USER_ERRORS", "is_user_error",
           "prepare_output_dir", "run_main", "user_message"]

DEBUG_ENV = "MASKRCNN_DEBUG"
INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
USER_ERRORS = (UserError, FloatingPointError)
# signals that ask a run to stop (kill, scancel, a closed terminal); SIGINT is KeyboardInterrupt's
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))

# errno values that describe the user's files or machine, not the program
_ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, name) for name in (
        "ENOENT", "EACCES", "EPERM", "ENOSPC", "EDQUOT", "EROFS", "ENOTDIR", "EISDIR", "EEXIST", "ENAMETOOLONG",
        "ELOOP", "EFBIG", "EIO",
    ) if hasattr(errno, name)
)


class Terminated(BaseException):
    """The run was asked to stop by signal ``signum`` (a BaseException, as KeyboardInterrupt is: no
    ``except Exception`` on the way up swallows it)."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


def _raise_terminated(signum, frame) -> None:
    """The stop signals' handler in the process that installed it. A forked child (a DataLoader worker)
    inherits it: there the signal's default action is taken instead, as before."""
    if os.getpid() != _handler_owner[0]:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise Terminated(signum)


_handler_owner = [0]


def _install_stop_handlers() -> dict:
    """Make SIGTERM and SIGHUP raise Terminated in this process; returns the handlers to put back. Left
    alone: a parent's choice (nohup's SIG_IGN), a thread other than the main one (which cannot set
    handlers), and a rank started by torchrun, whose agent stops its ranks by signal and reads their
    exit codes (a rank stopped so ends as the signal's default leaves it)."""
    if threading.current_thread() is not threading.main_thread() or "TORCHELASTIC_RUN_ID" in os.environ:
        return {}
    handlers = {number: signal.getsignal(number) for number in _STOP_SIGNALS}
    _handler_owner[0] = os.getpid()
    for number, handler in handlers.items():
        if handler is signal.SIG_DFL:
            signal.signal(number, _raise_terminated)
    return handlers


def _stop_signal(error: BaseException) -> Optional[int]:
    """The signal number of a Terminated, or of torchrun's SignalException (the in-process agent's answer
    to SIGTERM once it has stopped the ranks); None for anything else. That module is looked up, not
    imported: an exception cannot be its class unless it was loaded."""
    if isinstance(error, Terminated):
        return error.signum
    elastic = sys.modules.get("torch.distributed.elastic.multiprocessing.api")
    if elastic is not None and isinstance(error, elastic.SignalException) and error.sigval != signal.SIGINT:
        return int(error.sigval)
    return None


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose mistakes raise `UserError` (one line through `run_main`, exit code 2)
    instead of printing the usage and exiting; `--help` still prints the help and exits with 0."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see {self.prog} --help)")


def is_user_error(error: BaseException) -> bool:
    """True when `error` is the user's (see the module docstring), not a bug."""
    if isinstance(error, USER_ERRORS):
        return True
    if isinstance(error, SystemExit):
        return isinstance(error.code, str)
    return isinstance(error, OSError) and error.errno in _ENVIRONMENT_ERRNOS and error.filename is not None


def user_message(error: BaseException) -> str:
    """The error's message on one line. An error re-raised by a DataLoader worker carries the worker's
    traceback in its message: only its last line, the original message, is kept."""
    if isinstance(error, SystemExit):
        text = str(error.code)
    else:
        text = str(error)
    if "Original Traceback" in text:
        lines = [line for line in text.splitlines() if line.strip()]
        last = lines[-1] if lines else text
        name = type(error).__name__
        for prefix in (f"{type(error).__module__}.{name}: ", f"{name}: "):
            if prefix in last:
                last = last.split(prefix, 1)[1]
                break
        text = last
    return " ".join(text.split()) or type(error).__name__


def prepare_output_dir(path: str, what: str) -> str:
    """Create folder `path` (with its parents) for `what` (e.g. "OUTPUT_DIR"); a path that exists
    and is not a folder, or that cannot be created, is a UserError naming it. Returns `path`."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{what} '{path}' is a file, not a folder: choose a folder (nothing was written)")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise UserError(f"{what} '{path}' cannot be created: {error.strerror or error}") from error
    return path


def _prog_name(prog: Optional[str]) -> str:
    if prog:
        return prog
    if sys.argv and sys.argv[0]:
        name = os.path.basename(sys.argv[0])
        return name[:-3] if name.endswith(".py") else name
    return "maskrcnn_multi"


def run_main(main: Callable[[Optional[Sequence[str]]], object], argv: Optional[Sequence[str]] = None,
             prog: Optional[str] = None) -> int:
    """Run a tool's `main(argv)` under the contract above; returns the exit code."""
    debug = os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")
    handlers = _install_stop_handlers()
    try:
        status = main(argv)
        return status if isinstance(status, int) else 0  # train_net returns its results
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{_prog_name(prog)}: interrupted", file=sys.stderr)
        sys.stderr.flush()
        return INTERRUPTED_EXIT
    except BaseException as error:
        signum = _stop_signal(error)
        if signum is not None and not debug:
            print(f"{_prog_name(prog)}: terminated by {signal.Signals(signum).name}", file=sys.stderr)
            sys.stderr.flush()
            return 128 + signum
        if signum is not None or not isinstance(error, (Exception, SystemExit)) or not is_user_error(error):
            raise
        if debug:
            raise
        print(f"{_prog_name(prog)}: error: {user_message(error)} ({DEBUG_ENV}=1 shows the traceback)",
              file=sys.stderr)
        sys.stderr.flush()
        return 2
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
