"""The sweep configuration: typed, validated, defaults for everything, unknown keys rejected.

Composed from per-stage sections; a YAML file overrides the defaults and CLI flags override the file.
The effective configuration is written to ``run.json`` with the results.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from experts.heads import HeadTrainConfig
from experts.task2vec import Task2VecConfig
from experts.training import ExpertTrainConfig
from tasks.config import LibraryConfig
from tasks.errors import TaskSweepInputError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetsConfig(_Section):
    """Dataset roots (a folder, or ``s3://bucket/prefix``: read through the store layer); ``mini: true``
    generates the mini datasets under ``mini_dir`` and uses all four."""

    inat2018: Path | str | None = None
    cub200: Path | str | None = None
    imat2018: Path | str | None = None
    deepfashion: Path | str | None = None
    mini: bool = False
    mini_dir: Path = Path("./mini-data")
    mini_seed: int = 0

    @field_validator("inat2018", "cub200", "imat2018", "deepfashion", mode="before")
    @classmethod
    def _root(cls, v: object) -> object:
        """``s3://`` roots stay strings (a Path would fold the ``//``); anything else is a folder."""
        if v is None or (isinstance(v, str) and v.startswith("s3://")):
            return v
        return Path(v) if isinstance(v, (str, Path)) else v


class TaskSelection(_Section):
    """Which library tasks the sweep covers: sources, explicit ids, and/or a seeded random sample."""

    sources: list[Literal["inat2018", "cub200", "imat2018", "deepfashion"]] | Literal["all"] = "all"
    include: list[str] = Field(default_factory=list, description="explicit task ids (empty: every task of the sources)")
    sample: int | None = Field(None, ge=1, description="keep a random sample of this many tasks")
    seed: int = 0


# The compute dataclasses hold every default; a config section reads its defaults from them (one home each).
_FINE_TUNE = ExpertTrainConfig()
_HEADS = HeadTrainConfig()
_TASK2VEC = Task2VecConfig()


class _FineTuneBudget(_Section):
    """Whole-network fine-tuning settings (``experts.training.ExpertTrainConfig``), shared by experts and transfer."""

    epochs: int = Field(_FINE_TUNE.epochs, ge=1, le=1000)
    lr: float = Field(_FINE_TUNE.lr, gt=0, le=10)
    momentum: float = Field(_FINE_TUNE.momentum, ge=0, lt=1)
    weight_decay: float = Field(_FINE_TUNE.weight_decay, ge=0, le=1)
    schedule: Literal["cosine", "step", "constant"] = _FINE_TUNE.schedule
    batch_size: int = Field(_FINE_TUNE.batch_size, ge=1, le=4096)
    augmentation: bool = _FINE_TUNE.augmentation

    def training_fields(self) -> dict:
        """The keys that decide a fine-tuning run."""
        return self.model_dump(mode="json", include=set(_FineTuneBudget.model_fields))

    def train_config(self, seed: int) -> ExpertTrainConfig:
        return ExpertTrainConfig(seed=seed, **self.training_fields())


Source = Literal["inat2018", "cub200", "imat2018", "deepfashion"]


class ExpertRule(_Section):
    """Fine-tuned experts chosen by a rule over the selected tasks (``experts.rules``, a meta-task's ``experts``).

    ``by``: ``task``: one expert per task of ``sources``, the first ``count`` of a shuffle seeded by ``seed``
    (none: every task); ``source``: one group expert per source (the pooled classes of its multi-class tasks);
    ``taxon``: one group expert per taxon at ``depth`` of the taxonomy (0 kingdom, 1 phylum, 2 class), the
    ``count`` taxa with the most training images; ``kind``: one expert per kind of binary task (the middle
    part of its id, e.g. ``texture`` in ``deepfashion/texture/floral``) on one task of that kind drawn with
    ``seed`` (binary tasks cannot be pooled).
    """

    by: Literal["task", "source", "taxon", "kind"] = "task"
    sources: list[Source] | Literal["all"] = "all"
    count: int | None = Field(None, ge=1)
    depth: int = Field(2, ge=0, le=10)
    seed: int = 0


class ExpertsConfig(_FineTuneBudget):
    """Which experts exist: the generic one (the probe itself) and experts fine-tuned on tasks/groups."""

    generic: bool = True
    # Each entry: a task id, or "source:<name>" for every selected task of a source (a task group).
    train_on: list[str] = Field(default_factory=list)
    # one expert per selected task (iNat/CUB style); train_on and per_task are capped by max_experts.
    per_task: bool = False
    max_experts: int | None = Field(None, ge=1)
    rules: list[ExpertRule] = Field(default_factory=list, description="experts chosen by rule (never capped)")
    seed: int = 0


class HeadsConfig(_Section):
    """Which (expert, task) pairs get a linear head: all pairs (dense), each meta-task's pairs, or a list."""

    pairs: Literal["all", "meta_tasks"] | list[tuple[str, str]] = "all"
    epochs: int = Field(_HEADS.epochs, ge=1, le=100_000)
    lr: float = Field(_HEADS.lr, gt=0, le=10)
    weight_decay: float = Field(_HEADS.weight_decay, ge=0, le=1)
    task_chunk: int = Field(256, ge=1, description="heads trained together in one unit at most")
    seed: int = _HEADS.seed

    def train_config(self) -> HeadTrainConfig:
        """The heads' optimisation (``experts.heads``); its other settings keep their defaults."""
        return HeadTrainConfig(epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay, seed=self.seed)


class EmbeddingsConfig(_Section):
    probe: str = "resnet34"
    probe_weights: Path | None = None
    methods: list[Literal["montecarlo", "montecarlo_exact", "variational"]] = Field(default_factory=lambda: ["montecarlo"])
    domain: bool = True
    max_samples: int = Field(_TASK2VEC.max_samples, ge=1)
    fisher_samples: int | None = Field(_TASK2VEC.fisher_samples, ge=1, description="Fisher draws; null: max_samples")
    head_solver: Literal["sampled", "full_batch", "expected"] = Field(
        _TASK2VEC.head_solver,
        description="linear head: expected (the reference's Adam steps in expectation, deterministic), full_batch "
                    "(Adam on the full-batch loss, deterministic) or sampled (the reference's draws)")
    fisher_sampling: Literal["replacement", "stratified"] = Field(
        _TASK2VEC.fisher_sampling,
        description="Fisher draws: stratified (each image in turn) or replacement (the reference's)")
    head_epochs: int = Field(_TASK2VEC.head_epochs, ge=1, le=1000)
    batch_size: int = Field(_TASK2VEC.batch_size, ge=1, le=4096)
    seed: int = 0

    def task2vec_config(self) -> Task2VecConfig:
        """The Task2Vec settings every task of the run is embedded with (and ``recommend`` embeds with);
        the settings this section does not name keep ``Task2VecConfig``'s defaults."""
        return dataclasses.replace(_TASK2VEC, max_samples=self.max_samples, batch_size=self.batch_size,
                                   head_epochs=self.head_epochs, fisher_samples=self.fisher_samples or self.max_samples,
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


Precision = Literal["fp32", "bf16", "fp16"]


class PrecisionConfig(_Section):
    """Autocast of each stage's forward passes on CUDA (``experts/precision.py``); the CPU always runs float32.

    ``bf16`` keeps float32's range (no loss scaling); ``fp16`` fine-tunes with a gradient scaler, and the
    Fisher has no ``fp16`` (its squared gradients would underflow). A GPU without bfloat16 runs ``bf16``
    as ``fp16`` (the Fisher as ``fp32``). Tolerances: docs/sweep.md.
    """

    finetune: Precision = "bf16"  # experts and transfer fine-tuning
    features: Precision = "bf16"  # feature passes of the heads and domain embeddings
    fisher: Literal["fp32", "bf16"] = "bf16"  # Task2Vec: the probe's forwards (gradients are squared in float32)


class RuntimeConfig(_Section):
    runner: Literal["ray", "inline"] = "ray"
    address: str = "local"
    workers: int | None = Field(None, ge=1, description="default: one per GPU, else one per 2 CPUs")
    cpus_per_worker: float = Field(1.0, gt=0)
    max_attempts: int = Field(3, ge=1, le=100)
    image_size: int = Field(224, ge=16, le=1024)
    feature_batch_size: int = Field(128, ge=1, le=8192)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: PrecisionConfig = PrecisionConfig()
    channels_last: bool = Field(True, description="NHWC memory layout on CUDA (and for Task2Vec on any device)")

    @field_validator("precision", mode="before")
    @classmethod
    def _one_for_all(cls, v: object) -> object:
        """``precision: bf16`` sets every stage; ``fp16`` leaves the Fisher in ``fp32``."""
        if isinstance(v, str):
            return {"finetune": v, "features": v, "fisher": "fp32" if v == "fp16" else v}
        return v


# -- input pipeline (issue 12): the decoded-image cache and the DataLoader processes -------------------
class InputConfig(_Section):
    """How images reach the model (docs/sweep.md, "Image cache").

    ``cache``: stage ``image_cache`` decodes every image of the run's tasks once (``tasks.transforms.decode``:
    short side 256 for 224 px) and writes it in shards to the result store; later stages read the shards
    instead of the original files. ``cache_encoding``: ``raw`` uint8 (no decoding when read: the fastest,
    ~260 KB per 4:3 image) or ``jpeg`` (quality ``cache_quality``, 4:4:4; ~4x smaller, ~2x slower to
    read). ``loader_workers``: DataLoader processes per sweep worker for feature passes and fine-tuning;
    default ``runtime.cpus_per_worker - 1`` (0: load in the worker itself).
    """

    cache: bool = True
    cache_encoding: Literal["raw", "jpeg"] = "raw"
    cache_quality: int = Field(95, ge=50, le=100, description="JPEG quality of the cached images")
    shard_images: int = Field(1024, ge=1, description="images per shard (one work unit each)")
    loader_workers: int | None = Field(None, ge=0, le=64)


class MetaTaskConfig(_Section):
    """One meta-task of the selection table: target tasks and candidate experts (docs/sweep.md).

    Tasks: the selected tasks of ``task_sources``; with ``tasks: N`` the first N of a shuffle seeded by
    ``seed`` (``per_source``: an equal share of each source). Candidate experts, besides the generic one
    (the "ImageNet" row): ``sources``: every expert of the run whose training tasks all come from
    ``expert_sources``; ``own``: each task's own fine-tuned expert; a list of rules: the experts they
    choose. ``own`` and rules add their experts to the run.
    """

    name: str
    task_sources: list[Source] | Literal["all"] = "all"
    expert_sources: list[Source] | Literal["all"] = "all"
    tasks: int | None = Field(None, ge=1, description="a seeded pick of this many tasks (none: every one)")
    per_source: bool = False
    seed: int = 0
    experts: Literal["sources", "own"] | list[ExpertRule] = "sources"


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
    input: InputConfig = InputConfig()

    @model_validator(mode="after")
    def _some_dataset(self) -> "SweepConfig":
        d = self.datasets
        if not (d.mini or d.inat2018 or d.cub200 or d.imat2018 or d.deepfashion):
            raise ValueError("datasets: name at least one dataset root, or set mini: true")
        return self


def load_config(path: Path | None, overrides: dict | None = None, preset: dict | None = None) -> SweepConfig:
    """Defaults ← preset ← YAML file ← overrides (nested dicts, e.g. from CLI flags).

    Mappings merge key by key at every depth; any other value (a list, a number) replaces the one below.
    """
    data: dict = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            raise TaskSweepInputError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(data, dict):
            raise TaskSweepInputError(f"{path}: the top level must be a mapping of sections")
    return SweepConfig.model_validate(merged(merged(preset or {}, data), overrides or {}))


def merged(base: dict, top: dict) -> dict:
    """``top`` over ``base``: nested mappings merged, everything else replaced."""
    out = dict(base)
    for key, value in top.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
