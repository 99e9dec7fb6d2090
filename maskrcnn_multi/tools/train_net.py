"""Train or evaluate a detector from a config: detectron2's ``tools/train_net.py`` command line, plus
the Ascend ModelZoo's arguments.

    python -m maskrcnn_multi.tools.train_net --config-file CFG [--resume] [--eval-only] \\
        [--num-gpus N --num-machines M --machine-rank R --dist-url tcp://HOST:PORT] \\
        [--data_path COCO_ROOT] [--device-ids 0 1 ...] [--master-addr A --master-port P] \\
        [--opts] KEY VALUE ...

Options may also follow the KEY VALUE pairs (``... SOLVER.MAX_ITER 3 --eval-only``). A user error
(a bad option, config value, dataset or file) is one line on stderr and exit code 2 (``tools._cli``);
nothing in OUTPUT_DIR is replaced before the run has proven itself: config.yaml is written after
the first training iteration (or, with --eval-only, once the weights have loaded).

Several processes: run it under torchrun (``python -m torch.distributed.run --nproc_per_node N -m
maskrcnn_multi.tools.train_net ...``); started with ``--num-gpus N`` outside torchrun it runs itself
under torchrun's agent (``engine.launch``), which checks --num-gpus / --num-machines / --machine-rank /
--dist-url first; ranks stopping on a user error end it with exit code 2. ``--device-ids`` maps local
ranks to device indices. Environment: PERF_ONLY=True skips evaluation; MASKRCNN_DIST_TIMEOUT (seconds,
default 300) bounds the wait for the other ranks and the rendezvous between machines.
"""
import argparse
import logging
import os
import sys
from typing import List, Optional, Sequence

from maskrcnn_multi.backends import Backend, get_backend
from maskrcnn_multi.config import UserError, get_cfg
from maskrcnn_multi.data import check_dataset_names, register_coco_2017, register_coco_instances
from maskrcnn_multi.engine.hooks import EvalHook, HookBase
from maskrcnn_multi.engine.launch import (
    get_local_rank, get_rank, get_world_size, init_distributed, is_main_process, launch,
)
from maskrcnn_multi.engine.runtime import resolve_input_shape
from maskrcnn_multi.engine.trainer import DefaultTrainer, perf_only
from maskrcnn_multi.tools._cli import ArgumentParser, prepare_output_dir, run_main
# print_results and save_config lived here before tools._evaluate: still importable from train_net
from maskrcnn_multi.tools._evaluate import evaluate_checkpoint, print_results, report_results, save_config  # noqa: F401

logger = logging.getLogger("maskrcnn_multi.tools.train_net")

_COCO_2017_FILES = ("annotations/instances_train2017.json", "annotations/instances_val2017.json", "train2017", "val2017")


def argument_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="train_net", description="Train or evaluate a Faster / Mask R-CNN model.")
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to the config file")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last_checkpoint")
    parser.add_argument("--eval-only", action="store_true", help="evaluate MODEL.WEIGHTS and exit")
    add_run_arguments(parser)
    return parser


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options train_net and test_net share: processes, data, the ModelZoo's launch arguments and
    the KEY VALUE overrides (which must come last among the add_argument calls)."""
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per machine")
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument("--machine-rank", type=int, default=0, help="rank of this machine (0 .. M-1)")
    parser.add_argument("--dist-url", default=None, help="tcp://HOST:PORT of machine 0 (default: a free local port)")
    parser.add_argument("--data_path", "--data-path", dest="data_path", default=None,
                        help="COCO 2017 root (annotations/, train2017/, val2017/): registers coco_2017_*")
    parser.add_argument("--dataset", nargs=3, action="append", default=[], metavar=("NAME", "JSON", "IMAGE_ROOT"),
                        help="register a COCO-format set (instances JSON + image folder) as NAME for "
                             "DATASETS.TRAIN/TEST; repeatable")
    # the Ascend ModelZoo's launch arguments
    parser.add_argument("--device-ids", nargs="+", default=None, metavar="ID",
                        help="device index of each local rank (ModelZoo); default: the local rank")
    parser.add_argument("--master-addr", default=None, help="address of machine 0 (ModelZoo)")
    parser.add_argument("--master-port", type=int, default=None, help="port on machine 0 (ModelZoo)")
    parser.add_argument("--opts", dest="flag_opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE pairs that override the config")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE pairs (as --opts)")


def _split_device_ids(args: argparse.Namespace) -> List[str]:
    """``--device-ids 0 1 AMP 1`` swallows the pairs after the ids: keep the ids, return the rest."""
    if not args.device_ids:
        return []
    ids = list(args.device_ids)
    count = next((i for i, token in enumerate(ids) if not token.isdigit()), len(ids))
    args.device_ids = [int(token) for token in ids[:count]]
    return ids[count:]


def _merge_options(args: argparse.Namespace, later: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Copy into ``args`` the options ``later`` (a parse of trailing tokens) set."""
    for dest, value in vars(later).items():
        if dest in ("opts", "flag_opts") or value == parser.get_default(dest):
            continue
        current = getattr(args, dest)
        setattr(args, dest, current + value if isinstance(value, list) and isinstance(current, list) else value)


