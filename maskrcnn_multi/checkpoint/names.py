"""Renaming foreign parameter names to ours (= detectron2's) and matching them to a model by suffix."""
from __future__ import annotations

import logging
import re
from typing import Dict, List, Mapping, Sequence, Tuple

import torch

logger = logging.getLogger(__name__)

# Caffe2 blob names use "_" everywhere; these (pattern, replacement) run in order after "_" -> "."
_C2_SUFFIXES: Sequence[Tuple[str, str]] = (
    (r"\.b$", ".bias"),
    (r"\.w$", ".weight"),
    (r"bn\.s$", "norm.weight"),
    (r"bn\.bias$", "norm.bias"),
    (r"bn\.rm", "norm.running_mean"),
    (r"bn\.running\.mean$", "norm.running_mean"),
    (r"bn\.riv$", "norm.running_var"),
    (r"bn\.running\.var$", "norm.running_var"),
    (r"bn\.gamma$", "norm.weight"),
    (r"bn\.beta$", "norm.bias"),
    (r"gn\.s$", "norm.weight"),
    (r"gn\.bias$", "norm.bias"),
    # stem: res_conv1_bn_* -> conv1.norm.*, then conv1.* -> stem.conv1.* (anchored, not head convs)
    (r"^res\.conv1\.norm\.", "conv1.norm."),
    (r"^conv1\.", "stem.conv1."),
)
_C2_BLOCKS = ((".branch1.", ".shortcut."), (".branch2a.", ".conv1."), (".branch2b.", ".conv2."), (".branch2c.", ".conv3."))


def convert_basic_c2_names(original_keys: Sequence[str]) -> List[str]:
    """Caffe2 backbone blob names -> ours, one for one (detectron2's ``convert_basic_c2_names``).

    ``res2_0_branch2a_w`` -> ``res2.0.conv1.weight``, ``res_conv1_bn_s`` -> ``stem.conv1.norm.weight``,
    ``pred_w`` -> ``linear.weight``; names it does not know keep their dotted form (``fc1000.weight``).
    """
    converted = []
    for key in original_keys:
        key = {"pred_b": "linear_b", "pred_w": "linear_w"}.get(key, key)
        key = key.replace("_", ".")
        for pattern, replacement in _C2_SUFFIXES:
            key = re.sub(pattern, replacement, key)
        for old, new in _C2_BLOCKS:
            key = key.replace(old, new)
        converted.append(key)
    return converted


_TV_LAYER = re.compile(r"^layer(\d)\.(\d+)\.(.+)$")


def is_torchvision_resnet(keys: Sequence[str]) -> bool:
    """True for torchvision ResNet names (``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight`` ...)."""
    keys = set(keys)
    return "conv1.weight" in keys and "bn1.weight" in keys and any(k.startswith("layer1.") for k in keys)


def convert_torchvision_resnet_names(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """torchvision ResNet state dict -> our names; ``fc.*`` and ``num_batches_tracked`` are dropped.

    ``conv1`` -> ``stem.conv1``, ``bn1`` -> ``stem.conv1.norm``, ``layerK.B.convJ`` -> ``res{K+1}.B.convJ``,
    ``layerK.B.bnJ`` -> ``res{K+1}.B.convJ.norm``, ``downsample.0/1`` -> ``shortcut`` / ``shortcut.norm``.
    """
    renamed = {}
    for key, value in state_dict.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        if key.startswith("conv1."):
            new_key = "stem." + key
        elif key.startswith("bn1."):
            new_key = "stem.conv1.norm." + key[len("bn1.") :]
        else:
            match = _TV_LAYER.match(key)
            if match is None:
                new_key = key
            else:
                stage, block, rest = match.groups()
                rest = re.sub(r"^bn(\d)\.", r"conv\1.norm.", rest)
                rest = rest.replace("downsample.0.", "shortcut.").replace("downsample.1.", "shortcut.norm.")
                new_key = f"res{int(stage) + 1}.{block}.{rest}"
        renamed[new_key] = value
    return renamed


def _is_suffix(model_key: str, ckpt_key: str) -> bool:
    # a complete dotted suffix: "roi_heads.x_conv1.weight" must not match "conv1.weight"
    return model_key == ckpt_key or model_key.endswith("." + ckpt_key)


def match_by_suffix(model_keys: Sequence[str], ckpt_keys: Sequence[str]) -> Dict[str, str]:
    """``{model_key: ckpt_key}``: each model key takes the longest checkpoint key that is a dotted
    suffix of it (detectron2's ``align_and_update_state_dicts`` heuristic), so ImageNet backbone names
    ``res2.0.conv1.weight`` land on ``backbone.bottom_up.res2.0.conv1.weight``.

    Raises ``ValueError`` when one checkpoint key would feed two model keys.
    """
    # bucket checkpoint keys by their last component: a suffix match must share it
    by_leaf: Dict[str, List[str]] = {}
    for ckpt_key in ckpt_keys:
        by_leaf.setdefault(ckpt_key.rsplit(".", 1)[-1], []).append(ckpt_key)
    matches: Dict[str, str] = {}
    owner: Dict[str, str] = {}
    for model_key in sorted(model_keys):
        candidates = [k for k in by_leaf.get(model_key.rsplit(".", 1)[-1], ()) if _is_suffix(model_key, k)]
        if not candidates:
            continue
        best = max(candidates, key=len)
        if best in owner:
            raise ValueError(
                f"checkpoint key '{best}' matches two model keys ('{owner[best]}' and '{model_key}')"
            )
        owner[best] = model_key
        matches[model_key] = best
    return matches


def _group_by_prefix(keys: Sequence[str]) -> List[str]:
    groups: Dict[str, List[str]] = {}
    for key in sorted(keys):
        prefix, _, leaf = key.rpartition(".")
        groups.setdefault(prefix, []).append(leaf)
    lines = []
    for prefix, leaves in groups.items():
        leaf_text = leaves[0] if len(leaves) == 1 else "{" + ", ".join(leaves) + "}"
        lines.append(f"{prefix}.{leaf_text}" if prefix else leaf_text)
    return lines


def incompatible_keys_table(
    source: str,
    missing: Sequence[str],
    unexpected: Sequence[str],
    shape_mismatch: Sequence[Tuple[str, tuple, tuple]] = (),
) -> str:
    """One readable message listing what did not load, keys grouped by module like detectron2's
    ``get_missing_parameters_message``; empty string when everything loaded."""
    sections = []
    if shape_mismatch:
        rows = [f"    {key}: checkpoint {ckpt_shape} vs model {model_shape}" for key, ckpt_shape, model_shape in shape_mismatch]
        sections.append(f"  skipped, shape differs ({len(shape_mismatch)}):\n" + "\n".join(rows))
    if missing:
        rows = [f"    {line}" for line in _group_by_prefix(missing)]
        sections.append(f"  model keys not in the checkpoint ({len(missing)}):\n" + "\n".join(rows))
    if unexpected:
        rows = [f"    {line}" for line in _group_by_prefix(unexpected)]
        sections.append(f"  checkpoint keys the model does not use ({len(unexpected)}):\n" + "\n".join(rows))
    if not sections:
        return ""
    return f"Loading {source}: some weights were not loaded\n" + "\n".join(sections)
