"""CfgNode: yacs' config tree with detectron2's file semantics and one-line errors.

What differs from a plain `yacs.config.CfgNode`:
- `merge_from_file(path)` follows `_BASE_` (a path relative to the file that names it; `~` expands),
  recursively, base first; a cycle of bases is an error.
- Every failure raises `ConfigError` whose message is one line naming the culprit: the full key and
  the file (or "command-line overrides"), the expected type and the value, the missing path, or the
  YAML file and line.
- Types are checked as yacs does (list and tuple interchange, None matches anything) plus: an int
  where a float is expected is accepted, and a string key keeps an unquoted command-line string
  as-is (`OUTPUT_DIR 123` is the string "123"). Keys listed in `checks.FLEXIBLE_TYPES` take several
  types (`LOSS_SCALE_VALUE`: a number or "dynamic"); `checks.check_value` checks allowed values
  before a value is written.
- Merging into a frozen config raises instead of silently writing through the freeze.
"""
from __future__ import annotations

import os
from ast import literal_eval
from typing import Any, Iterable, Mapping

import yaml
from yacs.config import CfgNode as _YacsCfgNode

from . import checks
from .errors import ConfigError, short_repr

COMMAND_LINE = "command-line overrides"


class CfgNode(_YacsCfgNode):
    """A node of the config tree; the root is what `get_cfg()` returns. See the module docstring."""

    def merge_from_file(self, cfg_filename: str | os.PathLike) -> None:
        """Merge a YAML file (and its `_BASE_` chain, base first) into this config.

        Raises:
            ConfigError: missing file, YAML syntax error (file and line), unknown key or bad value
                (full key and file), `_BASE_` cycle, unsupported `VERSION`, frozen config.
        """
        path = os.path.abspath(os.path.expanduser(os.fspath(cfg_filename)))
        self._check_mutable(path)
        self._merge_file(path, chain=())

    def merge_from_list(self, cfg_list: Iterable[Any]) -> None:
        """Merge `["KEY", "VALUE", ...]` (dotted keys, values as strings or Python objects).

        String values are read as Python literals when they are one (`"(1, 2)"`, `"0.5"`, `"True"`).
        """
        items = list(cfg_list)
        self._check_mutable(COMMAND_LINE)
        if len(items) % 2:
            raise ConfigError(
                f"config overrides must be KEY VALUE pairs; {short_repr(items[-1])} has no value"
            )
        for full_key, raw in zip(items[0::2], items[1::2]):
            if not isinstance(full_key, str):
                raise ConfigError(f"config override key must be a string, got {short_repr(full_key)}")
            node, leaf = self._find_parent(full_key)
            current = node[leaf]
            if isinstance(current, _YacsCfgNode):
                raise ConfigError(
                    f"config key '{full_key}' in {COMMAND_LINE} is a group of keys; set its keys one by one"
                )
            node[leaf] = _coerce(raw, current, full_key, COMMAND_LINE)

    def merge_from_other_cfg(self, cfg_other: Mapping) -> None:
        """Merge another config (or a plain nested dict) into this one, with the same checks."""
        source = "another config"
        self._check_mutable(source)
        self._merge_mapping(self, cfg_other, [], source)

    # ------------------------------------------------------------------ internals
    def _check_mutable(self, source: str) -> None:
        if self.is_frozen():
            raise ConfigError(f"cannot merge {source} into a frozen config; call cfg.defrost() first")

    def _merge_file(self, path: str, chain: tuple[str, ...]) -> None:
        if path in chain:
            cycle = " -> ".join(chain + (path,))
            raise ConfigError(f"config _BASE_ cycle: {cycle}")
        data = _load_yaml(path)
        base = data.pop("_BASE_", None)
        if base is not None:
            if not isinstance(base, str):
                raise ConfigError(f"_BASE_ in {path} must be a path string, got {short_repr(base)}")
            base_path = os.path.expanduser(base)
            if not os.path.isabs(base_path):
                base_path = os.path.join(os.path.dirname(path), base_path)
            self._merge_file(os.path.abspath(base_path), chain + (path,))
        self._check_version(data.get("VERSION"), path)
        self._merge_mapping(self, data, [], path)

    def _check_version(self, version: Any, path: str) -> None:
        ours = self.get("VERSION")
        if version is None or ours is None or version == ours:
            return
        if not isinstance(version, int) or version > ours:
            raise ConfigError(
                f"config file {path} has VERSION {short_repr(version)}; this library reads VERSION {ours}"
            )
        raise ConfigError(
            f"config file {path} has VERSION {version}; only VERSION {ours} (detectron2's current) "
            "is read: upgrade it with detectron2 first"
        )

    def _merge_mapping(self, node: _YacsCfgNode, mapping: Mapping, prefix: list, source: str) -> None:
        for key, raw in mapping.items():
            full_key = ".".join(prefix + [str(key)])
            if key not in node:
                self._handle_unknown_key(node, key, raw, full_key, source)
                continue
            current = node[key]
            if isinstance(current, _YacsCfgNode):
                if not isinstance(raw, Mapping):
                    raise ConfigError(
                        f"config key '{full_key}' in {source} is a group of keys, got {short_repr(raw)}"
                    )
                self._merge_mapping(current, raw, prefix + [str(key)], source)
            else:
                node[key] = _coerce(raw, current, full_key, source)

    def _handle_unknown_key(self, node, key, raw, full_key: str, source: str) -> None:
        if node.is_new_allowed():
            node[key] = type(self)(raw) if isinstance(raw, Mapping) else _decode(raw)
        elif self.key_is_deprecated(full_key):
            pass  # yacs logs the deprecation itself
        elif self.key_is_renamed(full_key):
            self.raise_key_rename_error(full_key)
        else:
            raise ConfigError(f"unknown config key '{full_key}' in {source}")

    def _find_parent(self, full_key: str) -> tuple[_YacsCfgNode, str]:
        """The node holding `full_key` and the leaf name; ConfigError naming the key if absent."""
        parts = full_key.split(".")
        node: _YacsCfgNode = self
        for depth, part in enumerate(parts):
            if not isinstance(node, _YacsCfgNode) or part not in node:
                if self.key_is_renamed(full_key):
                    self.raise_key_rename_error(full_key)
                raise ConfigError(f"unknown config key '{full_key}' in {COMMAND_LINE}")
            if depth == len(parts) - 1:
                return node, part
            node = node[part]
        raise ConfigError(f"unknown config key '{full_key}' in {COMMAND_LINE}")  # empty key


