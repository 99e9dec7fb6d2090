"""`Registry`: a name -> class (or builder) table for one config key, with detectron2's `.register()`.

It is a dict (iterate it, test `name in table`, add with `table[name] = cls`), plus:
- `register()` as detectron2's registries: `@TABLE.register()` on a class or function, or
  `TABLE.register(obj)`; the name is the object's `__name__` unless given;
- `get(name)` that fails with one line naming the config key, the value and the choices, e.g.
  `unknown MODEL.ROI_HEADS.NAME 'Foo' (choose from: StandardROIHeads)`.
Each table's entries are called as detectron2 calls them: `TABLE.get(name)(cfg, input_shape)`
(the classes take the config form through `config.configurable`).
"""
from typing import Any, Callable, Optional

from maskrcnn_multi.config.errors import UserError

__all__ = ["Registry"]


class Registry(dict):
    """Names for the objects one config key may choose from (see the module docstring)."""

    def __init__(self, config_key: str, *entries: Any):
        """config_key: the key that names an entry (e.g. "MODEL.ROI_HEADS.NAME"); entries: registered
        under their `__name__`."""
        super().__init__()
        self.config_key = config_key
        for entry in entries:
            self.register(entry)

    def register(self, obj: Any = None, *, name: Optional[str] = None) -> Any:
        """Register `obj` (returns it), or, called without one, return a decorator that does."""
        if obj is None:
            def decorator(target: Callable) -> Callable:
                return self.register(target, name=name)

            return decorator
        key = name or obj.__name__
        if key in self and self[key] is not obj:
            raise KeyError(f"{key!r} is already registered for {self.config_key}")
        self[key] = obj
        return obj

    def get(self, name: str, default: Any = None) -> Any:  # noqa: D102 - see the module docstring
        if name in self:
            return self[name]
        if default is not None:
            return default
        raise UserError(f"unknown {self.config_key} {name!r} (choose from: {', '.join(self)})")

    def __repr__(self) -> str:
        return f"Registry({self.config_key}: {', '.join(self)})"
