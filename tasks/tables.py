"""Arrow schemas of the library tables. Schemas are code, never inferred.

Scale rule: images and labels are stored once per dataset, never one row per (task, image).
Multi-class sources (iNat, CUB) label an image by ``images.category_id``; multi-label sources
(iMaterialist, DeepFashion) by a sparse label matrix (``labels``: one row per image with the list of
positive label ids and the list of "unknown" label ids).
"""

from __future__ import annotations

import pyarrow as pa

LIBRARY_SCHEMA_VERSION = "1"

# Normalised split names. Each adapter documents how the dataset's own splits map onto these.
SPLITS = ("train", "val", "test")

IMAGES_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("image_index", pa.int32(), nullable=False),  # dense 0..N-1 within a source
        pa.field("image_id", pa.string(), nullable=False),  # the dataset's own id, as a string
        pa.field("path", pa.string(), nullable=False),  # relative to the dataset root, '/'-separated
        pa.field("split", pa.string(), nullable=False),  # one of SPLITS
        pa.field("category_id", pa.int32()),  # multi-class sources; null for multi-label ones
    ]
)

LABELS_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("image_index", pa.int32(), nullable=False),
        pa.field("positive", pa.list_(pa.int16()), nullable=False),  # label ids present
        pa.field("unknown", pa.list_(pa.int16()), nullable=False),  # label ids marked unknown (0 in DeepFashion)
    ]
)

TASKS_SCHEMA = pa.schema(
    [
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("n_classes", pa.int32(), nullable=False),
        pa.field("n_train", pa.int32(), nullable=False),
        pa.field("n_test", pa.int32(), nullable=False),
        pa.field("class_names", pa.list_(pa.string()), nullable=False),
        pa.field("class_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("taxonomy", pa.list_(pa.string()), nullable=False),
        pa.field("image_group", pa.string(), nullable=False),
        pa.field("rule", pa.string(), nullable=False),
    ]
)

SKIPS_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("item", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("file", pa.string(), nullable=False),
        pa.field("line", pa.int64()),
    ]
)


def with_version(schema: pa.Schema, table: str) -> pa.Schema:
    """The schema with ``schema_version`` and ``table`` in its metadata (what readers check)."""
    return schema.with_metadata({b"schema_version": LIBRARY_SCHEMA_VERSION.encode(), b"table": table.encode()})
