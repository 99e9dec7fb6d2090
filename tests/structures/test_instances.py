"""Instances: fields of one length, indexing, cat."""
import pytest
import torch

from maskrcnn_multi.structures import Boxes, Instances


def _instances(n=3):
    inst = Instances((20, 30))
    inst.pred_boxes = Boxes(torch.rand(n, 4))
    inst.scores = torch.arange(n, dtype=torch.float32)
    inst.names = [f"obj{i}" for i in range(n)]
    return inst


def test_fields_set_get_has_remove():
    inst = _instances()
    assert inst.image_size == (20, 30) and len(inst) == 3
    assert inst.has("scores") and inst.get("scores") is inst.scores
    assert list(inst.get_fields()) == ["pred_boxes", "scores", "names"]
    inst.remove("names")
    assert not inst.has("names")
    with pytest.raises(AttributeError, match="names"):
        inst.names
    with pytest.raises(KeyError, match="names"):
        inst.remove("names")


def test_setting_a_field_of_another_length_raises():
    inst = _instances()
    with pytest.raises(ValueError, match="length 2"):
        inst.pred_classes = torch.zeros(2)


def test_indexing_keeps_every_field_aligned():
    inst = _instances(4)
    picked = inst[2:]
    assert len(picked) == 2 and picked.scores.tolist() == [2.0, 3.0] and picked.names == ["obj2", "obj3"]
    inst.remove("names")  # a list field cannot take a tensor index, as in detectron2
    picked = inst[inst.scores > 1.5]
    assert picked.scores.tolist() == [2.0, 3.0] and torch.equal(picked.pred_boxes.tensor, inst.pred_boxes.tensor[2:])
    one = inst[-1]
    assert len(one) == 1 and one.scores.tolist() == [3.0] and len(one.pred_boxes) == 1
    with pytest.raises(IndexError):
        inst[4]


def test_cat_and_to():
    merged = Instances.cat([_instances(2), _instances(3)])
    assert len(merged) == 5 and len(merged.pred_boxes) == 5 and len(merged.names) == 5
    moved = merged.to(torch.float64)
    assert moved.scores.dtype == torch.float64 and moved.image_size == (20, 30)
    with pytest.raises(ValueError, match="image sizes differ"):
        Instances.cat([_instances(), Instances((1, 1), scores=torch.zeros(1), pred_boxes=Boxes(torch.zeros(1, 4)), names=["a"])])


def test_empty_instances_has_no_len():
    with pytest.raises(NotImplementedError):
        len(Instances((2, 2)))
