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


# -- every command's options: unknown names, wrong types and ranges, missing or blocked files --------------

def _cli_fails(args: list[str], *needles: str) -> str:
    """A clean refusal: non-zero exit, no traceback, the message (one line, after click's usage lines for
    option-type errors) names what is wrong."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (1, 2), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an uncaught exception
    assert "Traceback" not in result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1, result.output
    for needle in needles:
        assert needle in error[0], result.output
    return error[0]


OPTION_CASES = {  # name: (arguments, needles); {d}: an existing folder, {f}: an existing file
    "embed unknown probe": (["embed", "{d}", "--probe", "nosuch", "--out", "{d}/o.parquet"],
                            ("unknown probe 'nosuch'", "resnet34", "tiny_resnet")),
    "pretrain-probe unknown probe": (["pretrain-probe", "{d}", "--probe", "nosuch", "--out", "{d}/w.pt"],
                                     ("unknown probe 'nosuch'", "resnet34")),
    "embed unknown device": (["embed", "{d}", "--device", "gpu0", "--out", "{d}/o.parquet"], ("--device", "cpu")),
    "embed CUDA device absent": (["embed", "{d}", "--device", "cuda:99", "--out", "{d}/o.parquet"],
                                 ("no such CUDA device", "--device cpu")),
    "recommend unknown device": (["recommend", "{d}", "--run-id", "r", "--device", "nosuch"], ("--device",)),
    "pretrain-probe unknown device": (["pretrain-probe", "{d}", "--device", "nosuch", "--out", "{d}/w.pt"],
                                      ("--device",)),
    "embed unknown method": (["embed", "{d}", "--method", "exact", "--out", "{d}/o.parquet"], ("--method", "montecarlo")),
    "embed image size 0": (["embed", "{d}", "--image-size", "0", "--out", "{d}/o.parquet"], ("--image-size",)),
    "embed max samples 0": (["embed", "{d}", "--max-samples", "0", "--out", "{d}/o.parquet"], ("--max-samples",)),
    "embed Fisher samples not a number": (["embed", "{d}", "--fisher-samples", "many", "--out", "{d}/o.parquet"],
                                          ("--fisher-samples", "many")),
    "embed missing folder": (["embed", "{d}/nowhere", "--out", "{d}/o.parquet"], ("DATASET_DIR", "does not exist")),
    "embed missing probe weights": (["embed", "{d}", "--probe-weights", "{d}/none.pt", "--out", "{d}/o.parquet"],
                                    ("--probe-weights", "does not exist")),
    "pretrain-probe 0 epochs": (["pretrain-probe", "{d}", "--epochs", "0", "--out", "{d}/w.pt"], ("--epochs",)),
    "pretrain-probe negative lr": (["pretrain-probe", "{d}", "--lr", "-1", "--out", "{d}/w.pt"], ("--lr",)),
    "pretrain-probe batch size 0": (["pretrain-probe", "{d}", "--batch-size", "0", "--out", "{d}/w.pt"],
                                    ("--batch-size",)),
    "pretrain-probe --out under a file": (["pretrain-probe", "{d}", "--out", "{f}/w.pt"], ("File exists",)),
    "report unknown method": (["report", "--results", "{d}", "--run-id", "r", "--method", "exact", "--out", "{d}/o"],
                              ("--method", "montecarlo")),
    "report bootstrap not a number": (["report", "--results", "{d}", "--run-id", "r", "--bootstrap", "many",
                                       "--out", "{d}/o"], ("--bootstrap",)),
    "report bootstrap 0": (["report", "--results", "{d}", "--run-id", "r", "--bootstrap", "0", "--out", "{d}/o"],
                           ("--bootstrap", "x>=10")),
    "report --out is a file": (["report", "--results", "{d}", "--run-id", "r", "--out", "{f}"], ("--out", "is a file")),
    "report without --run-id": (["report", "--results", "{d}", "--out", "{d}/o"], ("--run-id",)),
    "recommend unknown selector": (["recommend", "{d}", "--run-id", "r", "--by", "closest"], ("--by",)),
    "launch workers not a number": (["launch", "--mini", "--workers", "many", "--dry-run"], ("--workers",)),
    "launch 0 workers": (["launch", "--mini", "--workers", "0", "--dry-run"], ("runtime.workers", "got 0")),
    "launch unknown runner": (["launch", "--mini", "--runner", "slurm", "--dry-run"], ("--runner",)),
    "launch missing config file": (["launch", "--config", "{d}/none.yaml", "--dry-run"], ("--config", "does not exist")),
    "library nothing named": (["library", "--results", "{d}/lib"], ("--cub200", "--mini")),
    "library unknown image check": (["library", "--mini", "--verify-images", "all"], ("--verify-images",)),
    "library missing dataset folder": (["library", "--cub200", "{d}/nowhere"], ("--cub200", "does not exist")),
    "mini-data OUT_DIR is a file": (["mini-data", "{f}"], ("OUT_DIR", "is a file")),
    "mini-data scale 0": (["mini-data", "{d}/m", "--scale", "0"], ("--scale",)),
    "unknown command": (["lunch"], ("No such command 'lunch'", "launch")),
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_bad_options_are_one_clean_line(tmp_path: Path, case: str) -> None:
    args, needles = OPTION_CASES[case]
    (tmp_path / "file").write_text("x")
    _cli_fails([a.format(d=tmp_path, f=tmp_path / "file") for a in args], *needles)


def test_report_out_under_a_file_is_one_clean_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    _cli_fails(["report", "--results", str(tmp_path / "results"), "--run-id", "r", "--out", str(tmp_path / "file" / "o")],
               "Not a directory")


def test_launch_with_an_unknown_probe_in_the_config_lists_the_probes(tmp_path: Path, mini_roots) -> None:
    path = _config(tmp_path, mini_roots, embeddings={"probe": "resnet1000"})
    _cli_fails(["launch", "--config", str(path), "--dry-run"], "embeddings.probe", "'resnet1000'", "resnet34")


def test_probe_weights_that_are_not_a_state_dict(tmp_path: Path, mini_library) -> None:
    from tests.orchestrator.sweep_helpers import image_folder

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a state dict")
    _cli_fails(["embed", str(image_folder(tmp_path, mini_library)), "--probe", "tiny_resnet", "--probe-weights",
                str(junk), "--out", str(tmp_path / "o.parquet")], "junk.pt", "cannot be read")
