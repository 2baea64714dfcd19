"""The ``task2vec-study`` preset: its design on a full-scale library, its layering, and its behaviour on a
small library; plus the rules it is written with (``orchestrator/meta_tasks.py``)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.config import ExpertRule, MetaTaskConfig, load_config
from orchestrator.meta_tasks import pick_tasks, resolve, rule_experts
from orchestrator.plan import plan
from orchestrator.presets import load_preset
from tasks.spec import TaskSpec

ROOT = Path(__file__).resolve().parents[2]


def _task(task_id: str, n_train: int = 10, taxonomy: tuple[str, ...] = ()) -> TaskSpec:
    source, kind = task_id.split("/")[:2]
    binary = source in ("imat2018", "deepfashion")
    return TaskSpec(task_id, source, "binary_label" if binary else "species_in_order", task_id.split("/")[-1],
                    ("a", "b"), (1,) if binary else (1, 2), n_train, 5, "test", source if binary else task_id,
                    taxonomy)


def _library() -> list[TaskSpec]:
    inat = [_task(f"inat2018/order/O{i}", 100 + i, ("K", "P", f"C{i % 4}", f"O{i}")) for i in range(20)]
    cub = [_task(f"cub200/order/B{i}", 50, ("Animalia", "Chordata", "Aves", f"B{i}")) for i in range(4)]
    binary = [_task(f"deepfashion/{k}/a{i}") for k in ("texture", "shape") for i in range(5)]
    binary += [_task(f"imat2018/color/c{i}") for i in range(3)]
    return inat + cub + binary


def test_a_pick_is_independent_of_order_and_a_larger_pick_extends_it() -> None:
    tasks = _library()
    small = pick_tasks(tasks, ["inat2018", "cub200"], 5, seed=3)
    assert pick_tasks(tasks[::-1], ["inat2018", "cub200"], 5, seed=3) == small
    assert pick_tasks(tasks, ["inat2018", "cub200"], 12, seed=3)[:5] == small
    assert pick_tasks(tasks, ["inat2018", "cub200"], 5, seed=4) != small


def test_a_per_source_pick_shares_the_count_and_says_when_short() -> None:
    notes: list[str] = []
    chosen = pick_tasks(_library(), "all", 10, seed=0, per_source=True, notes=notes)
    by_source = {s: sum(t.startswith(s) for t in chosen) for s in ("cub200", "deepfashion", "imat2018", "inat2018")}
    assert by_source == {"cub200": 3, "deepfashion": 3, "imat2018": 2, "inat2018": 2}
    assert notes == []
    assert len(pick_tasks(_library(), ["cub200"], 9, seed=0, notes=notes)) == 4 and "fewer than the 9" in notes[0]


def test_rules_choose_source_taxon_and_kind_experts() -> None:
    tasks = _library()
    assert set(rule_experts(ExpertRule(by="source", sources=["inat2018", "cub200"]), tasks)) == {
        "expert/source:inat2018", "expert/source:cub200"}
    taxa = rule_experts(ExpertRule(by="taxon", sources=["inat2018"], depth=2, count=2), tasks)
    assert list(taxa) == ["expert/taxon:inat2018/C3", "expert/taxon:inat2018/C2"]  # most training images first
    assert taxa["expert/taxon:inat2018/C3"] == tuple(sorted(f"inat2018/order/O{i}" for i in (3, 7, 11, 15, 19)))
    kinds = rule_experts(ExpertRule(by="kind", sources=["imat2018", "deepfashion"]), tasks)
    assert sorted(e.split("/")[1] + "/" + e.split("/")[2] for e in kinds) == [
        "deepfashion/shape", "deepfashion/texture", "imat2018/color"]
    assert all(len(members) == 1 for members in kinds.values())


def test_a_meta_task_with_own_experts_resolves_to_its_tasks_experts() -> None:
    tasks = _library()
    meta = MetaTaskConfig(name="m", task_sources=["inat2018"], tasks=4, seed=1, experts="own")
    trainings = {f"expert/{t}": (t,) for t in pick_tasks(tasks, ["inat2018"], 10, seed=1)}
    resolved = resolve(meta, tasks, trainings, "generic/p")
    assert len(resolved.tasks) == 4 and resolved.experts[0] == "generic/p"
    assert resolved.experts[1:] == tuple(f"expert/{t}" for t in resolved.tasks)


def test_the_preset_layers_under_the_config_file_and_flags(tmp_path: Path) -> None:
    paths = tmp_path / "paths.yaml"
    paths.write_text(yaml.safe_dump({"datasets": {"mini": True}, "heads": {"pairs": "meta_tasks"},
                                     "embeddings": {"max_samples": 50}}))
    config = load_config(paths, {"runtime": {"workers": 3}}, preset=load_preset("task2vec-study"))
    assert config.heads.pairs == "meta_tasks"  # the file wins over the preset
    assert config.embeddings.methods == ["montecarlo", "variational"]  # the preset's, merged key by key
    assert config.embeddings.max_samples == 50 and config.runtime.workers == 3
    assert [m.name for m in config.report.meta_tasks] == ["iNat+CUB", "Mixed"]


def test_unknown_preset_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["launch", "--preset", "nope", "--dry-run"])
    assert result.exit_code == 2 and "task2vec-study" in result.output


def test_the_preset_plans_on_the_mini_library_and_says_what_falls_short(tmp_path: Path, mini_roots) -> None:
    paths = tmp_path / "paths.yaml"
    paths.write_text(yaml.safe_dump({"datasets": {k: str(v) for k, v in mini_roots.items()}}))
    result = CliRunner().invoke(main, ["launch", "--preset", "task2vec-study", "--config", str(paths), "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = _counts(result.output)
    assert lines["tasks"] > 0 and lines["head pairs"] == lines["tasks"] * lines["experts"]  # dense
    assert lines["embeddings"] == 3 * lines["tasks"]
    assert "note: " in result.output and "fewer than" in result.output  # 129 per-task experts asked
    assert "dense heads" in result.output


def test_the_preset_plan_on_the_mini_library_has_both_meta_tasks(mini_library) -> None:
    config = load_config(None, {"datasets": {"mini": True}}, preset=load_preset("task2vec-study"))
    the_plan = plan(config, mini_library.tasks)
    metas = {m.name: m for m in the_plan.meta_tasks}
    assert set(metas) == {"iNat+CUB", "Mixed"}
    assert all(e in the_plan.experts for m in metas.values() for e in m.experts)
    assert {t.split("/")[0] for t in metas["Mixed"].tasks} == {"inat2018", "cub200", "imat2018", "deepfashion"}


def _counts(output: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"^(tasks|experts|head pairs|embeddings): (\d+)$", output, re.M)}


@pytest.mark.slow
def test_the_preset_dry_run_on_full_scale_manifests(tmp_path: Path) -> None:
    """The study's unit counts from the real-size manifests of the project's generators (no images)."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_library import generate

    generate(tmp_path)
    paths = tmp_path / "paths.yaml"
    paths.write_text(yaml.safe_dump({"datasets": {"inat2018": str(tmp_path / "inat2018"),
                                                  "cub200": str(tmp_path / "cub200" / "CUB_200_2011"),
                                                  "imat2018": str(tmp_path / "imat2018"),
                                                  "deepfashion": str(tmp_path / "deepfashion")},
                                     "library": {"verify_images": "none"}}))
    out = CliRunner().invoke(main, ["launch", "--preset", "task2vec-study", "--config", str(paths), "--dry-run"])
    assert out.exit_code == 0, out.output
    assert _counts(out.output) == {"tasks": 1458, "experts": 156, "head pairs": 1458 * 156, "embeddings": 3 * 1458}
    assert "note:" not in out.output  # nothing falls short at full scale
    ratio = re.search(r"whole sweep ([\d.]+)x", out.output)
    assert ratio and float(ratio.group(1)) <= 2.0, out.output  # why dense is the preset's default


def test_the_preset_on_one_binary_source_plans_and_says_which_meta_task_is_empty(mini_library) -> None:
    config = load_config(None, {"datasets": {"mini": True}, "tasks": {"sources": ["deepfashion"]}},
                         preset=load_preset("task2vec-study"))
    the_plan = plan(config, mini_library.tasks)
    assert {t.source for t in the_plan.tasks} == {"deepfashion"} and the_plan.stages["heads"]
    assert any("meta-task iNat+CUB: no task" in n for n in the_plan.notes)
    assert any("rule by source" in n for n in the_plan.notes)
    mixed = next(m for m in the_plan.meta_tasks if m.name == "Mixed")
    assert mixed.tasks and len(mixed.experts) > 1  # the DeepFashion kind experts
