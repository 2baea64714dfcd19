"""cluster.yaml passes Ray's own validation; a multi-node cluster with logical GPUs runs the sweep."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"


def test_cluster_yaml_is_valid_for_the_ray_launcher() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load(CLUSTER_YAML.read_text())
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    workers = config["available_node_types"]["gpu_worker"]
    assert workers["resources"]["GPU"] == 1
    for node in config["available_node_types"].values():  # S3 access on every node, not only the head
        assert node["node_config"]["IamInstanceProfile"]["Name"]
    text = CLUSTER_YAML.read_text().lower()
    assert "aws_secret_access_key" not in text and "secretkey" not in text


def test_a_broken_cluster_yaml_is_rejected() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load(CLUSTER_YAML.read_text())
    raw["available_node_types"]["gpu_worker"]["resources"] = {"GPU": "one"}
    with pytest.raises(Exception):
        validate_config(prepare_config(raw))


@pytest.fixture
def gpu_cluster():
    """Head + 2 worker nodes with 2 logical GPUs each (no real GPU needed)."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=2, num_gpus=2)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_each_worker_actor_gets_its_own_gpu(gpu_cluster, tmp_path, mini_roots, mini_library) -> None:
    import ray

    from orchestrator.ray_runner import RayRunner, WorkerSpec, cluster_workers
    from orchestrator.store import open_store
    from orchestrator.sweep import launch
    from tests.orchestrator.sweep_helpers import expected_rows, plan_for, read_table, small_config

    n, gpus = cluster_workers(None, 1.0)
    assert (n, gpus) == (4, 1.0)
    config = small_config(mini_roots, mini_library, address="auto")
    store = open_store(str(tmp_path / "results"))
    runner = RayRunner(WorkerSpec(lambda: (None, None), num_gpus=1.0), n)
    infos = ray.get([a.info.remote() for a in runner.actors])
    runner.close()
    ids = [(i["node"], tuple(i["gpu_ids"])) for i in infos]
    assert len(set(ids)) == 4 and all(len(g) == 1 for _, g in ids)
    assert len({node for node, _ in ids}) == 2
    info = launch(config, store, run_id="multi", show_progress=False)
    assert info["complete"]
    want = expected_rows(plan_for(config, mini_library))
    assert read_table(store, "multi", "heads").num_rows == want["heads"]
