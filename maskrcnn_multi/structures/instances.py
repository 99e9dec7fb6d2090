"""Per-image sets of detections or annotations (detectron2's ``Instances``)."""
from __future__ import annotations

import itertools
from typing import Any, Dict, List, Tuple, Union

import torch


class Instances:
    """N instances in one image of size ``image_size = (height, width)``.

    Every field (``pred_boxes``, ``scores``, ``gt_classes`` ...) is an object of length N that supports
    ``len`` and indexing: a Tensor, Boxes, masks, a list. Fields are attributes (``inst.scores``) and
    setting one whose length differs from the existing fields' raises.
    """

    def __init__(self, image_size: Tuple[int, int], **kwargs: Any):
        self._image_size = image_size
        self._fields: Dict[str, Any] = {}
        for name, value in kwargs.items():
            self.set(name, value)

    @property
    def image_size(self) -> Tuple[int, int]:
        """``(height, width)``."""
        return self._image_size

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            super().__setattr__(name, value)
        else:
            self.set(name, value)

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails; guard _fields against recursion during unpickling
        if name == "_fields" or name not in self._fields:
            raise AttributeError(f"Cannot find field '{name}' in the given Instances!")
        return self._fields[name]

    def set(self, name: str, value: Any) -> None:
        """Set field ``name``; its length must equal the length of the existing fields."""
        data_len = len(value)
        if len(self._fields):
            if len(self) != data_len:
                raise ValueError(f"Adding a field '{name}' of length {data_len} to an Instances of length {len(self)}")
        self._fields[name] = value

    def has(self, name: str) -> bool:
        return name in self._fields

    def remove(self, name: str) -> None:
        if name not in self._fields:
            raise KeyError(f"Instances has no field '{name}' to remove (fields: {', '.join(self._fields)})")
        del self._fields[name]

    def get(self, name: str) -> Any:
        return self._fields[name]

    def get_fields(self) -> Dict[str, Any]:
        """The dict of fields (the live dict, not a copy)."""
        return self._fields

    @property
    def fields(self) -> Dict[str, Any]:
        return self._fields

    def to(self, *args: Any, **kwargs: Any) -> "Instances":
        """A new Instances with every field that has a ``to`` method converted."""
        ret = Instances(self._image_size)
        for name, value in self._fields.items():
            if hasattr(value, "to"):
                value = value.to(*args, **kwargs)
            ret.set(name, value)
        return ret

    def __getitem__(self, item: Union[int, slice, torch.Tensor]) -> "Instances":
        """Index every field the same way; an int keeps a length-1 Instances."""
        if type(item) == int:  # noqa: E721  (bool is an int subclass and must not take this path)
            if item >= len(self) or item < -len(self):
                raise IndexError(f"Instances index {item} out of range for length {len(self)}")
            item = slice(item, None, len(self))
        ret = Instances(self._image_size)
        for name, value in self._fields.items():
            ret.set(name, value[item])
        return ret

    def __len__(self) -> int:
        for value in self._fields.values():
            # a field's __len__ can be slow (e.g. a list); the first one decides
            return value.__len__()
        raise NotImplementedError("Empty Instances does not support __len__!")

    def __iter__(self):
        raise NotImplementedError("`Instances` object is not iterable!")

    @staticmethod
    def cat(instance_lists: List["Instances"]) -> "Instances":
        """Concatenate Instances of the same image size and fields, field by field."""
        if not all(isinstance(i, Instances) for i in instance_lists):
            raise TypeError("Instances.cat expects a list of Instances")
        if len(instance_lists) == 0:
            raise ValueError("Instances.cat got an empty list")
        if len(instance_lists) == 1:
            return instance_lists[0]

        image_size = instance_lists[0].image_size
        if not isinstance(image_size, torch.Tensor):  # could be a tensor when tracing
            for other in instance_lists[1:]:
                if other.image_size != image_size:
                    raise ValueError(f"Instances.cat: image sizes differ ({image_size} vs {other.image_size})")
        ret = Instances(image_size)
        for name in instance_lists[0]._fields.keys():
            values = [i.get(name) for i in instance_lists]
            first = values[0]
            if isinstance(first, torch.Tensor):
                merged = torch.cat(values, dim=0)
            elif isinstance(first, list):
                merged = list(itertools.chain(*values))
            elif hasattr(type(first), "cat"):
                merged = type(first).cat(values)
            else:
                raise ValueError(f"Instances.cat: field '{name}' of type {type(first).__name__} has no cat")
            ret.set(name, merged)
        return ret

    def __str__(self) -> str:
        s = self.__class__.__name__ + "("
        s += f"num_instances={len(self)}, "
        s += f"image_height={self._image_size[0]}, "
        s += f"image_width={self._image_size[1]}, "
        s += "fields=[{}])".format(", ".join(f"{k}: {v}" for k, v in self._fields.items()))
        return s

    __repr__ = __str__
