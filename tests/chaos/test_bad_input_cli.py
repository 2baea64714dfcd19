"""Bad config, CLI and results-location input: a clear message (what, where, what to do), exit 1,
no traceback, and never a credential echoed. Manifest/image cases live in tests/tasks/."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.store import open_store
from orchestrator.sweep import _open_run


def _config(tmp_path: Path, mini_roots, **sections) -> Path:
    data = {"datasets": {"cub200": str(mini_roots["cub200"])}, **sections}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _fails(args: list[str], *needles: str, env: dict | None = None) -> str:
    result = CliRunner().invoke(main, ["launch", *args], env=env)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output
    return result.output


CONFIG_CASES = {
    "unknown section": ({"trainer": {"epochs": 1}}, "trainer"),
    "wrong type": ({"heads": {"epochs": "many"}}, "heads.epochs"),
    "zero workers": ({"runtime": {"workers": 0}}, "runtime.workers"),
    "image size out of range": ({"runtime": {"image_size": 8}}, "runtime.image_size"),
    "momentum out of range": ({"experts": {"momentum": 1.5}}, "experts.momentum"),
    "no Fisher method": ({"embeddings": {"methods": []}}, "embeddings.methods"),
    "unknown Fisher method": ({"embeddings": {"methods": ["exact"]}}, "embeddings.methods"),
    "sample of zero tasks": ({"tasks": {"sample": 0}}, "tasks.sample"),
    "unknown task id": ({"tasks": {"include": ["cub200/order/Nope"]}}, "tasks.include"),
    "unknown expert task": ({"experts": {"train_on": ["cub200/order/Nope"]}}, "experts.train_on"),
    "empty task selection": ({"tasks": {"sources": ["inat2018"]}}, "task selection is empty"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config_values_are_named(tmp_path: Path, mini_roots, case: str) -> None:
    sections, needle = CONFIG_CASES[case]
    _fails(["--config", str(_config(tmp_path, mini_roots, **sections)), "--dry-run"], needle)


@pytest.mark.parametrize("text, needle", [("heads: [epochs: 3", "not valid YAML"),
                                          ("- just\n- a list\n", "must be a mapping")])
def test_malformed_config_file(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    _fails(["--config", str(path), "--dry-run"], str(path), needle)


def test_dataset_root_that_is_not_a_folder(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"datasets": {"cub200": str(tmp_path / "nowhere")}}))
    _fails(["--config", str(path), "--dry-run"], "datasets.cub200", "not a folder")


def test_results_folder_that_cannot_be_written(tmp_path: Path, mini_roots) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the results folder should be: fails even as root
    _fails(["--config", str(_config(tmp_path, mini_roots)), "--results", str(blocker / "results"),
            "--runner", "inline"], "cannot write to the results folder", "--results")


def test_results_on_a_bucket_that_does_not_exist(tmp_path: Path, mini_roots, s3_server) -> None:
    env = {"AWS_ACCESS_KEY_ID": s3_server.access_key, "AWS_SECRET_ACCESS_KEY": s3_server.secret_key}
    out = _fails(["--config", str(_config(tmp_path, mini_roots)), "--results", "s3://no-such-bucket/x",
                  "--s3-endpoint", s3_server.endpoint, "--runner", "inline"], "does not exist", "aws s3 mb", env=env)
    assert s3_server.secret_key not in out


def test_wrong_s3_credentials(tmp_path: Path, mini_roots, s3_server) -> None:
    env = {"AWS_ACCESS_KEY_ID": "wrongkey", "AWS_SECRET_ACCESS_KEY": "wrongsecret-XYZ"}
    out = _fails(["--config", str(_config(tmp_path, mini_roots)), "--results", s3_server.uri("bad-creds"),
                  "--s3-endpoint", s3_server.endpoint, "--runner", "inline"], "refused", "AWS_ACCESS_KEY_ID", env=env)
    assert "wrongsecret-XYZ" not in out


@pytest.mark.parametrize("flag", ["--results", "--s3-endpoint"])
def test_credentials_inside_a_uri_are_refused_without_echo(tmp_path: Path, mini_roots, flag: str) -> None:
    secret = "s3cr3t-P4ss"
    args = {"--results": ["--results", f"s3://AKIAX:{secret}@sweep/x"],
            "--s3-endpoint": ["--results", "s3://sweep/x", "--s3-endpoint", f"http://AKIAX:{secret}@127.0.0.1:1"]}[flag]
    out = _fails(["--config", str(_config(tmp_path, mini_roots)), *args, "--runner", "inline"], "credentials")
    assert secret not in out


def test_resume_with_a_changed_config_names_the_section(tmp_path: Path, mini_roots) -> None:
    first = _config(tmp_path, mini_roots)
    store = open_store(str(tmp_path / "results"))
    _open_run(store, "r1", load_config(first), resume=False)  # the run as it was started
    changed = _config(tmp_path, mini_roots, heads={"epochs": 7})
    _fails(["--config", str(changed), "--results", str(tmp_path / "results"), "--resume", "r1",
            "--runner", "inline"], "--resume r1", "heads", "same config")


def test_new_run_over_an_existing_run_id_is_refused(tmp_path: Path, mini_roots) -> None:
    cfg = _config(tmp_path, mini_roots)
    _open_run(open_store(str(tmp_path / "results")), "r1", load_config(cfg), resume=False)
    _fails(["--config", str(cfg), "--results", str(tmp_path / "results"), "--run-id", "r1", "--runner", "inline"],
           "already exists", "--resume r1")
