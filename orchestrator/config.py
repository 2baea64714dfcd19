"""The sweep configuration: typed, validated, defaults for everything, unknown keys rejected.

Composed from per-stage sections; a YAML file overrides the defaults and CLI flags override the file.
The effective configuration is written to ``run.json`` with the results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from experts.task2vec import Task2VecConfig
from experts.training import ExpertTrainConfig
from tasks.config import LibraryConfig
from tasks.errors import TaskSweepInputError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetsConfig(_Section):
    """Dataset roots; ``mini: true`` generates the mini datasets under ``mini_dir`` and uses all four."""

    inat2018: Path | None = None
    cub200: Path | None = None
    imat2018: Path | None = None
    deepfashion: Path | None = None
    mini: bool = False
    mini_dir: Path = Path("./mini-data")
    mini_seed: int = 0


class TaskSelection(_Section):
    """Which library tasks the sweep covers: sources, explicit ids, and/or a seeded random sample."""

    sources: list[Literal["inat2018", "cub200", "imat2018", "deepfashion"]] | Literal["all"] = "all"
    include: list[str] = Field(default_factory=list, description="explicit task ids (empty: every task of the sources)")
    sample: int | None = Field(None, ge=1, description="keep a random sample of this many tasks")
    seed: int = 0


class _FineTuneBudget(_Section):
    """Whole-network fine-tuning settings (``experts.training.ExpertTrainConfig``), shared by experts and transfer."""

    epochs: int = Field(3, ge=1, le=1000)
    lr: float = Field(0.01, gt=0, le=10)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0, le=1)
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    batch_size: int = Field(32, ge=1, le=4096)
    augmentation: bool = True

    def training_fields(self) -> dict:
        """The keys that decide a fine-tuning run."""
        return self.model_dump(mode="json", include=set(_FineTuneBudget.model_fields))

    def train_config(self, seed: int) -> ExpertTrainConfig:
        return ExpertTrainConfig(seed=seed, **self.training_fields())


class ExpertsConfig(_FineTuneBudget):
    """Which experts exist: the generic one (the probe itself) and experts fine-tuned on tasks/groups."""

    generic: bool = True
    # Each entry: a task id, or "source:<name>" for every selected task of a source (a task group).
    train_on: list[str] = Field(default_factory=list)
    # "all_selected": one expert per selected task (iNat/CUB style), capped by max_experts.
    per_task: bool = False
    max_experts: int | None = Field(None, ge=1)
    seed: int = 0


class HeadsConfig(_Section):
    """Which (expert, task) pairs get a linear head: all pairs, or an explicit list."""

    pairs: Literal["all"] | list[tuple[str, str]] = "all"
    epochs: int = Field(100, ge=1, le=100_000)
    lr: float = Field(0.01, gt=0, le=10)
    weight_decay: float = Field(1e-4, ge=0, le=1)
    task_chunk: int = Field(256, ge=1, description="heads trained together in one unit at most")
    seed: int = 0


class EmbeddingsConfig(_Section):
    probe: str = "resnet34"
    probe_weights: Path | None = None
    methods: list[Literal["montecarlo", "montecarlo_exact", "variational"]] = Field(default_factory=lambda: ["montecarlo"])
    domain: bool = True
    max_samples: int = Field(10_000, ge=1)
    fisher_samples: int | None = Field(None, ge=1, description="Fisher draws; default: Task2VecConfig's (2,560)")
    head_solver: Literal["sampled", "full_batch"] = Field(
        "full_batch", description="linear head: full_batch (deterministic) or sampled (the reference's draws)")
    fisher_sampling: Literal["replacement", "stratified"] = Field(
        "stratified", description="Fisher draws: stratified (each image in turn) or replacement (the reference's)")
    head_epochs: int = Field(10, ge=1, le=1000)
    batch_size: int = Field(64, ge=1, le=4096)
    seed: int = 0

    def task2vec_config(self) -> Task2VecConfig:
        """The Task2Vec settings every task of the run is embedded with (and ``recommend`` embeds with)."""
        return Task2VecConfig(max_samples=self.max_samples, batch_size=self.batch_size, head_epochs=self.head_epochs,
                              fisher_samples=self.fisher_samples or Task2VecConfig.fisher_samples,
                              head_solver=self.head_solver, fisher_sampling=self.fisher_sampling)

    @field_validator("methods")
    @classmethod
    def _methods_nonempty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("name at least one Fisher method")
        return v


class DistancesConfig(_Section):
    kinds: list[Literal["symmetric", "asymmetric", "taxonomic", "domain"]] = Field(
        default_factory=lambda: ["symmetric", "asymmetric", "taxonomic", "domain"]
    )
    alpha: float = Field(0.15, ge=0, le=10)


class TransferConfig(_FineTuneBudget):
    """Stages ``transfer_init`` and ``transfer``: the fine-tuning distance D_ft over chosen (source, target) pairs.

    ``mode``: ``off``; ``explicit`` (``pairs``); ``group`` (every ordered pair within each of ``groups``);
    ``nearest`` (per target, the ``k`` candidates nearest by d_asym plus ``k`` random ones, chosen once the
    distances are committed). Both sides of a pair fine-tune with the same budget and ``seeds``.
    """

    mode: Literal["off", "explicit", "group", "nearest"] = "off"
    pairs: list[tuple[str, str]] = Field(default_factory=list, description="[source_task, target_task] (explicit)")
    groups: list[str | list[str]] = Field(default_factory=list, description="source:<name> or a list of task ids")
    k: int = Field(1, ge=1, description="nearest: k nearest by d_asym and k random sources per target")
    candidates: list[str] = Field(default_factory=list, description="nearest: source tasks (empty: every selected task)")
    targets: list[str] = Field(default_factory=list, description="nearest: target tasks (empty: every selected task)")
    selection_seed: int = 0
    method: str | None = Field(None, description="nearest: the Fisher method whose d_asym ranks (default: the first)")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)


class RuntimeConfig(_Section):
    runner: Literal["ray", "inline"] = "ray"
    address: str = "local"
    workers: int | None = Field(None, ge=1, description="default: one per GPU, else one per 2 CPUs")
    cpus_per_worker: float = Field(1.0, gt=0)
    max_attempts: int = Field(3, ge=1, le=100)
    image_size: int = Field(224, ge=16, le=1024)
    feature_batch_size: int = Field(128, ge=1, le=8192)
    device: Literal["auto", "cpu", "cuda"] = "auto"


Source = Literal["inat2018", "cub200", "imat2018", "deepfashion"]


class MetaTaskConfig(_Section):
    """One meta-task of the selection table: target tasks and candidate experts, by source."""

    name: str
    task_sources: list[Source] | Literal["all"] = "all"
    # fine-tuned experts whose training tasks all come from these sources; the generic expert is always
    # a candidate (the "ImageNet" row)
    expert_sources: list[Source] | Literal["all"] = "all"


def _default_meta_tasks() -> list[MetaTaskConfig]:
    return [MetaTaskConfig(name="iNat+CUB", task_sources=["inat2018", "cub200"], expert_sources=["inat2018", "cub200"]),
            MetaTaskConfig(name="Mixed")]


class ReportConfig(_Section):
    """``orchestrate report``/``recommend``: meta-tasks and selection settings (docs/sweep.md)."""

    meta_tasks: list[MetaTaskConfig] = Field(default_factory=_default_meta_tasks)
    method: Literal["montecarlo", "montecarlo_exact", "variational"] = "montecarlo"
    selector: Literal["asymmetric", "symmetric"] = "asymmetric"
    bootstrap: int = Field(1000, ge=10)
    folds: int = Field(5, ge=2)
    seed: int = 0


class SweepConfig(_Section):
    datasets: DatasetsConfig = DatasetsConfig()
    library: LibraryConfig = LibraryConfig()
    tasks: TaskSelection = TaskSelection()
    experts: ExpertsConfig = ExpertsConfig()
    heads: HeadsConfig = HeadsConfig()
    embeddings: EmbeddingsConfig = EmbeddingsConfig()
    distances: DistancesConfig = DistancesConfig()
    transfer: TransferConfig = TransferConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    report: ReportConfig = ReportConfig()

    @model_validator(mode="after")
    def _some_dataset(self) -> "SweepConfig":
        d = self.datasets
        if not (d.mini or d.inat2018 or d.cub200 or d.imat2018 or d.deepfashion):
            raise ValueError("datasets: name at least one dataset root, or set mini: true")
        return self


def load_config(path: Path | None, overrides: dict | None = None) -> SweepConfig:
    """Defaults ← YAML file ← overrides (nested dicts, e.g. from CLI flags)."""
    data: dict = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            raise TaskSweepInputError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(data, dict):
            raise TaskSweepInputError(f"{path}: the top level must be a mapping of sections")
    for section, values in (overrides or {}).items():
        if isinstance(values, dict):
            data[section] = {**data.get(section, {}), **values}
        else:
            data[section] = values
    return SweepConfig.model_validate(data)
