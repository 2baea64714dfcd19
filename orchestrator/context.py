"""What a worker holds between units: the store, the library, the probe, an LRU of expert weights,
the image cache's index and how to read each dataset's files.

Built once per worker (actor ``__init__`` or the inline runner), lazily: a worker that only computes
distances never loads a network. Everything is reloaded from the store, so a restarted worker (whose
state Ray does not keep) rebuilds the same context.
"""

from __future__ import annotations

import io
import logging
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import Dataset

from experts.backbones import Probe, create_backbone
from experts.loader import LoaderSettings
from experts.precision import Precision, effective_precision
from experts.task2vec import Task2VecConfig
from experts.training import ExpertTrainConfig
from orchestrator.config import ExpertsConfig, SweepConfig, TransferConfig
from orchestrator.dataset_files import dataset_files
from orchestrator.library_io import load_library
from orchestrator.stages.image_cache import ShardFiles, load_cache_indexes
from orchestrator.store import ResultStore
from tasks.image_cache import CachedImageDataset, ImageCacheIndex, ImageCacheReader
from tasks.library import Library, task_rows
from tasks.spec import TaskSpec
from tasks.torch_dataset import ImageFiles, TaskImageDataset
from tasks.transforms import EvalTransform, TrainTransform

log = logging.getLogger(__name__)

Stage = Literal["finetune", "features", "fisher"]


def resolve_device(wanted: str) -> torch.device:
    """``runtime.device``: ``auto`` is CUDA when there is a GPU."""
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(wanted)


def stage_precision(config: SweepConfig, device: torch.device, stage: Stage) -> Precision:
    """What ``stage`` runs with on ``device``: ``runtime.precision.<stage>`` on CUDA, float32 elsewhere."""
    return effective_precision(device, getattr(config.runtime.precision, stage), allow_fp16=stage != "fisher")


def run_task2vec_config(config: SweepConfig, device: torch.device) -> Task2VecConfig:
    """The Task2Vec settings every task of a run is embedded with, and ``recommend`` embeds a folder with."""
    return replace(config.embeddings.task2vec_config(), precision=stage_precision(config, device, "fisher"),
                   channels_last=config.runtime.channels_last)


