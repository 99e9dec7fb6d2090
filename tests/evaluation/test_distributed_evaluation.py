"""Two gloo ranks: each evaluates its InferenceSampler shard; rank 0 gathers and scores everything."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from maskrcnn_multi.data import DatasetCatalog, InferenceSampler, register_coco_instances
from maskrcnn_multi.data.synthetic import generate_shapes_dataset
from maskrcnn_multi.evaluation import COCOEvaluator
from maskrcnn_multi.structures import Boxes, BoxMode, Instances


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _perfect_boxes(dataset_dict):
    annotations = dataset_dict["annotations"]
    boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations]
    return [{"instances": Instances((dataset_dict["height"], dataset_dict["width"]),
                                    pred_boxes=Boxes(torch.tensor(boxes).reshape(-1, 4)),
                                    scores=torch.ones(len(boxes)),
                                    pred_classes=torch.tensor([a["category_id"] for a in annotations]))}]


def _worker(rank, world_size, port, root, results):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        register_coco_instances("unit_dist_val", {}, os.path.join(root, "annotations", "instances_val.json"),
                                os.path.join(root, "val"))
        dicts = DatasetCatalog.get("unit_dist_val")
        evaluator = COCOEvaluator("unit_dist_val", tasks=("bbox",))
        evaluator.reset()
        shard = list(InferenceSampler(len(dicts)))
        for index in shard:
            evaluator.process([dicts[index]], _perfect_boxes(dicts[index]))
        output = evaluator.evaluate()
        results[rank] = (shard, output.get("bbox", {}).get("AP"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_gather_on_rank_0(tmp_path):
    root = generate_shapes_dataset(str(tmp_path / "shapes"), num_train=0, num_val=3, seed=4)
    results = mp.Manager().dict()
    mp.start_processes(_worker, args=(2, _free_port(), root, results), nprocs=2, start_method="fork")
    (shard0, ap0), (shard1, ap1) = results[0], results[1]
    assert shard0 + shard1 == [0, 1, 2]
    assert ap0 == pytest.approx(100.0) and ap1 is None