def _overrides_and_trailing_options(args: argparse.Namespace, tokens: List[str],
                                    parser: argparse.ArgumentParser) -> List[str]:
    """The KEY VALUE pairs among ``tokens`` (what argparse left for the overrides). A token starting
    with '-' where a KEY belongs cannot be a config key: it is an option typed after the pairs, so
    it (and what follows) is parsed as options; an unknown one is a UserError naming it."""
    pairs: List[str] = []
    while tokens:
        index = next((i for i in range(0, len(tokens), 2) if tokens[i].startswith("-")), None)
        if index is None:
            pairs += tokens
            break
        pairs += tokens[:index]
        later = parser.parse_args(tokens[index:])
        later_ids = _split_device_ids(later)
        _merge_options(args, later, parser)
        tokens = later_ids + list(later.opts or []) + list(later.flag_opts or [])
    return pairs


def parse_args(argv: Optional[Sequence[str]] = None,
               parser: Optional[argparse.ArgumentParser] = None) -> argparse.Namespace:
    """Parse the command line: options anywhere, config overrides as KEY VALUE pairs (trailing or
    after ``--opts``), config pairs swallowed by ``--device-ids`` moved back to the overrides.
    ``parser``: train_net's by default (test_net passes its own)."""
    parser = parser if parser is not None else argument_parser()
    args = parser.parse_args(argv)
    tokens = _split_device_ids(args) + list(args.opts or []) + list(args.flag_opts or [])
    args.opts = _overrides_and_trailing_options(args, tokens, parser)
    args.flag_opts = []
    if len(args.opts) % 2:
        raise UserError(f"config overrides must be KEY VALUE pairs; {args.opts[-1]!r} has no value")
    if args.master_addr or args.master_port:
        if args.dist_url:
            raise UserError("give either --dist-url or --master-addr/--master-port, not both")
        if args.master_port is not None and not 1 <= args.master_port <= 65535:
            raise UserError(f"--master-port {args.master_port} is not in 1..65535")
        args.dist_url = f"tcp://{args.master_addr or '127.0.0.1'}:{args.master_port or 29500}"
    return args


def setup_logging(output_dir: Optional[str]) -> None:
    """Rank 0 logs INFO to stdout (the ModelZoo's scripts grep it) and to OUTPUT_DIR/log.txt
    (when given); other ranks log warnings only."""
    package_logger = logging.getLogger("maskrcnn_multi")
    package_logger.handlers.clear()
    package_logger.propagate = False
    formatter = logging.Formatter("[%(asctime)s %(name)s %(levelname)s] %(message)s", datefmt="%m/%d %H:%M:%S")
    handlers = [logging.StreamHandler(sys.stdout)]
    if is_main_process() and output_dir:
        prepare_output_dir(output_dir, "OUTPUT_DIR")
        handlers.append(logging.FileHandler(os.path.join(output_dir, "log.txt")))
    elif not is_main_process():
        formatter = logging.Formatter(f"[rank {get_rank()} %(name)s %(levelname)s] %(message)s")
    for handler in handlers:
        handler.setFormatter(formatter)
        package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO if is_main_process() else logging.WARNING)


def _check_coco_root(root: str) -> None:
    missing = [name for name in _COCO_2017_FILES if not os.path.exists(os.path.join(root, name))]
    if missing:
        raise UserError(f"--data_path {root} is not a COCO 2017 layout: {os.path.join(root, missing[0])} is missing")


def register_datasets(data_path: Optional[str], datasets: Sequence[Sequence[str]] = ()) -> None:
    """``--data_path`` points coco_2017_train / coco_2017_val at that root. (Importing the data
    package registered them at ``<datasets>/coco``, and the synthetic shapes sets, generated on
    first load, at ``<datasets>/shapes``; ``$MASKRCNN_MULTI_DATASETS`` moves ``<datasets>``.)
    Each ``--dataset NAME JSON IMAGE_ROOT`` registers (or re-registers) NAME from those files."""
    if data_path:
        _check_coco_root(data_path)
        register_coco_2017(data_path)
    for name, json_file, image_root in datasets:
        for path in (json_file, image_root):
            if not os.path.exists(path):
                raise UserError(f"--dataset {name}: {path} does not exist")
        register_coco_instances(name, {}, os.path.abspath(json_file), os.path.abspath(image_root), replace=True)


