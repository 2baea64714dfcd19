"""The library over all four mini datasets: tasks, examples, the torch Dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks.config import LibraryConfig
from tasks.library import Library, binary_targets, build_library, tasks_from_table, tasks_table
from tasks.torch_dataset import ImageReadError, TaskImageDataset, task_dataset


def test_every_source_has_tasks_with_unique_ids(mini_library: Library) -> None:
    ids = [t.task_id for t in mini_library.tasks]
    assert len(ids) == len(set(ids))
    assert {t.source for t in mini_library.tasks} == {"inat2018", "cub200", "imat2018", "deepfashion"}
    for task in mini_library.tasks:
        assert task.n_classes >= 2, task.task_id
        assert task.n_train > 0 and task.n_test > 0, task.task_id
        assert task.rule, task.task_id
    for src in mini_library.sources.values():  # image_index is the row position: the label matrix relies on it
        assert src.images["image_index"].to_pylist() == list(range(src.images.num_rows))


def test_examples_match_task_counts_and_label_range(mini_library: Library) -> None:
    for task in mini_library.tasks:
        train_paths, train_y = mini_library.examples(task.task_id, "train")
        test_paths, test_y = mini_library.examples(task.task_id, "test")
        assert len(train_paths) == task.n_train and len(test_paths) == task.n_test, task.task_id
        assert train_y.min() >= 0 and train_y.max() < task.n_classes
        # every class of a multi-class task is seen in training; binary tasks have both classes
        assert set(np.unique(train_y)) == set(range(task.n_classes)), task.task_id


def test_multiclass_labels_follow_class_ids(mini_library: Library) -> None:
    task = next(t for t in mini_library.tasks if t.source == "inat2018")
    src = mini_library.sources["inat2018"]
    paths, y = mini_library.examples(task.task_id, "train")
    by_path = dict(zip(src.images["path"].to_pylist(), src.images["category_id"].to_pylist()))
    assert [task.class_ids[label] for label in y] == [by_path[p] for p in paths]


def test_binary_targets_come_from_the_label_matrix(mini_library: Library) -> None:
    src = mini_library.sources["deepfashion"]
    label_id = mini_library.tasks[-1].class_ids[0] if mini_library.tasks[-1].source == "deepfashion" else 1
    targets = binary_targets(src, label_id)
    expected = np.zeros(src.images.num_rows, dtype=np.int64)
    for row in src.labels.to_pylist():
        expected[row["image_index"]] = int(label_id in row["positive"])
    assert np.array_equal(targets, expected)
    assert 0 < targets.sum() < len(targets)


def test_tasks_table_round_trip(mini_library: Library) -> None:
    assert tasks_from_table(tasks_table(mini_library.tasks)) == mini_library.tasks


def test_torch_dataset_yields_images_and_labels(mini_library: Library) -> None:
    task = mini_library.tasks[0]
    ds = task_dataset(mini_library, task.task_id, "train")
    image, label = ds[0]
    assert isinstance(image, torch.Tensor) and image.shape == (3, 64, 64)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert label == int(ds.targets[0])


def test_torch_dataset_names_an_unreadable_file(tmp_path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    ds = TaskImageDataset(tmp_path, ["bad.jpg"], np.array([0]))
    with pytest.raises(ImageReadError, match="bad.jpg"):
        ds[0]


def test_unknown_dataset_name_is_rejected(mini_roots) -> None:
    with pytest.raises(KeyError, match="known:"):
        build_library({"imagenet": mini_roots["cub200"]})


def test_caps_limit_task_counts(mini_roots) -> None:
    config = LibraryConfig(inat_max_tasks=3, deepfashion_max_tasks=5, imat_max_tasks=4)
    lib = build_library({k: mini_roots[k] for k in ("inat2018", "deepfashion", "imat2018")}, config)
    counts = {name: len(src.tasks) for name, src in lib.sources.items()}
    assert counts["inat2018"] == 3 and counts["deepfashion"] == 5 and counts["imat2018"] <= 4
