"""`configurable`: a component built from plain arguments or from a config, as detectron2's.

A class whose ``__init__`` takes plain arguments and which has a ``from_config(cls, cfg, ...)``
classmethod returning those arguments as a dict can be built both ways once its ``__init__`` is
decorated::

    class StandardROIHeads(ROIHeads):
        @configurable
        def __init__(self, *, box_in_features, box_pooler, ...): ...

        @classmethod
        def from_config(cls, cfg, input_shape): return {"box_in_features": ..., ...}

    StandardROIHeads(cfg, input_shape)             # detectron2's config form (users' custom heads call it so)
    StandardROIHeads(box_in_features=..., ...)     # the plain form

In the config form, keyword arguments that ``from_config`` does not take are passed on to
``__init__`` and override what ``from_config`` returned (detectron2's rule).
"""
import functools
import inspect
from typing import Any, Callable, Dict

from yacs.config import CfgNode as _YacsCfgNode

__all__ = ["configurable"]


def configurable(init_func: Callable) -> Callable:
    """Decorate an ``__init__`` so that ``Cls(cfg, ...)`` goes through ``Cls.from_config``."""
    if not (inspect.isfunction(init_func) and init_func.__name__ == "__init__"):
        raise TypeError("@configurable decorates a class's __init__ method")

    @functools.wraps(init_func)
    def wrapped(self, *args, **kwargs):
        if not _called_with_cfg(args, kwargs):
            return init_func(self, *args, **kwargs)
        from_config = getattr(type(self), "from_config", None)
        if from_config is None or not inspect.ismethod(from_config):
            raise TypeError(f"{type(self).__name__} was called with a config but has no from_config classmethod")
        return init_func(self, **_arguments_from_config(from_config, args, kwargs))

    return wrapped


def _called_with_cfg(args: tuple, kwargs: dict) -> bool:
    candidate = args[0] if args else kwargs.get("cfg")
    return isinstance(candidate, _YacsCfgNode)


def _arguments_from_config(from_config: Callable, args: tuple, kwargs: dict) -> Dict[str, Any]:
    """``from_config(*args, **kwargs)``, with the keywords it does not take added on top of its result."""
    parameters = inspect.signature(from_config).parameters
    if next(iter(parameters), None) != "cfg":
        raise TypeError(f"{from_config.__qualname__} must take 'cfg' as its first argument")
    takes_any = any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters.values())
    if takes_any:
        return dict(from_config(*args, **kwargs))
    extra = {name: kwargs.pop(name) for name in list(kwargs) if name not in parameters}
    arguments = dict(from_config(*args, **kwargs))
    arguments.update(extra)
    return arguments
