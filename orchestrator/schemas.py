"""Arrow schemas of the sweep's result tables (the library's own tables live in ``tasks.tables``).

Schemas are code and versioned in each file's metadata (``schema_version``); writers never infer.
"""

from __future__ import annotations

import pyarrow as pa

RESULTS_SCHEMA_VERSION = "1"

EMBEDDINGS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("probe", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("pretrained", pa.bool_(), nullable=False),
        pa.field("n_samples", pa.int64(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("dim", pa.int32(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32()), nullable=False),  # filter-averaged Fisher (hessian)
        pa.field("scale", pa.list_(pa.float32()), nullable=False),
        pa.field("warnings", pa.list_(pa.string()), nullable=False),
        pa.field("precision", pa.string(), nullable=False),  # autocast of the Fisher / feature pass: fp32, bf16, fp16
        # estimated d_sym to an independent run of the same task (another seed), from two halves of
        # this run's Fisher draws (experts.fisher.split_noise); null for domain and variational rows
        pa.field("noise", pa.float64()),
    ]
)

EXPERTS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("expert_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # "generic" (the probe itself) or "finetuned"
        pa.field("probe", pa.string(), nullable=False),
        pa.field("pretrained", pa.bool_(), nullable=False),  # of the probe the expert starts from
        pa.field("task_ids", pa.list_(pa.string()), nullable=False),  # what it was fine-tuned on
        pa.field("n_classes", pa.int32(), nullable=False),
        pa.field("n_train", pa.int64(), nullable=False),
        pa.field("train_error", pa.float64()),
        pa.field("test_error", pa.float64()),  # on the test split of its own task(s)
        pa.field("checkpoint", pa.string(), nullable=False),  # store key of the weights ("" for generic)
        pa.field("seconds", pa.float64(), nullable=False),
        pa.field("warnings", pa.list_(pa.string()), nullable=False),
        pa.field("precision", pa.string()),  # fine-tuning autocast: fp32, bf16, fp16 (null for generic)
    ]
)

HEADS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("expert_id", pa.string(), nullable=False),
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("n_classes", pa.int32(), nullable=False),
        pa.field("n_train", pa.int64(), nullable=False),
        pa.field("n_test", pa.int64(), nullable=False),
        pa.field("train_error", pa.float64(), nullable=False),
        pa.field("test_error", pa.float64()),  # null when the task has no test images
        pa.field("train_loss", pa.float64(), nullable=False),
        pa.field("test_loss", pa.float64()),
        pa.field("pretrained", pa.bool_(), nullable=False),
        # forward-only transferability scores on the training rows (experts/transferability.py)
        pa.field("logme", pa.float64()),
        pa.field("leep", pa.float64()),  # null when the expert's own classifier is not stored
        pa.field("nce", pa.float64()),
        pa.field("hscore", pa.float64()),
        pa.field("precision", pa.string(), nullable=False),  # autocast of the expert's feature pass
    ]
)

DISTANCES_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("probe", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),  # the Fisher estimator behind d_sym / d_asym
        pa.field("task_a", pa.string(), nullable=False),
        pa.field("task_b", pa.string(), nullable=False),
        pa.field("d_sym", pa.float64()),
        pa.field("d_asym", pa.float64()),  # d_sym(a, b) - alpha * d_sym(a, trivial)
        pa.field("d_tax", pa.float64()),  # null outside iNat/CUB
        pa.field("d_domain", pa.float64()),
        pa.field("alpha", pa.float64(), nullable=False),
        # d_sym expected from estimator noise alone: (noise_a + noise_b) / 2 (experts.distances.noise_floor);
        # null where either embedding has no noise estimate
        pa.field("noise_floor", pa.float64()),
    ]
)

TRANSFER_INIT_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("target_task", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("init_expert", pa.string(), nullable=False),  # generic/<probe>: the fixed initialisation
        pa.field("pretrained", pa.bool_(), nullable=False),
        pa.field("n_train", pa.int64(), nullable=False),
        pa.field("n_test", pa.int64(), nullable=False),
        pa.field("train_error", pa.float64(), nullable=False),
        pa.field("test_error", pa.float64()),  # null when the target has no test images
        pa.field("seconds", pa.float64(), nullable=False),
        pa.field("precision", pa.string(), nullable=False),  # fine-tuning autocast
    ]
)

TRANSFER_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("source_task", pa.string(), nullable=False),
        pa.field("source_expert", pa.string(), nullable=False),  # expert/<source_task>
        pa.field("target_task", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("selection", pa.string(), nullable=False),  # explicit, group, nearest or random
        pa.field("err_from_source", pa.float64()),  # test error on the target, fine-tuned from the source's expert
        pa.field("err_from_init", pa.float64()),  # the same from the fixed initialisation (transfer_init)
        pa.field("d_ft", pa.float64()),  # (err_from_source - err_from_init) / err_from_init; null if undefined
        pa.field("train_error_from_source", pa.float64(), nullable=False),
        pa.field("train_error_from_init", pa.float64(), nullable=False),
        pa.field("n_train", pa.int64(), nullable=False),
        pa.field("n_test", pa.int64(), nullable=False),
        pa.field("seconds", pa.float64(), nullable=False),
        pa.field("precision", pa.string(), nullable=False),  # fine-tuning autocast (from source)
    ]
)

FAILURES_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("unit_key", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("error_type", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
        pa.field("traceback", pa.string(), nullable=False),
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("failed_at", pa.string(), nullable=False),
    ]
)


def versioned(schema: pa.Schema, table: str) -> pa.Schema:
    return schema.with_metadata({b"schema_version": RESULTS_SCHEMA_VERSION.encode(), b"table": table.encode()})

# Image cache (stage ``image_cache``): where each decoded image of the run is. The shards themselves
# (``<run>/image_shards/<unit key>.parquet``, tasks.image_cache.SHARD_COLUMNS) are written by the unit
# before this table, which is the unit's committed part.
IMAGE_CACHE_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("image_index", pa.int32(), nullable=False),
        pa.field("shard", pa.string(), nullable=False),  # store key of the shard file
        pa.field("shard_sha256", pa.string(), nullable=False),  # of the shard's bytes (names local copies)
        pa.field("row", pa.int32(), nullable=False),  # row in the shard
        pa.field("encoding", pa.string(), nullable=False),  # jpeg or raw (tasks.image_cache.ENCODINGS)
        pa.field("height", pa.int16(), nullable=False),
        pa.field("width", pa.int16(), nullable=False),
        pa.field("bytes", pa.int32(), nullable=False),  # stored size of the image
    ]
)
