"""SyncBatchNorm over 2 gloo ranks equals BatchNorm2d over the whole batch: outputs, gradients, statistics."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from maskrcnn_multi.modeling.layers import SyncBatchNorm


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, port: int, features: torch.Tensor, weights: torch.Tensor, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        norm = SyncBatchNorm(features.shape[1])
        with torch.no_grad():
            norm.weight.copy_(weights[0])
            norm.bias.copy_(weights[1])
        # Ranks hold different batch sizes (3 and 1 images) to check the count weighting.
        shard = features[:3] if rank == 0 else features[3:]
        shard = shard.clone().requires_grad_(True)
        output = norm(shard)
        (output * torch.arange(output.numel(), dtype=output.dtype).view_as(output).sin()).sum().backward()
        # numpy arrays travel by value: a tensor would be shared through a file descriptor that
        # dies with this process if it exits before the parent has read the queue
        results = (output.detach(), shard.grad, norm.weight.grad, norm.running_mean, norm.running_var)
        queue.put((rank, *(tensor.numpy() for tensor in results)))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("offset, spread, atol, weight_grad_atol", [(0.0, 1.0, 1e-5, 1e-5), (500.0, 0.05, 2e-3, 0.2)],
                         ids=["centred", "large-mean"])
def test_two_ranks_match_batch_norm_on_the_whole_batch(offset, spread, atol, weight_grad_atol):
    # large-mean: E[x^2] - E[x]^2 in fp32 would lose the variance (2.5e-3) in the rounding of 2.5e5;
    # fp32 inputs near 500 carry 3e-5 of their own, so x - mean is good to ~1e-3 relative: atol 2e-3
    features = (torch.randn(4, 5, 6, 7, dtype=torch.float64) * spread + offset).float()
    weights = torch.randn(2, 5)
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    port = _free_port()
    processes = [context.Process(target=_rank_main, args=(rank, port, features, weights, queue)) for rank in range(2)]
    for process in processes:
        process.start()
    results = {item[0]: [torch.from_numpy(array) for array in item[1:]] for item in (queue.get() for _ in processes)}
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    reference = nn.BatchNorm2d(5)
    with torch.no_grad():
        reference.weight.copy_(weights[0])
        reference.bias.copy_(weights[1])
    whole = features.clone().requires_grad_(True)
    expected = reference(whole)
    (expected * torch.cat([torch.arange(expected[:3].numel(), dtype=expected.dtype).view_as(expected[:3]).sin(),
                           torch.arange(expected[3:].numel(), dtype=expected.dtype).view_as(expected[3:]).sin()])
     ).sum().backward()

    output = torch.cat([results[0][0], results[1][0]])
    input_grad = torch.cat([results[0][1], results[1][1]])
    torch.testing.assert_close(output, expected.detach(), rtol=1e-4, atol=atol)
    torch.testing.assert_close(input_grad, whole.grad, rtol=1e-4, atol=atol)
    # Each rank's weight gradient is its own share; DDP sums them (then averages over ranks).
    torch.testing.assert_close(results[0][2] + results[1][2], reference.weight.grad, rtol=1e-4, atol=weight_grad_atol)
    for rank in range(2):
        torch.testing.assert_close(results[rank][3], reference.running_mean, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(results[rank][4], reference.running_var, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_outside_distributed_runs_it_is_batch_norm(dtype):
    sync_norm, batch_norm = SyncBatchNorm(4).to(dtype), nn.BatchNorm2d(4).to(dtype)
    features = torch.randn(2, 4, 3, 3).to(dtype)
    torch.testing.assert_close(sync_norm(features), batch_norm(features))
