"""Dataset catalogs: a name maps to a function returning the dataset's dicts, and to its metadata.

These are the only process-wide mutable objects of the data package (detectron2's convention):
``DatasetCatalog.register("shapes_train", fn)`` and ``MetadataCatalog.get("shapes_train").set(...)``.
The catalogs hold plain dicts behind small classes; nothing is loaded until ``DatasetCatalog.get``.
"""
import os
from typing import Any, Callable, Dict, List

from .validation import UnknownDatasetError

__all__ = ["DatasetCatalog", "MetadataCatalog", "Metadata", "datasets_root"]


class _DatasetCatalog:
    """name -> zero-argument function returning ``list[dict]`` in detectron2's dataset format."""

    def __init__(self):
        self._loaders: Dict[str, Callable[[], List[dict]]] = {}

    def register(self, name: str, loader: Callable[[], List[dict]]) -> None:
        """Register ``loader`` under ``name``; registering a name twice is an error."""
        if not callable(loader):
            raise TypeError(f"dataset '{name}': the loader must be callable, got {type(loader).__name__}")
        if name in self._loaders:
            raise KeyError(f"dataset '{name}' is already registered")
        self._loaders[name] = loader

    def get(self, name: str) -> List[dict]:
        """Call the loader registered under ``name`` and return its list of dicts."""
        if name not in self._loaders:
            known = ", ".join(sorted(self._loaders)) or "none"
            raise UnknownDatasetError(f"dataset '{name}' is not registered (registered: {known})")
        dataset_dicts = self._loaders[name]()
        if not isinstance(dataset_dicts, list):
            raise TypeError(f"dataset '{name}': the loader returned {type(dataset_dicts).__name__}, not a list")
        return dataset_dicts

    def list(self) -> List[str]:
        return sorted(self._loaders)

    def remove(self, name: str) -> None:
        self._loaders.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self._loaders


class Metadata:
    """Attributes of one dataset (thing_classes, json_file, evaluator_type, ...).

    An attribute, once set, cannot be changed to a different value, so two registrations cannot
    silently disagree about a dataset's classes.
    """

    def __init__(self, name: str, **fields: Any):
        object.__setattr__(self, "_fields", {"name": name})
        self.set(**fields)

    def __getattr__(self, key: str) -> Any:
        fields = object.__getattribute__(self, "_fields")
        if key in fields:
            return fields[key]
        raise AttributeError(
            f"metadata of dataset '{fields['name']}' has no field '{key}' (has: {', '.join(sorted(fields))})"
        )

    def __setattr__(self, key: str, value: Any) -> None:
        fields = object.__getattribute__(self, "_fields")
        if key in fields and fields[key] != value:
            raise ValueError(
                f"metadata '{key}' of dataset '{fields['name']}' is already {fields[key]!r}; "
                f"refusing to change it to {value!r}"
            )
        fields[key] = value

    def set(self, **fields: Any) -> "Metadata":
        for key, value in fields.items():
            setattr(self, key, value)
        return self

    def get(self, key: str, default: Any = None) -> Any:
        return object.__getattribute__(self, "_fields").get(key, default)

    def as_dict(self) -> Dict[str, Any]:
        return dict(object.__getattribute__(self, "_fields"))

    def __repr__(self) -> str:
        return f"Metadata({self.as_dict()!r})"


class _MetadataCatalog:
    """name -> Metadata, created empty on first ``get``."""

    def __init__(self):
        self._metadata: Dict[str, Metadata] = {}

    def get(self, name: str) -> Metadata:
        if name not in self._metadata:
            self._metadata[name] = Metadata(name)
        return self._metadata[name]

    def list(self) -> List[str]:
        return sorted(self._metadata)

    def remove(self, name: str) -> None:
        self._metadata.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self._metadata


DatasetCatalog = _DatasetCatalog()
MetadataCatalog = _MetadataCatalog()


def datasets_root() -> str:
    """Where datasets live: ``$MASKRCNN_MULTI_DATASETS``, else ``./datasets`` (relative to the cwd)."""
    return os.environ.get("MASKRCNN_MULTI_DATASETS", "datasets")
