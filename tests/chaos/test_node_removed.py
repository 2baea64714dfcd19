"""Fault 2: a node of a multi-node ``ray.cluster_utils.Cluster`` removed while its worker runs a unit
(a preempted GPU node). The sweep finishes on the remaining nodes, every planned unit is committed
exactly once, and the values equal the undisturbed baseline's."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.store import open_store
from tests.chaos.chaos_helpers import (
    assert_same_values, busy_workers, committed_rows, exactly_once, finish, launch_in_thread, processes_running, wait_for,
)
from tests.chaos.conftest import FIGURES


@pytest.fixture
def three_node_cluster(baseline):  # the baseline first: it runs on the session's local Ray
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # workers only on worker nodes
    for _ in range(3):  # 2 worker actors on 3 one-CPU nodes: a spare for the restarted actor
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _node_running_a_unit(cluster, old: set[int]):
    """The worker node whose raylet started a worker that has been running a unit for ≥ 0.1 s."""
    busy = busy_workers(old)
    raylets = {n.all_processes["raylet"][0].process.pid: n for n in cluster.worker_nodes}
    for pid in busy:
        try:
            node = raylets.get(_parent(pid))
        except (OSError, IndexError, ValueError):
            continue
        if node is not None:
            return node
    return None


def test_node_removed_mid_sweep(baseline, three_node_cluster, tmp_path) -> None:
    config, the_plan, want = baseline
    config = config.model_copy(update={"runtime": config.runtime.model_copy(update={"address": "auto"})})
    store = open_store(str(tmp_path / "results"))
    old = set(processes_running("ray::"))
    t0 = time.monotonic()
    thread, result = launch_in_thread(config, store, "node-removed")
    node = wait_for(lambda: _node_running_a_unit(three_node_cluster, old), 120, "a node whose worker runs a unit")
    removed_at = time.monotonic()
    three_node_cluster.remove_node(node, allow_graceful=False)
    info = finish(thread, result)
    seconds = time.monotonic() - t0
    assert info["complete"]
    losses = sum(s["worker_losses"] for s in info["stages"].values())
    assert losses >= 1  # the unit on the removed node came back as a lost worker and was resubmitted
    counts = exactly_once(store, "node-removed", the_plan)
    assert_same_values(committed_rows(store, "node-removed"), want)
    FIGURES["node removed"] = {**counts, "worker_losses": losses, "seconds": round(seconds, 1),
                               "recovery_s": round(time.monotonic() - removed_at, 1)}
