"""Task-rule settings: caps and thresholds, with the Task2Vec study's values as defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LibraryConfig(BaseModel):
    """How the task library is cut from the datasets. Unknown keys are rejected.

    The defaults reproduce the Task2Vec study's rules (see docs/task-library.md).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # iNaturalist 2018: species classification inside one taxonomic order.
    inat_max_tasks: int = Field(207, ge=0, description="cap on iNat order tasks (ranked by training images)")
    inat_min_species: int = Field(2, ge=2, description="an order needs at least this many species")
    # CUB-200-2011: species inside bird orders (Passeriformes excluded) + inside Passeriformes families.
    cub_max_orders: int = Field(10, ge=0)
    cub_min_species_per_order: int = Field(3, ge=2)
    cub_max_families: int = Field(15, ge=0)
    cub_min_species_per_family: int = Field(2, ge=2)
    cub_taxonomy: Path | None = Field(None, description="class_id/species/family/order TSV; default: the shipped one")
    # iMaterialist 2018 and DeepFashion: one binary task per label / attribute.
    imat_max_tasks: int = Field(228, ge=0)
    imat_label_map: Path | None = Field(None, description="labelId,taskId,labelName,taskName CSV; default: shipped")
    deepfashion_max_tasks: int = Field(1000, ge=0)
    # Every task: minimum training examples; binary tasks: minimum positives and negatives in train.
    min_train_per_class: int = Field(1, ge=1)
    min_binary_positives: int = Field(1, ge=1)
    # What to check of image files while building: nothing, that they exist, or that they decode.
    verify_images: Literal["none", "exists", "decode"] = "exists"