def _load_yaml(path: str) -> dict:
    """The top-level mapping of a YAML file; ConfigError naming the file (and line) otherwise."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as stream:
            data = yaml.safe_load(stream)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"cannot parse config file {path}{where}: {problem}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of keys, got {type(data).__name__}"
        )
    return data


def _decode(raw: Any) -> Any:
    """yacs' rule: a string that is a Python literal becomes that literal, else stays a string."""
    if not isinstance(raw, str):
        return raw
    try:
        return literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return raw


def _coerce(raw: Any, original: Any, full_key: str, source: str) -> Any:
    """`raw` converted to the type of `original` (the current value) and checked, or ConfigError."""
    value = _convert(raw, original, full_key, source)
    checks.check_value(full_key, value, source)
    return value


def _convert(raw: Any, original: Any, full_key: str, source: str) -> Any:
    value = _decode(raw)
    flexible = checks.FLEXIBLE_TYPES.get(full_key)
    if flexible is not None:
        if isinstance(value, flexible) and not isinstance(value, bool):
            return value
        names = ", ".join(t.__name__ for t in flexible)
        raise ConfigError(
            f"config key '{full_key}' in {source} expects one of ({names}), "
            f"got {type(value).__name__} {short_repr(value)}"
        )
    if isinstance(original, (list, tuple)) and isinstance(value, (list, tuple)):
        return _sequence_like(value, original)
    if type(value) is type(original) or original is None or value is None:
        return value
    if type(original) is float and type(value) is int:
        return float(value)
    if isinstance(original, str) and isinstance(raw, str):
        return raw
    raise ConfigError(
        f"config key '{full_key}' in {source} expects {type(original).__name__}, "
        f"got {type(value).__name__} {short_repr(value)}"
    )


def _sequence_like(value, original):
    """`value` as `original`'s sequence type, nested levels too (YAML has lists only)."""
    template = original[0] if len(original) else None
    if isinstance(template, (list, tuple)):
        value = [_sequence_like(v, template) if isinstance(v, (list, tuple)) else v for v in value]
    return type(original)(value)