@dataclass
class SweepContext:
    store: ResultStore
    run_id: str
    config: SweepConfig
    expert_cache_size: int = 4
    _library: Library | None = None
    _probe: Probe | None = None
    _experts: OrderedDict[str, Probe] = field(default_factory=OrderedDict)
    _files: dict[str, ImageFiles | None] = field(default_factory=dict)
    _cache_indexes: dict[str, ImageCacheIndex] | None = None
    _cache_readers: dict[str, ImageCacheReader] = field(default_factory=dict)

    # -- what units use -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return resolve_device(self.config.runtime.device)

    def precision(self, stage: Stage) -> Precision:
        """The autocast ``stage`` runs under on this worker's device (recorded in the output rows)."""
        return stage_precision(self.config, self.device, stage)

    @property
    def channels_last(self) -> bool:
        """NHWC inputs for fine-tuning and feature passes: on CUDA, when ``runtime.channels_last``."""
        return self.config.runtime.channels_last and self.device.type == "cuda"

    def train_config(self, budget: ExpertsConfig | TransferConfig, seed: int) -> ExpertTrainConfig:
        """A fine-tuning budget (experts or transfer) with this worker's precision and layout."""
        return replace(budget.train_config(seed), precision=self.precision("finetune"),
                       channels_last=self.channels_last, num_workers=self.loader.workers)

    def task2vec_config(self) -> Task2VecConfig:
        return run_task2vec_config(self.config, self.device)

    @property
    def library(self) -> Library:
        if self._library is None:
            self._library = load_library(self.store, self.run_id)
        return self._library

    @property
    def probe(self) -> Probe:
        """The probe (never modified by units: Task2Vec and training copy it)."""
        if self._probe is None:
            emb = self.config.embeddings
            self._probe = create_backbone(emb.probe, weights=emb.probe_weights, seed=emb.seed)
            self._probe.eval()
            if not self._probe.info.pretrained:
                log.warning("probe %s is randomly initialised: no weights given and none cached", emb.probe)
        return self._probe

    def probe_warnings(self) -> list[str]:
        info = self.probe.info
        return [] if info.pretrained else [f"probe {info.name} is randomly initialised ({info.weights_source})"]

    def expert(self, expert_id: str) -> Probe:
        """The probe with an expert's fine-tuned feature extractor (the generic expert is the probe)."""
        from orchestrator.stages.experts import checkpoint_key, is_generic

        if is_generic(expert_id):
            return self.probe
        if expert_id in self._experts:
            self._experts.move_to_end(expert_id)
            return self._experts[expert_id]
        state = torch.load(io.BytesIO(self.store.read_bytes(checkpoint_key(self.run_id, expert_id))),
                           map_location="cpu", weights_only=True)
        emb = self.config.embeddings
        net = create_backbone(emb.probe, weights="random", seed=emb.seed)
        net.body.load_state_dict(state)
        net.eval()
        self._experts[expert_id] = net
        while len(self._experts) > self.expert_cache_size:
            self._experts.popitem(last=False)
        return net

    def expert_classifier(self, expert_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The expert's own head as (weight (Z, D), bias (Z,)): the probe's classifier for the generic
        expert (random when the probe is not pretrained), the fine-tuned one otherwise; None if absent."""
        from orchestrator.stages.experts import classifier_key, is_generic

        if is_generic(expert_id):
            layer = self.probe.classifier
            return layer.weight.detach().cpu().numpy(), layer.bias.detach().cpu().numpy()
        key = classifier_key(self.run_id, expert_id)
        if not self.store.exists(key):
            return None
        state = torch.load(io.BytesIO(self.store.read_bytes(key)), map_location="cpu", weights_only=True)
        return state["weight"].numpy(), state["bias"].numpy()

    def dataset(self, task: TaskSpec, split: str, *, train_transform: bool = False) -> Dataset:
        source = self.library.sources[task.source]
        idx, targets = task_rows(task, source, split)
        return self._images(source.source, idx, targets, train_transform)

    def images(self, source: str, image_indices: np.ndarray) -> Dataset:
        """Images of one source by ``image_index`` (label 0): for feature passes over a group."""
        idx = np.asarray(image_indices, dtype=np.int64)
        return self._images(source, idx, np.zeros(len(idx), dtype=np.int64), False)

    def _images(self, source: str, idx: np.ndarray, targets: np.ndarray, train: bool) -> Dataset:
        """From the image cache when it holds every one of ``idx``, else from the dataset's own files."""
        reader = self.image_cache(source)
        if reader is not None:
            missing = len(reader.index.missing(idx))
            if not missing:
                return CachedImageDataset(reader, idx, targets, self.transform(train))
            log.warning("%s: %d of %d images are not in the image cache (failed image_cache units?); "
                        "reading the original files", source, missing, len(idx))
        src = self.library.sources[source]
        paths = src.images["path"].take(pa.array(idx)).to_pylist()
        return TaskImageDataset(src.root, paths, targets, self.transform(train), files=self.dataset_files(source))

    def dataset_files(self, source: str) -> ImageFiles | None:
        """How to read a source's image files: None for a local folder, the store layer for ``s3://``."""
        if source not in self._files:
            self._files[source] = dataset_files(self.store, self.library.sources[source].root)
        return self._files[source]

    def image_cache(self, source: str) -> ImageCacheReader | None:
        """The committed image cache of ``source`` (None when ``input.cache`` is off or nothing is cached).

        Read once per worker, when a later stage first asks: the ``image_cache`` stage runs before them. One
        reader per source, shared by every dataset of the worker: a reader keeps its open shard files (their
        Parquet metadata, one row group per image), and a reader per task's dataset held them once per task
        (a group expert over 207 iNat tasks passed 13 GiB at the rehearsal's 0.02 fraction)."""
        if not self.config.input.cache:
            return None
        if self._cache_indexes is None:
            self._cache_indexes = load_cache_indexes(self.store, self.run_id)
        index = self._cache_indexes.get(source)
        if index is None:
            return None
        if source not in self._cache_readers:
            self._cache_readers[source] = ImageCacheReader(index, ShardFiles(self.store))
        return self._cache_readers[source]

    @property
    def loader(self) -> LoaderSettings:
        """DataLoader processes from ``input.loader_workers`` or the worker's CPUs; pinned memory on CUDA."""
        workers = self.config.input.loader_workers
        if workers is None:
            workers = max(0, int(self.config.runtime.cpus_per_worker) - 1)
        return LoaderSettings(workers=workers, pin_memory=self.device.type == "cuda")

    def transform(self, train: bool) -> TrainTransform | EvalTransform:
        """The one input pipeline (tasks/transforms.py): Task2Vec's random crop + flip, or the centre crop; of a
        PIL image (decoded first) or of a cached, already decoded uint8 tensor."""
        size = self.config.runtime.image_size
        return TrainTransform(size) if train else EvalTransform(size)
