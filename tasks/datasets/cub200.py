"""CUB-200-2011 adapter: species classification inside bird orders and inside Passeriformes families.

Root: the ``CUB_200_2011`` folder or its parent. Files: ``images.txt``, ``classes.txt``,
``image_class_labels.txt``, ``train_test_split.txt`` (space-separated, 1-based ids, no header);
images under ``images/``. Every line is split on whitespace and must have exactly its columns.

Decisions a reader cannot see in the code:

- Taxonomy: CUB ships none. ``config.cub_taxonomy`` or the shipped ``tasks/data/cub200_taxonomy.tsv``
  (tab-separated, header ``class_id species family order``) is matched by class id, and the class
  name without its ``NNN.`` prefix must equal the taxonomy's species. CUB spells two classes its
  own way (``141.Artic_Tern``, ``070.Green_Violetear``); KNOWN_SPELLINGS maps them to the
  taxonomy's spelling. Any other mismatch, or a class missing from the taxonomy, is an error.
- Splits: ``is_training_image`` 1 is "train" and 0 is "test". Nothing goes to "val".
- A species is usable if it has ``>= min_train_per_class`` training images. Two task blocks:
  (a) orders other than Passeriformes with ``>= cub_min_species_per_order`` usable species, ranked
  by training images (descending, ties by name), first ``cub_max_orders``: ``cub200/order/<Order>``;
  (b) Passeriformes families with ``>= cub_min_species_per_family`` usable species, ranked the same
  way, first ``cub_max_families``: ``cub200/family/<Family>``. Local labels follow the species names.
- With the shipped taxonomy only 13 Passeriformes families have 2 or more species, so the defaults
  give 10 + 13 = 23 tasks, not the study's 25. A one-species task is degenerate and is not made; each
  single-species family gets a Skip, and one Skip (``cub200/family/*``) records the shortfall.
- An image with no label line or no split line, or whose file is unusable (path escapes the root;
  missing or corrupt file, as ``verify_images`` asks), is left out with a Skip. A label or split
  line for an image id that ``images.txt`` lacks, or a label with an unknown class, is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from tasks.config import LibraryConfig
from tasks.datasets._common import (
    Group,
    images_table,
    index_rows,
    read_text_rows,
    require_file,
    select_groups,
)
from tasks.errors import ManifestError
from tasks.images import check_images
from tasks.registry import register_adapter
from tasks.spec import Skip, SourceLibrary, TaskSpec
from tasks.tables import SPLITS

SOURCE = "cub200"
TRAIN, TEST = SPLITS.index("train"), SPLITS.index("test")
SHIPPED_TAXONOMY = Path(__file__).resolve().parent.parent / "data" / "cub200_taxonomy.tsv"
TAXONOMY_HEADER = ["class_id", "species", "family", "order"]
KNOWN_SPELLINGS = {"Artic_Tern": "Arctic_Tern", "Green_Violetear": "Green_Violet_ear"}  # CUB's -> taxonomy's
BIRDS = ("Animalia", "Chordata", "Aves")
PASSERIFORMES = "Passeriformes"
FILES = ("images.txt", "classes.txt", "image_class_labels.txt", "train_test_split.txt")
_EXPECTED = f"{', '.join(FILES)} and images/"


@dataclass(frozen=True)
class Taxon:
    """One class's place in the taxonomy, and the taxonomy line it came from."""

    species: str
    family: str
    order: str
    line: int


@register_adapter(SOURCE)
def load_cub200(root: Path, config: LibraryConfig) -> SourceLibrary:
    """Read CUB-200-2011 under ``root`` and cut its order and Passeriformes-family tasks.

    Args:
        root: the ``CUB_200_2011`` folder or the folder that holds it.
        config: caps, thresholds, the taxonomy file and the image check mode.

    Returns:
        The images table (paths relative to the ``CUB_200_2011`` folder), tasks and skips.

    Raises:
        ManifestError: a missing file, a malformed line, a duplicate or unknown id, a class that the
            taxonomy lacks or names differently.
    """
    cub = find_cub_dir(Path(root))
    files = {name: require_file(cub, name, dataset="CUB-200-2011", expected=_EXPECTED) for name in FILES}
    tax_path = Path(config.cub_taxonomy) if config.cub_taxonomy else SHIPPED_TAXONOMY
    classes = read_classes(files["classes.txt"], read_taxonomy(tax_path), tax_path)
    images = _indexed(files["images.txt"], ("image_id", "image_name"), (0,), "image id")
    labels = _indexed(files["image_class_labels.txt"], ("image_id", "class_id"), (0, 1), "image id")
    is_train = _indexed(files["train_test_split.txt"], ("image_id", "is_training_image"), (0, 1), "image id")
    _check_references(files, images, labels, is_train, classes)

    ids, skips = usable_images(cub, images, labels, is_train, mode=config.verify_images)
    class_of = np.array([labels[i][1][1] for i in ids], dtype=np.int64)
    split = np.array([TRAIN if is_train[i][1][1] else TEST for i in ids], dtype=np.int8)
    paths = pa.array([f"images/{images[i][1][1]}" for i in ids], pa.string())
    table = images_table(SOURCE, image_ids=pa.array(ids, pa.int64()), paths=paths, splits=split, category_ids=class_of)
    n_train = _count(class_of[split == TRAIN], classes)
    n_test = _count(class_of[split == TEST], classes)
    tasks, task_skips = define_tasks(classes, n_train=n_train, n_test=n_test, config=config, tax_file=tax_path.name)
    return SourceLibrary(SOURCE, str(cub), table, None, tasks, skips + task_skips)


