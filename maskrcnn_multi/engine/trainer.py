"""DefaultTrainer: the standard training run built from a config (detectron2's DefaultTrainer).

It builds the model, optimizer, LR schedule, training loader, AMP policy and loss scaler (from the
backend of MODEL.DEVICE), wraps the model for data parallelism when distributed, and registers the
default hooks. Checkpoints hold everything a resumed run needs to be *the same run*: model,
optimizer, scheduler, loss scaler, iteration, every rank's RNG states and the number of batches
drawn from the loader. ``resume_or_load(resume=True)`` restores them, so on the CPU with
DATALOADER.NUM_WORKERS 0 the losses after resuming equal those of an uninterrupted run exactly.
"""
import inspect
import logging
import os
import time
from collections import OrderedDict
from typing import Dict, List, Optional

import torch

from ..backends import LossScaler, get_backend
from ..backends.amp import apply_opt_level
from ..checkpoint import DetectionCheckpointer
from ..config import amp_settings
from ..data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from ..evaluation import COCOEvaluator, InferenceTiming, LVISEvaluator, inference_on_dataset
from ..modeling import build_model
from ..solver import auto_scale_workers, build_lr_scheduler, build_optimizer
from . import hooks
from .events import ConsoleWriter, JSONWriter, make_tensorboard_writer
from .inference import for_inference, set_training_memory_format
from .launch import all_gather_object, get_rank, get_world_size, is_main_process
from .precise_bn import PreciseBN, get_bn_modules
from .runtime import apply_device_settings, capture_rng_states, resolve_input_shape, restore_rng_states
from .train_loop import SimpleTrainer
from .tta import GeneralizedRCNNWithTTA

__all__ = ["DefaultTrainer", "capture_rng_states", "restore_rng_states", "perf_only"]

logger = logging.getLogger(__name__)


def _check_ranks_agree_on_start(start_iter: int, output_dir: str) -> None:
    """Every rank must resume from the same iteration, or the collectives pair up wrongly and hang."""
    if get_world_size() == 1:
        return
    start_iters = all_gather_object(start_iter)
    if len(set(start_iters)) > 1:
        found = ", ".join(f"rank {rank}: {it}" for rank, it in enumerate(start_iters))
        raise RuntimeError(
            f"ranks disagree on the iteration to resume from ({found}): each reads {output_dir}/last_checkpoint "
            f"from its own disk; put OUTPUT_DIR on a filesystem every node shares"
        )


def perf_only() -> bool:
    """True when the environment says PERF_ONLY=True (the ModelZoo's performance scripts): no evaluation."""
    return os.environ.get("PERF_ONLY", "").strip().lower() in ("1", "true", "yes")


