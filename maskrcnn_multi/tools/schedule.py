"""Plan a training schedule for a batch size: the `SOLVER.*` pairs the launch scripts pass to train_net.

The Ascend ModelZoo's rule, which every launch script follows: the LR is `reference_lr` per
`reference_batch` images (0.0025 per 8, so 0.02 at 64) scaled linearly with the batch, and the warm-up
is the config's `SOLVER.WARMUP_ITERS` (cut to the run's length).

- Performance runs (`--mode perf`) train `--train-steps` iterations, or, without it, `--default-steps`
  (the script's fixed length, whatever the batch), without LR decay.
- Accuracy runs (`--mode acc`) train `--train-steps` iterations, or, without it, `--default-steps`
  at `--default-batch` scaled to the batch (same number of images), and decay the LR at the same
  fractions of the run as the config's `SOLVER.STEPS` are of its `SOLVER.MAX_ITER`.

Trailing `KEY VALUE` pairs (the ones train_net will get besides the schedule) are merged onto the config
first, so a bad key or value is reported here, before a launch script touches anything; with
`--check-device` the merged `MODEL.DEVICE` must also be usable on this machine.

    python -m maskrcnn_multi.tools.schedule --config-file CFG --mode acc --batch-size 64 \\
        --default-steps 10250 --default-batch 64 [--check-device] [KEY VALUE ...]
    -> SOLVER.IMS_PER_BATCH 64 SOLVER.BASE_LR 0.02 SOLVER.MAX_ITER 10250 SOLVER.STEPS (7972,9491) ...

A user error (bad argument, key or value, unusable device) is one line on stderr and exit code 2.
"""
import argparse
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

from maskrcnn_multi.tools._cli import run_main


@dataclass(frozen=True)
class Schedule:
    ims_per_batch: int
    base_lr: float
    max_iter: int
    steps: tuple
    warmup_iters: int

    def as_opts(self) -> list:
        steps = "(" + ",".join(str(step) for step in self.steps) + ("," if len(self.steps) == 1 else "") + ")"
        return ["SOLVER.IMS_PER_BATCH", str(self.ims_per_batch), "SOLVER.BASE_LR", f"{self.base_lr:.8g}",
                "SOLVER.MAX_ITER", str(self.max_iter), "SOLVER.STEPS", steps,
                "SOLVER.WARMUP_ITERS", str(self.warmup_iters)]


def _check_positive(**values) -> None:
    for name, value in values.items():
        if value is None:
            raise ValueError(f"{name} is required (none given)")
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


def scaled_lr(batch_size: int, reference_batch: int, reference_lr: float) -> float:
    """`reference_lr` per `reference_batch` images, scaled linearly to `batch_size`."""
    _check_positive(batch_size=batch_size, reference_batch=reference_batch, reference_lr=reference_lr)
    return reference_lr * batch_size / reference_batch


def performance_schedule(solver, batch_size: int, train_steps: Optional[int], reference_batch: int,
                         reference_lr: float, default_steps: Optional[int] = None) -> Schedule:
    """A fixed-length run at the scaled LR, no LR decay: `train_steps` iterations, or `default_steps`
    when `train_steps` is None (a performance run's length does not depend on the batch)."""
    if train_steps is None:
        if default_steps is None:
            raise ValueError("train_steps is required (no default_steps to fall back on)")
        _check_positive(default_steps=default_steps)
        max_iter = default_steps
    else:
        _check_positive(train_steps=train_steps)
        max_iter = train_steps
    base_lr = scaled_lr(batch_size, reference_batch, reference_lr)
    return Schedule(batch_size, base_lr, max_iter, (), min(solver.WARMUP_ITERS, max_iter))


def accuracy_schedule(solver, batch_size: int, train_steps: Optional[int], default_steps: int, default_batch: int,
                      reference_batch: int, reference_lr: float) -> Schedule:
    """`train_steps` iterations, or (None) `default_steps` x `default_batch` / `batch_size`, at the scaled
    LR, decayed at the config's `SOLVER.STEPS` fractions of `SOLVER.MAX_ITER`."""
    base_lr = scaled_lr(batch_size, reference_batch, reference_lr)
    if train_steps is None:
        if default_steps is None:
            raise ValueError("train_steps is required (no default_steps to fall back on)")
        _check_positive(default_steps=default_steps, default_batch=default_batch)
        max_iter = max(1, round(default_steps * default_batch / batch_size))
    else:
        _check_positive(train_steps=train_steps)
        max_iter = train_steps
    steps = tuple(round(step * max_iter / solver.MAX_ITER) for step in solver.STEPS)
    steps = tuple(sorted({step for step in steps if 0 < step < max_iter}))
    return Schedule(batch_size, base_lr, max_iter, steps, min(solver.WARMUP_ITERS, max_iter))


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (`prog: error: ...`) and exit code 2, not the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (--help shows the usage)\n")


def argument_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--mode", choices=("acc", "perf"), required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--train-steps", type=int, default=None, help="default: --default-steps (acc: scaled to the batch)")
    parser.add_argument("--default-steps", type=int, default=None,
                        help="length of a run without --train-steps (acc: at --default-batch)")
    parser.add_argument("--default-batch", type=int, default=None)
    parser.add_argument("--reference-batch", type=int, default=8)
    parser.add_argument("--reference-lr", type=float, default=0.0025)
    parser.add_argument("--check-device", action="store_true",
                        help="also check that the merged MODEL.DEVICE is usable here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE config pairs merged onto --config-file before planning")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Print the schedule's pairs on stdout; 2 with one line on stderr for a user error."""
    parser = argument_parser()
    args = parser.parse_args(argv)
    if len(args.opts) % 2:
        sys.stderr.write(f"{parser.prog}: error: the config overrides must be KEY VALUE pairs, got an odd list: "
                         f"{' '.join(args.opts)}\n")
        return 2

    from maskrcnn_multi.backends import get_backend, parse_device
    from maskrcnn_multi.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)  # ConfigError: one line through run_main
    cfg.merge_from_list(list(args.opts))
    try:
        if args.mode == "acc":
            schedule = accuracy_schedule(cfg.SOLVER, args.batch_size, args.train_steps, args.default_steps,
                                         args.default_batch, args.reference_batch, args.reference_lr)
        else:
            schedule = performance_schedule(cfg.SOLVER, args.batch_size, args.train_steps,
                                            args.reference_batch, args.reference_lr, args.default_steps)
        if args.check_device:
            parse_device(cfg.MODEL.DEVICE)  # a malformed or unknown device string
    except ValueError as error:
        sys.stderr.write(f"{parser.prog}: error: {error}\n")
        return 2
    if args.check_device:
        get_backend(cfg.MODEL.DEVICE)  # BackendUnavailableError (one line through run_main): not usable here
    sys.stdout.write(" ".join(schedule.as_opts()) + "\n")
    return 0


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """Console entry point: a user error prints one line and exits with 2."""
    return run_main(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