def backend_for_this_rank(backend: Backend, device_ids: Optional[List[int]]) -> Backend:
    """The backend of this process's device. Distributed, each local rank takes its own device,
    ``device_ids[local rank]`` (``--device-ids``) or the local rank, whatever index the config
    names; a device kind with a single device (the host CPU) is shared by all ranks."""
    if get_world_size() == 1:
        return backend
    if backend.device_count() <= 1 and not device_ids:
        return backend
    local_rank = get_local_rank()
    if device_ids and local_rank >= len(device_ids):
        raise UserError(f"local rank {local_rank} has no entry in --device-ids {device_ids}")
    return backend.with_index(device_ids[local_rank] if device_ids else local_rank)


def check_datasets(cfg, eval_only: bool) -> None:
    """Every dataset the run will read is registered: DATASETS.TRAIN unless ``eval_only``, and
    DATASETS.TEST unless PERF_ONLY skips evaluation (found now, not after training)."""
    if not eval_only:
        check_dataset_names(cfg.DATASETS.TRAIN, "DATASETS.TRAIN")
    if eval_only or not perf_only():
        check_dataset_names(cfg.DATASETS.TEST, "DATASETS.TEST")


def setup(args: argparse.Namespace):
    """The frozen config of this run and its backend (resolved once, here); joins the process group,
    sets up logging, checks the datasets. config.yaml (MODEL.DEVICE and INPUT.FIX_SHAPE as resolved)
    is written later, by ``save_config``."""
    cfg = get_cfg()
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    prepare_output_dir(cfg.OUTPUT_DIR, "OUTPUT_DIR")  # before any rank joins: all see the same mistake
    backend = get_backend(cfg.MODEL.DEVICE)  # validates MODEL.DEVICE (and loads torch_npu) first
    init_distributed(backend.dist_backend)
    backend = backend_for_this_rank(backend, args.device_ids)
    cfg.MODEL.DEVICE = backend.name
    # before any collective, --eval-only included: NCCL/HCCL put tensors on the current device
    backend.set_device()
    cfg = resolve_input_shape(cfg, backend)
    cfg.freeze()
    setup_logging(cfg.OUTPUT_DIR)
    register_datasets(args.data_path, args.dataset)
    check_datasets(cfg, args.eval_only)
    if is_main_process():
        logger.info("Command line arguments: %s", args)
        logger.info("Running with full config:\n%s", cfg.dump())
    return cfg, backend


class SaveConfigAfterFirstStep(HookBase):
    """Writes config.yaml after this run's first iteration (see ``save_config``)."""

    def __init__(self, cfg):
        self._cfg = cfg
        self._saved = False

    def after_step(self) -> None:
        if not self._saved:
            self._saved = True
            save_config(self._cfg)


class ProgressBar(HookBase):
    """A tqdm bar over the iterations, shown when stdout is a terminal (rank 0 only)."""

    def before_train(self) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=self.trainer.max_iter, initial=self.trainer.start_iter, unit="it", dynamic_ncols=True)

    def after_step(self) -> None:
        self._bar.update(1)

    def after_train(self) -> None:
        self._bar.close()


def run(args: argparse.Namespace):
    """One process's work: evaluate (``--eval-only``) or train then evaluate; returns the results."""
    cfg, backend = setup(args)
    if args.eval_only:  # test_net's code path (tools._evaluate), TEST.AUG's TTA included
        results, _ = evaluate_checkpoint(cfg, backend, resume=args.resume)
        return report_results(cfg, results)
    trainer = DefaultTrainer(cfg, backend=backend)
    trainer.resume_or_load(resume=args.resume)
    trainer.register_hooks([SaveConfigAfterFirstStep(cfg)])
    tta_hook = None
    if cfg.TEST.AUG.ENABLED and not perf_only():  # after the last iteration, as detectron2's train_net
        tta_hook = EvalHook(0, lambda: trainer.test_with_TTA(trainer.cfg, trainer.model, backend=backend))
        trainer.register_hooks([tta_hook])
    if is_main_process() and sys.stdout.isatty():
        trainer.register_hooks([ProgressBar()])
    results = trainer.train()  # a FloatingPointError (diverged) is one line through run_main
    if tta_hook is not None and tta_hook.last_results:
        results = {**(results or {}), **tta_hook.last_results}
    return report_results(trainer.cfg, results)  # the trainer's cfg: SOLVER.REFERENCE_WORLD_SIZE may scale it


def main(argv: Optional[Sequence[str]] = None):
    """Entry point (``python -m maskrcnn_multi.tools.train_net``, console script ``maskrcnn-train``)."""
    args = parse_args(argv)
    setup_logging(None)  # until setup() knows OUTPUT_DIR: lets the launcher say what it starts
    return launch(run, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
                  dist_url=args.dist_url, script_args=list(sys.argv[1:] if argv is None else argv), args=(args,))


def cli() -> int:
    """Console entry point: a user error prints one line and exits with 2."""
    return run_main(main, prog="train_net")


if __name__ == "__main__":
    sys.exit(cli())