class DefaultTrainer(SimpleTrainer):
    """Training as ``train_net`` runs it::

        trainer = DefaultTrainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        trainer.train()

    Subclass and override the ``build_*`` class methods to change a part.

    Args:
        cfg: the run's config.
        backend: the backend of ``cfg.MODEL.DEVICE`` when the caller has resolved it already
            (train_net does, once per process); else it is resolved here.
    """

    def __init__(self, cfg, backend=None):
        self.backend = backend if backend is not None else get_backend(cfg.MODEL.DEVICE)
        cfg = self.auto_scale_workers(cfg, get_world_size())
        cfg = resolve_input_shape(cfg, self.backend)  # the data layer reads INPUT.FIX_SHAPE as resolved
        self.cfg = cfg
        self.backend.set_device()
        apply_device_settings(cfg, self.backend, training=True)
        # every rank its own stream (seed + rank), as detectron2; a random seed is logged by the backend
        self.seed = self.backend.manual_seed(cfg.SEED + get_rank() if cfg.SEED >= 0 else None)
        self.amp = amp_settings(cfg)
        model = self.build_model(cfg)
        self._set_memory_format(model)
        optimizer = self.build_optimizer(cfg, model)
        schedulable = optimizer  # torch schedulers need the torch optimizer, not the O2 wrapper
        loss_scaler = None
        if self.amp.enabled:
            optimizer = apply_opt_level(model, optimizer, self.amp.opt_level, self.backend.amp_dtype(self.amp.dtype))
            loss_scaler = LossScaler(self.amp.loss_scale)
        self.unwrapped_model = model
        model = self._wrap_data_parallel(model)
        super().__init__(
            model,
            self.build_train_loader(cfg),
            optimizer,
            autocast=self._autocast,
            loss_scaler=loss_scaler,
            memory_stats=self.backend.memory_stats,
            debug=bool(cfg.DEBUG_MODE),
        )
        self.scheduler = self.build_lr_scheduler(cfg, schedulable)
        checkpointables = {"optimizer": optimizer, "scheduler": self.scheduler}
        if loss_scaler is not None:
            checkpointables["scaler"] = loss_scaler
        full_precision = getattr(optimizer, "full_precision_state_dict", None)  # O2: the fp32 masters
        self.checkpointer = DetectionCheckpointer(
            self.unwrapped_model, cfg.OUTPUT_DIR,
            model_state=(lambda: full_precision(self.unwrapped_model)) if full_precision else None, **checkpointables,
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.register_hooks(self.build_hooks())
        logger.info(
            "AMP: %s (%s, loss scale %s); %s; device %s; %d process(es); seed %d",
            self.amp.opt_level, self.backend.amp_dtype(self.amp.dtype or None) if self.amp.enabled else "fp32",
            self.amp.loss_scale if self.amp.enabled else "none",
            "channels_last" if self.memory_format == torch.channels_last else "contiguous",
            self.backend.device, get_world_size(), self.seed,
        )

    def _set_memory_format(self, model: torch.nn.Module) -> None:
        """MODEL.MEMORY_FORMAT for the dtype the convolutions train in: weights in that layout, and the
        input batch converted to it once (the layout then flows through the network)."""
        dtype = self.backend.amp_dtype(self.amp.dtype) if self.amp.enabled else torch.float32
        self.memory_format = set_training_memory_format(model, self.cfg, self.backend, dtype)

    def _autocast(self):
        return self.backend.autocast(self.amp.opt_level, self.amp.dtype or None)

    def _wrap_data_parallel(self, model: torch.nn.Module) -> torch.nn.Module:
        if get_world_size() == 1:
            return model
        device_ids = [self.backend.device] if self.backend.device.index is not None else None
        ddp = torch.nn.parallel.DistributedDataParallel
        # detectron2 does not broadcast (BN) buffers at every forward; torch >= 2.13 renamed the switch
        no_buffer_sync = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters
            else {"broadcast_buffers": False}
        )
        return ddp(model, device_ids=device_ids, **no_buffer_sync)

    # ------------------------------------------------------------------ resume
    def resume_or_load(self, resume: bool = True) -> None:
        """With ``resume`` and a ``last_checkpoint`` in OUTPUT_DIR, continue that run exactly;
        otherwise load MODEL.WEIGHTS (model only) and start at iteration 0, moving an earlier run's
        checkpoints in OUTPUT_DIR aside first (``DetectionCheckpointer.keep_previous_run``)."""
        checkpoint = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume) or {}
        resuming = resume and self.checkpointer.has_checkpoint() and "iteration" in checkpoint
        start_iter = int(checkpoint["iteration"]) + 1 if resuming else 0
        _check_ranks_agree_on_start(start_iter, self.cfg.OUTPUT_DIR)
        if not resuming:
            if is_main_process():  # after MODEL.WEIGHTS was read: it may be one of those files
                self.checkpointer.keep_previous_run()
            return
        self.start_iter = start_iter
        if self.cfg.SEED < 0:
            logger.warning("SEED < 0: the resumed run shuffles the data with a new seed; set SEED to resume exactly")
        batches = int(checkpoint.get("data_batches", self.start_iter))
        self._skip_batches(batches)  # before the RNG states: it may draw random numbers
        rng_states = checkpoint.get("rng_states")
        if rng_states and len(rng_states) == get_world_size():
            restore_rng_states(rng_states[get_rank()], self.backend)
        else:
            logger.warning("the checkpoint has no RNG states for %d process(es); the resumed run will "
                           "draw different random numbers than the original", get_world_size())
        logger.info("resumed at iteration %d (%d batches skipped in the data stream)", self.start_iter, batches)

    def _skip_batches(self, batches: int) -> None:
        """Start the training stream at the batch the interrupted run would have drawn next.

        Our loader's batch sampler decides everything from indices (and seeds each draw's
        augmentation by its position), so it jumps there without reading an image. Any other
        loader is replayed: its batches are drawn and dropped, before the RNG states are restored
        so the replay's random draws do not disturb the resumed run.
        """
        batch_sampler = getattr(self.data_loader, "batch_sampler", None)
        if self._data_loader_iter_obj is None and hasattr(batch_sampler, "skip_to"):
            batch_sampler.skip_to(batches)
            # the iterator draws its base seed from torch's RNG: draw it now, as the original run
            # did before the states its checkpoint saved
            self._data_loader_iter_obj = iter(self.data_loader)
            logger.info("the data stream starts at batch %d (index-level skip, nothing read)", batches)
            return
        start = time.perf_counter()
        for _ in range(batches):
            next(self._data_loader_iter)
        if batches:
            logger.info("replayed %d batches of the data stream in %.1fs", batches, time.perf_counter() - start)

    def _resume_state(self) -> dict:
        """The part of a checkpoint beyond model / optimizer / scheduler / scaler (collective)."""
        return {
            "rng_states": all_gather_object(capture_rng_states(self.backend)),
            "data_batches": self.iter + 1,
            "world_size": get_world_size(),
            "seed": self.seed,
        }

    # ------------------------------------------------------------------ hooks
    def build_hooks(self) -> List[hooks.HookBase]:
        cfg = self.cfg
        hook_list: List[Optional[hooks.HookBase]] = [
            hooks.IterationTimer(cfg.SOLVER.IMS_PER_BATCH),
            hooks.LRScheduler(self.scheduler.optimizer, self.scheduler),
            self._precise_bn_hook(),
            hooks.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, self._resume_state),
        ]
        if perf_only():
            logger.info("PERF_ONLY=True: no evaluation during or after training")
        else:
            hook_list.append(hooks.EvalHook(
                cfg.TEST.EVAL_PERIOD, self._evaluate_for_hook,
                rng_state=(lambda: capture_rng_states(self.backend), lambda s: restore_rng_states(s, self.backend)),
            ))
        if is_main_process():
            hook_list.append(hooks.PeriodicWriter(self.build_writers(), period=20))
        return [hook for hook in hook_list if hook is not None]

    def _precise_bn_hook(self) -> Optional[PreciseBN]:
        """TEST.PRECISE_BN (with trainable BatchNorm layers): fresh statistics before each evaluation."""
        precise = self.cfg.TEST.PRECISE_BN
        if not precise.ENABLED or perf_only() or not get_bn_modules(self.model):
            return None

        def forward(batch):
            with self._autocast():
                self.model(batch)

        return PreciseBN(
            self.cfg.TEST.EVAL_PERIOD, self.model, self.build_train_loader(self.cfg), precise.NUM_ITER, forward,
            rng_state=(lambda: capture_rng_states(self.backend), lambda s: restore_rng_states(s, self.backend)),
        )

    def build_writers(self) -> list:
        writers = [ConsoleWriter(self.max_iter), JSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json"))]
        tensorboard = make_tensorboard_writer(self.cfg.OUTPUT_DIR)
        if tensorboard is not None:
            writers.append(tensorboard)
        return writers

    def _evaluate_for_hook(self) -> Dict:
        """Evaluate with the inference settings (TEST.AMP.ENABLED, MODEL.MEMORY_FORMAT), not the
        training ones: a model trained with AMP O1 is evaluated in exact float32 by default."""
        try:
            self.last_eval_results = self.test(self.cfg, self.model, backend=self.backend)
        finally:
            self.model.train()
        return self.last_eval_results

    def train(self) -> Optional[Dict]:
        """Run the schedule from ``start_iter``; returns the last evaluation's results (None if none)."""
        self.last_eval_results = None
        super().train(self.start_iter, self.max_iter)
        return self.last_eval_results

    # ------------------------------------------------------------------ builders
    auto_scale_workers = staticmethod(auto_scale_workers)  # SOLVER.REFERENCE_WORLD_SIZE

    @classmethod
    def build_model(cls, cfg) -> torch.nn.Module:
        return build_model(cfg)  # modeling logs the architecture

    @classmethod
    def build_optimizer(cls, cfg, model) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        return build_detection_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_folder: Optional[str] = None, **options):
        """A COCOEvaluator writing to OUTPUT_DIR/inference/<dataset>; ``options`` (``tasks``,
        ``only_processed_images``) go to it, and are given only when ``test`` needs them."""
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        lvis = MetadataCatalog.get(dataset_name).get("evaluator_type") == "lvis"
        return (LVISEvaluator if lvis else COCOEvaluator)(dataset_name, output_dir=output_folder, distributed=True,
                                                          **options)

    @classmethod
    def test_with_TTA(cls, cfg, model, backend=None) -> Dict:  # noqa: N802 - detectron2's name
        """``test`` with TEST.AUG's test-time augmentation; results under "<name>_TTA", evaluator
        output in OUTPUT_DIR/inference_TTA."""
        backend = backend if backend is not None else get_backend(cfg.MODEL.DEVICE)
        model = GeneralizedRCNNWithTTA(cfg, for_inference(model, cfg, backend))
        evaluators = [cls.build_evaluator(cfg, name, output_folder=os.path.join(cfg.OUTPUT_DIR, "inference_TTA", name))
                      for name in cfg.DATASETS.TEST]
        results = cls.test(cfg, model, evaluators, backend=backend)
        return OrderedDict((name + "_TTA", value) for name, value in results.items())

    @classmethod
    def test(cls, cfg, model, evaluators=None, backend=None, *, max_batches: Optional[int] = None,
             skip_eval: bool = False, timings: Optional[Dict[str, InferenceTiming]] = None) -> Dict:
        """Evaluate ``model`` on every DATASETS.TEST; ``{dataset: results}`` (just the results for one).

        The model runs as inference runs it (``engine.inference``: the configured precision, memory
        format and fused graph), TEST.IMS_PER_BATCH images per batch; ``backend``: the run's,
        resolved from MODEL.DEVICE when not given. ``test_net`` and ``train_net --eval-only`` call it
        with: ``max_batches`` (stop each dataset after that many batches and score only the images
        run), ``skip_eval`` (write the predictions, compute no AP: results are {}), ``timings``
        (filled with ``{dataset: InferenceTiming}``, merged over ranks).
        """
        backend = backend if backend is not None else get_backend(cfg.MODEL.DEVICE)
        model = for_inference(model, cfg, backend)
        options = {}
        if skip_eval:
            options["tasks"] = ()
        if max_batches is not None:
            options["only_processed_images"] = True
        results: Dict = OrderedDict()
        for index, dataset_name in enumerate(cfg.DATASETS.TEST):
            loader = cls.build_test_loader(cfg, dataset_name)
            evaluator = evaluators[index] if evaluators is not None else cls.build_evaluator(
                cfg, dataset_name, **options)
            timing = InferenceTiming()
            results[dataset_name] = inference_on_dataset(model, loader, evaluator, synchronize=backend.synchronize,
                                                         max_batches=max_batches, timing=timing)
            if timings is not None:
                timings[dataset_name] = timing
        if len(results) == 1:
            return next(iter(results.values()))
        return results