def usable_images(cub: Path, images: dict, labels: dict, is_train: dict, *, mode: str) -> tuple[list[int], list[Skip]]:
    """Ids of the images that have a label, a split and a usable file; a Skip for each other image."""
    skips: list[Skip] = []
    kept: list[int] = []
    for image_id, (line, _) in images.items():
        if image_id not in labels:
            skips.append(_image_skip(image_id, line, "image has no line in image_class_labels.txt, so it has no label"))
        elif image_id not in is_train:
            skips.append(_image_skip(image_id, line, "image has no line in train_test_split.txt, so it has no split"))
        else:
            kept.append(image_id)
    names = [images[i][1][1] for i in kept]
    # The name is checked alone first: '/abs.jpg' would hide inside 'images//abs.jpg'.
    problems = check_images(cub, names, "none")
    if mode != "none":
        problems = check_images(cub, [f"images/{n}" for n in names], mode) | problems
    for k, reason in sorted(problems.items()):
        skips.append(_image_skip(kept[k], images[kept[k]][0], reason))
    return [i for k, i in enumerate(kept) if k not in problems], skips


def find_cub_dir(root: Path) -> Path:
    """``root`` if it holds ``images.txt``, else ``root/CUB_200_2011`` if that does."""
    for candidate in (root, root / "CUB_200_2011"):
        if (candidate / "images.txt").is_file():
            return candidate
    raise ManifestError(
        root / "images.txt",
        "required CUB-200-2011 file 'images.txt' not found here nor in CUB_200_2011/",
        fix="is the dataset root right? Pass the CUB_200_2011 folder or the folder that holds it",
    )


def read_taxonomy(path: Path) -> dict[int, Taxon]:
    """The class-id → species/family/order table (tab-separated, with a header line)."""
    if not path.is_file():
        raise ManifestError(path, "CUB taxonomy file not found", fix="set cub_taxonomy to an existing TSV, or unset it")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split("\t") != TAXONOMY_HEADER:
        raise ManifestError(path, f"the header must be {' '.join(TAXONOMY_HEADER)} (tab-separated)", line=1)
    out: dict[int, Taxon] = {}
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) != len(TAXONOMY_HEADER):
            raise ManifestError(path, f"expected 4 tab-separated columns, found {len(fields)}", line=number)
        try:
            class_id = int(fields[0])
        except ValueError:
            raise ManifestError(path, f"class_id {fields[0]!r} is not an integer", line=number) from None
        if class_id in out:
            problem = f"class_id {class_id} appears twice (first on line {out[class_id].line})"
            raise ManifestError(path, problem, line=number)
        out[class_id] = Taxon(fields[1], fields[2], fields[3], number)
    return out


def read_classes(path: Path, taxonomy: dict[int, Taxon], tax_path: Path) -> dict[int, Taxon]:
    """classes.txt's classes, each checked against (and mapped to) its taxonomy entry."""
    out: dict[int, Taxon] = {}
    for class_id, (line, (_, name)) in _indexed(path, ("class_id", "class_name"), (0,), "class id").items():
        species = name.split(".", 1)[1] if "." in name else name
        taxon = taxonomy.get(class_id)
        if taxon is None:
            raise ManifestError(path, f"class {class_id} ({name}) is not in the taxonomy {tax_path}", line=line,
                                fix="add it to the taxonomy or pass a complete one as cub_taxonomy")  # fmt: skip
        if KNOWN_SPELLINGS.get(species, species) != taxon.species:
            raise ManifestError(
                path,
                f"class {class_id} is {name!r}, but {tax_path.name} line {taxon.line} names species {taxon.species!r}",
                line=line,
                fix="the taxonomy's class ids must follow classes.txt; correct one of the two files",
            )
        out[class_id] = taxon
    return out


