"""Plan a training schedule for a batch size: the `SOLVER.*` pairs the launch scripts pass to train_net.

Accuracy runs take the config's schedule and scale it linearly to the batch (detectron2's rule of
thumb: iterations x batch and LR / batch stay constant). Performance runs train a fixed number of steps
at the ModelZoo's LR per image, without LR decay.

    python -m maskrcnn_multi.tools.schedule --config-file CFG --mode acc --batch-size 64
    -> SOLVER.IMS_PER_BATCH 64 SOLVER.BASE_LR 0.08 SOLVER.MAX_ITER 67500 SOLVER.STEPS (52500,62500) ...
"""
import argparse
import sys
from dataclasses import dataclass


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


def scale_schedule(solver, batch_size: int, train_steps: int = 0) -> Schedule:
    """The config's schedule (a `SOLVER` node) scaled to `batch_size`; `train_steps` > 0 overrides the
    length and the LR steps keep their fractions of it."""
    if batch_size <= 0:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    ratio = solver.IMS_PER_BATCH / batch_size
    max_iter = train_steps if train_steps > 0 else max(1, round(solver.MAX_ITER * ratio))
    steps = tuple(round(step * max_iter / solver.MAX_ITER) for step in solver.STEPS)
    steps = tuple(step for step in steps if 0 < step < max_iter)
    warmup = min(round(solver.WARMUP_ITERS * ratio), max_iter)
    base_lr = solver.BASE_LR * batch_size / solver.IMS_PER_BATCH
    return Schedule(batch_size, base_lr, max_iter, steps, warmup)


def performance_schedule(solver, batch_size: int, train_steps: int, reference_batch: int,
                         reference_lr: float) -> Schedule:
    """A fixed-length run at `reference_lr` per `reference_batch` images, no LR decay."""
    if train_steps <= 0:
        raise ValueError(f"a performance run needs --train-steps > 0, got {train_steps}")
    base_lr = reference_lr * batch_size / reference_batch
    return Schedule(batch_size, base_lr, train_steps, (), min(solver.WARMUP_ITERS, train_steps))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--mode", choices=("acc", "perf"), required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--train-steps", type=int, default=0, help="0: the config's length, scaled")
    parser.add_argument("--reference-batch", type=int, default=8)
    parser.add_argument("--reference-lr", type=float, default=0.0025)
    args = parser.parse_args(argv)

    from maskrcnn_multi.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    try:
        if args.mode == "acc":
            schedule = scale_schedule(cfg.SOLVER, args.batch_size, args.train_steps)
        else:
            schedule = performance_schedule(cfg.SOLVER, args.batch_size, args.train_steps,
                                            args.reference_batch, args.reference_lr)
    except ValueError as error:
        print(f"schedule: {error}", file=sys.stderr)
        return 2
    print(" ".join(schedule.as_opts()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
