"""The cluster path as a user takes it: ``ray start`` a head and a second node on 127.0.0.1, then
``ray job submit -- python -m orchestrator.cli launch --address auto`` of a small sweep writing to the
SeaweedFS server; the job must succeed and its tables hold every planned row.

Each node has one CPU and the sweep asks for two one-CPU workers, so one worker runs on each node.
The cluster runs with token authentication (Ray 2.60's default for ``ray start``); see
``tests/fixtures/ray_cluster.py`` for how it is started and stopped without touching other Rays.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from orchestrator.commit import RunRecorder
from orchestrator.store import open_store
from tests.fixtures.ray_cluster import LocalRayCluster
from tests.orchestrator.sweep_helpers import expected_rows, plan_for, small_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_ray_job_submit_runs_a_sweep_on_a_two_node_cluster(tmp_path, s3_server, mini_roots, mini_library) -> None:
    config = small_config(mini_roots, mini_library, workers=2, cpus_per_worker=1)
    config_file = tmp_path / "sweep.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    uri = s3_server.uri(f"ray-job/{uuid.uuid4().hex[:8]}")
    # what every node of a user's cluster needs in its environment: the code and the S3 credentials
    env = dict(os.environ, PYTHONPATH=str(ROOT), AWS_ACCESS_KEY_ID=s3_server.access_key,
               AWS_SECRET_ACCESS_KEY=s3_server.secret_key, AWS_ENDPOINT_URL_S3=s3_server.endpoint,
               AWS_REGION=s3_server.region)
    with LocalRayCluster(tmp_path / "ray", env=env, cpus=(1, 1)) as cluster:
        job = subprocess.run(
            cluster.submit_command(["launch", "--config", str(config_file), "--results", uri, "--address", "auto",
                                    "--run-id", "job"], submission_id=f"sweep-{uuid.uuid4().hex[:8]}"),
            env=cluster.env, capture_output=True, text=True, timeout=900)
        assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-2000:]
        ours = cluster._descendants()
    time.sleep(2)
    assert not [p for p in ours if _alive(p)], "the cluster's processes outlived it"
    store = open_store(uri, **s3_server.store_kwargs())
    info = store.read_json("job/run.json")
    assert info["complete"] and store.exists("job/_SUCCESS")
    recorder = RunRecorder(store, "job")
    for table, rows in expected_rows(plan_for(config, mini_library)).items():
        assert recorder.read_committed(table, stage=table).num_rows == rows, table


def _alive(pid: int) -> bool:
    """A live process (not a zombie waiting for its parent to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