def define_tasks(
    classes: dict[int, Taxon], *, n_train: dict[int, int], n_test: dict[int, int], config: LibraryConfig, tax_file: str
) -> tuple[list[TaskSpec], list[Skip]]:
    """The order tasks and the Passeriformes-family tasks; a Skip for every group left out."""
    min_train = config.min_train_per_class
    skips = [
        Skip(SOURCE, f"{SOURCE}/species/{c}", f"species {t.species!r} has {n_train[c]} training images, fewer than "
             f"{min_train} (min_train_per_class); it is in no task", tax_file)  # fmt: skip
        for c, t in classes.items()
        if n_train[c] < min_train
    ]
    orders: dict[str, list[int]] = {}
    families: dict[str, list[int]] = {}
    for c, t in classes.items():
        bucket = families.setdefault(t.family, []) if t.order == PASSERIFORMES else orders.setdefault(t.order, [])
        if n_train[c] >= min_train:
            bucket.append(c)
    if any(t.order == PASSERIFORMES for t in classes.values()):
        reason = "Passeriformes is cut into family tasks (cub200/family/*) instead of one order task, as in Task2Vec"
        skips.append(Skip(SOURCE, f"{SOURCE}/order/{PASSERIFORMES}", reason, tax_file))

    tasks: list[TaskSpec] = []
    blocks = (
        ("order", orders, "orders other than Passeriformes", config.cub_min_species_per_order, config.cub_max_orders,
         "cub_min_species_per_order", "cub_max_orders"),
        ("family", families, "Passeriformes families", config.cub_min_species_per_family, config.cub_max_families,
         "cub_min_species_per_family", "cub_max_families"),
    )  # fmt: skip
    for level, members, what, min_sp, cap, min_key, max_key in blocks:
        asked = "order" if level == "order" else "Passeriformes family"
        groups = [
            Group(name, tuple(sorted(cs, key=lambda c: (classes[c].species, c))), sum(n_train[c] for c in cs))
            for name, cs in members.items()
        ]
        sel = select_groups(
            groups, min_species=min_sp, max_groups=cap, min_key=min_key, max_key=max_key, min_train=min_train
        )
        skips += [Skip(SOURCE, f"{SOURCE}/{level}/{name}", reason, tax_file) for name, reason in sel.rejected]
        if len(sel.chosen) < cap:
            reason = (
                f"asked for {cap} {asked} tasks, the taxonomy has only {sel.n_qualifying} {what} with >= {min_sp} "
                f"species (each with >= {min_train} training images), so {len(sel.chosen)} are made ({max_key}, "
                f"{min_key}); each smaller group has its own Skip (a one-species task would be degenerate)"
            )
            skips.append(Skip(SOURCE, f"{SOURCE}/{level}/*", reason, tax_file))
        for rank, g in enumerate(sel.chosen, start=1):
            rule = (
                f"species within {level} {g.name}; {what} with >= {min_sp} species (each with >= {min_train} training "
                f"images) ranked by training images, rank {rank} of {sel.n_qualifying}, first {cap} kept"
            )
            tasks.append(_task(level, g, classes, n_test=n_test, rule=rule))
    return tasks, skips


def _task(level: str, g: Group, classes: dict[int, Taxon], *, n_test: dict[int, int], rule: str) -> TaskSpec:
    first = classes[g.species[0]]
    taxonomy = BIRDS + ((first.order,) if level == "order" else (first.order, g.name))
    return TaskSpec(
        task_id=f"{SOURCE}/{level}/{g.name}",
        source=SOURCE,
        kind="species_in_order" if level == "order" else "species_in_family",
        name=g.name,
        class_names=tuple(classes[c].species for c in g.species),
        class_ids=tuple(g.species),
        n_train=g.n_train,
        n_test=sum(n_test[c] for c in g.species),
        rule=rule,
        image_group=f"{SOURCE}/{level}/{g.name}",
        taxonomy=taxonomy,
    )


def _indexed(path: Path, columns: tuple[str, ...], int_columns: tuple[int, ...], what: str) -> dict:
    return index_rows(read_text_rows(path, columns, int_columns=int_columns), path=path, what=what)


def _check_references(files: dict[str, Path], images: dict, labels: dict, is_train: dict, classes: dict) -> None:
    """Every label/split line names a known image; labels name known classes; splits are 0 or 1."""
    for name, table in (("image_class_labels.txt", labels), ("train_test_split.txt", is_train)):
        for image_id, (line, values) in table.items():
            if image_id not in images:
                raise ManifestError(files[name], f"image id {image_id} is not in images.txt", line=line)
            if name == "image_class_labels.txt" and values[1] not in classes:
                raise ManifestError(files[name], f"class id {values[1]} is not in classes.txt", line=line)
            if name == "train_test_split.txt" and values[1] not in (0, 1):
                problem = f"is_training_image is {values[1]}, expected 1 (train) or 0 (test)"
                raise ManifestError(files[name], problem, line=line)


def _count(class_of: np.ndarray, classes: dict[int, Taxon]) -> dict[int, int]:
    values, counts = np.unique(class_of, return_counts=True)
    found = dict(zip(values.tolist(), counts.tolist()))
    return {c: found.get(c, 0) for c in classes}


def _image_skip(image_id: int, line: int, reason: str) -> Skip:
    return Skip(SOURCE, f"{SOURCE}/image/{image_id}", reason, "images.txt", line)
