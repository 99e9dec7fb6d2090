"""Engine: the training loop and its hooks, distributed launch, and prediction around a built model."""
from . import hooks
from .defaults import DefaultPredictor
from .events import EventStorage, get_event_storage
from .launch import init_distributed, launch
from .train_loop import HookBase, SimpleTrainer, TrainerBase
from .trainer import DefaultTrainer

__all__ = [
    "DefaultPredictor", "DefaultTrainer", "EventStorage", "HookBase", "SimpleTrainer", "TrainerBase",
    "get_event_storage", "hooks", "init_distributed", "launch",
]
