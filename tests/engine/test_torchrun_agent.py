"""engine/torchrun_agent.py: how ranks that ended under torchrun's agent are reported, and the bounded
wait for the master. The agent runs here, in the test process, on tiny scripts (no torch import)."""
import signal
import socket
import time

import pytest
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

from maskrcnn_multi.config import UserError
from maskrcnn_multi.engine.launch import parse_dist_url
from maskrcnn_multi.engine.torchrun_agent import RanksFailedError, _classify, run_torchrun, wait_for_master


def _agent(tmp_path, body, nproc=2, nnodes=1, node_rank=0, timeout_s=20):
    """run_torchrun on a script holding ``body``, on a free local port."""
    script = tmp_path / "rank.py"
    script.write_text("import os, sys\n" + body + "\n")
    host, port = parse_dist_url("auto")
    args = [f"--nproc_per_node={nproc}", f"--nnodes={nnodes}", f"--node_rank={node_rank}",
            f"--master_addr={host}", f"--master_port={port}", f"--rdzv-conf=timeout={timeout_s}",
            "--monitor-interval=0.1", str(script)]
    run_torchrun(args, host, port, node_rank, nnodes, nproc * nnodes, timeout_s, "MASKRCNN_DIST_TIMEOUT")
    return port


def test_exit_codes_are_classified():
    assert _classify({0: 2, 1: 2}) == "user"
    assert _classify({0: -signal.SIGTERM, 1: 2}) == "user"  # rank 0 stopped by the agent
    assert _classify({0: 130, 1: -signal.SIGTERM}) == "interrupted"
    assert _classify({0: 1, 1: 2}) == "bug"
    assert _classify({0: -signal.SIGSEGV}) == "bug"
    assert _classify({0: -signal.SIGTERM}) == "bug"  # nobody stopped on their own


def test_ranks_that_succeed_return_none(tmp_path):
    assert _agent(tmp_path, "assert os.environ['WORLD_SIZE'] == '2'") > 0


def test_ranks_stopping_on_a_user_error_are_one_user_error(tmp_path):
    with pytest.raises(RanksFailedError, match=r"rank\(s\) [01](, 1)? of 2 stopped on the error printed above"):
        _agent(tmp_path, "sys.exit(2)")


def test_one_rank_with_a_user_error_while_the_other_is_stopped(tmp_path):
    body = "import time\nif os.environ['RANK'] == '1': sys.exit(2)\ntime.sleep(60)"
    with pytest.raises(RanksFailedError, match=r"rank\(s\) 1 of 2 stopped"):
        _agent(tmp_path, body)


def test_a_crashing_rank_keeps_torchruns_report(tmp_path):
    with pytest.raises(ChildFailedError) as raised:
        _agent(tmp_path, "sys.exit(3 if os.environ['RANK'] == '0' else 0)")
    assert {failure.exitcode for failure in raised.value.failures.values()} == {3}


def test_interrupted_ranks_are_a_keyboard_interrupt(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _agent(tmp_path, "sys.exit(130)")


def test_signal_handlers_are_put_back(tmp_path):
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    _agent(tmp_path, "pass", nproc=1)
    assert {number: signal.getsignal(number) for number in before} == before


def test_a_machine_that_never_joins_is_named_after_the_timeout(tmp_path):
    """Machine 0 of 2 whose machine 1 never comes: one UserError naming the master and the timeout."""
    start = time.monotonic()
    with pytest.raises(UserError, match=r"machine 0 of 2: rendezvous with the master at 127\.0\.0\.1:\d+ "
                                        r"\(--dist-url\) failed within 2s \(MASKRCNN_DIST_TIMEOUT\)"):
        _agent(tmp_path, "pass", nproc=1, nnodes=2, timeout_s=2)
    assert time.monotonic() - start < 30


def test_wait_for_master_gives_up_after_the_timeout():
    _, port = parse_dist_url("auto")  # nothing listens there
    start = time.monotonic()
    with pytest.raises(UserError, match=rf"machine 1: no master answered at 127\.0\.0\.1:{port} \(--dist-url\) "
                                        r"within 1s \(MASKRCNN_DIST_TIMEOUT\)"):
        wait_for_master("127.0.0.1", port, 1, 1, "MASKRCNN_DIST_TIMEOUT")
    assert time.monotonic() - start < 10


def test_wait_for_master_returns_once_it_listens():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as master:
        master.bind(("127.0.0.1", 0))
        master.listen(1)
        wait_for_master("127.0.0.1", master.getsockname()[1], 5, 1, "MASKRCNN_DIST_TIMEOUT")


def test_wait_for_master_names_a_host_that_does_not_resolve():
    with pytest.raises(UserError, match=r"--dist-url host 'no-such-host\.invalid' cannot be resolved"):
        wait_for_master("no-such-host.invalid", 29500, 5, 1, "MASKRCNN_DIST_TIMEOUT")
