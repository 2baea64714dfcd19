"""Writes the mini DeepFashion (Category and Attribute Prediction) dataset in the real layout
(datasets.md section 4).

Layout under ``root``::

    Anno/list_attr_cloth.txt  Anno/list_attr_img.txt  Anno/list_category_cloth.txt
    Anno/list_category_img.txt  Anno/list_bbox.txt  Eval/list_eval_partition.txt
    img/<Item_Folder>/img_00000001.jpg ...

Every list file: line 1 = row count, line 2 = column names, then rows padded with runs of spaces.
60 items (folders) of 8 categories, 5 photos each (300 images). All photos of an item share its
attributes, as in the real data; each item has at least 3 training photos, so every attribute that
an item carries has training positives. The 20 attributes (real DeepFashion names, some with single
spaces) and what draws them:

    type 1 texture: abstract chevron print -> zigzag print, colorblock -> two-colour halves,
                    floral -> scattered flowers, plaid -> tartan, polka dot -> dots, striped -> stripes
    type 2 fabric:  chiffon -> pale and sheer, denim -> indigo twill, knit -> ribbed grain,
                    leather -> near-black with gloss
    type 3 shape:   a-line -> flared hem, maxi / mini -> long / short hem (skirts, dresses),
                    pleated -> vertical fold lines
    type 4 part:    long sleeve / sleeveless -> sleeve shape (tops, dresses, rompers),
                    pocket -> patch-pocket outlines, v-neck -> V neckline
    type 5 style:   party -> sequin specks, summer -> sunny yellow backdrop

About 1 % of the negative attribute values are written as 0 ("unknown"), as the format allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.mini.garments import WHITE, Garment, render_garment
from tasks.mini.images import hsv, mask_bbox, save_jpeg

N_ITEMS, PHOTOS_PER_ITEM = 60, 5
ATTRIBUTES = [  # (name, type), alphabetical like the real file
    ("a-line", 3), ("abstract chevron print", 1), ("chiffon", 2), ("colorblock", 1), ("denim", 2),
    ("floral", 1), ("knit", 2), ("leather", 2), ("long sleeve", 4), ("maxi", 3), ("mini", 3), ("party", 5),
    ("plaid", 1), ("pleated", 3), ("pocket", 4), ("polka dot", 1), ("sleeveless", 4), ("striped", 1),
    ("summer", 5), ("v-neck", 4),
]
# The real 50 categories (1 upper-body, 2 lower-body, 3 full-body); ids are 1-based row numbers.
CATEGORY_NAMES = {
    1: "Anorak Blazer Blouse Bomber Button-Down Cardigan Flannel Halter Henley Hoodie Jacket Jersey Parka "
       "Peacoat Poncho Sweater Tank Tee Top Turtleneck",
    2: "Capris Chinos Culottes Cutoffs Gauchos Jeans Jeggings Jodhpurs Joggers Leggings Sarong Shorts Skirt "
       "Sweatpants Sweatshorts Trunks",
    3: "Caftan Cape Coat Coverup Dress Jumpsuit Kaftan Kimono Nightdress Onesie Robe Romper Shirtdress Sundress",
}
CATEGORIES = [(name, ctype) for ctype, names in CATEGORY_NAMES.items() for name in names.split()]
KIND_OF_CATEGORY = {"Blouse": "blouse", "Tee": "tee", "Jacket": "jacket", "Shorts": "shorts", "Skirt": "skirt",
                    "Jeans": "jeans", "Dress": "dress", "Romper": "romper"}  # the categories used
TEXTURES = {"abstract chevron print": "chevron", "colorblock": "colorblock", "floral": "floral", "plaid": "plaid",
            "polka dot": "dots", "striped": "stripes"}
FABRICS = {"chiffon": "chiffon", "denim": "denim", "knit": "knit", "leather": "leather"}
_SLEEVED = ("tee", "blouse", "jacket", "dress", "romper")
_HEMMED = ("skirt", "dress")
_NAME_WORDS = ("Classic", "Relaxed", "Cropped", "Sheer", "Textured", "Woven", "Crisp", "Soft", "Boxy", "Slim",
               "Tiered", "Longline", "Layered", "Belted", "Essential", "Draped", "Structured", "Breezy")


@dataclass(frozen=True)
class Item:
    folder: str
    category: str
    attributes: frozenset[str]
    garment: Garment


def _balanced(rng: np.random.Generator, n: int, options: list) -> list:
    """n draws in which every option appears floor(n/k) or ceil(n/k) times, shuffled."""
    return [options[i] for i in np.resize(np.arange(len(options)), n)[rng.permutation(n)]]


def _some(rng: np.random.Generator, eligible: list[int], rate: float) -> set[int]:
    """About ``rate`` of the eligible item indices, and at least one."""
    k = max(1, round(rate * len(eligible)))
    return {int(i) for i in rng.choice(eligible, size=k, replace=False)}


def design_items(rng: np.random.Generator, n: int = N_ITEMS) -> list[Item]:
    """Attributes of ``n`` items, drawn so that every attribute occurs on at least one item."""
    cats = _balanced(rng, n, list(KIND_OF_CATEGORY))
    kinds = [KIND_OF_CATEGORY[c] for c in cats]
    tex = _balanced(rng, n, [None] * 3 + list(TEXTURES))
    fab = _balanced(rng, n, [None] * 4 + list(FABRICS))
    sleeved = [i for i in range(n) if kinds[i] in _SLEEVED]
    hemmed = [i for i in range(n) if kinds[i] in _HEMMED]
    sleeves = dict(zip(sleeved, _balanced(rng, len(sleeved), [None, "long sleeve", "sleeveless"])))
    length = dict(zip(hemmed, _balanced(rng, len(hemmed), [None, "maxi", "mini"])))
    flags = {
        "a-line": _some(rng, hemmed, 0.4),
        "pleated": _some(rng, [i for i in range(n) if kinds[i] in ("skirt", "dress", "blouse")], 0.35),
        "v-neck": _some(rng, sleeved, 0.35),
        "pocket": _some(rng, list(range(n)), 0.3),
        "party": _some(rng, list(range(n)), 0.2),
        "summer": _some(rng, list(range(n)), 0.25),
    }
    items, used = [], set()
    for i in range(n):
        attrs = {a for a in (tex[i], fab[i], sleeves.get(i), length.get(i)) if a}
        attrs |= {name for name, members in flags.items() if i in members}
        g = _garment(rng, kinds[i], attrs, texture=tex[i], fabric=fab[i])
        items.append(Item(_folder(rng, cats[i], tex[i], fab[i], used), cats[i], frozenset(attrs), g))
    return items


def _garment(rng: np.random.Generator, kind: str, attrs: set[str], *, texture: str | None,
             fabric: str | None) -> Garment:
    hue = rng.random()
    second = WHITE if rng.random() < 0.4 else tuple(float(c) for c in hsv(hue + 0.5, 0.7, 0.85))
    sleeves = "long" if "long sleeve" in attrs else "none" if "sleeveless" in attrs else "short"
    return Garment(
        kind, tuple(float(c) for c in hsv(hue, rng.uniform(0.45, 0.85), rng.uniform(0.5, 0.9))),
        pattern=TEXTURES[texture] if texture else "plain", pattern_color=second,
        fabric=FABRICS[fabric] if fabric else "cotton",
        length="maxi" if "maxi" in attrs else "mini" if "mini" in attrs else "regular",
        flare="a-line" in attrs, pleats="pleated" in attrs, sleeves=sleeves, vneck="v-neck" in attrs,
        pockets="pocket" in attrs, sparkles="party" in attrs, warm_backdrop="summer" in attrs,
    )


def _folder(rng: np.random.Generator, category: str, texture: str | None, fabric: str | None,
            used: set[str]) -> str:
    """A unique real-looking item folder name, e.g. 'Sheer_Polka_Dot_Chiffon_Dress'."""
    core = [w.replace(" ", "_").title() for w in (texture, fabric) if w] + [category]
    for word in rng.permutation(_NAME_WORDS):
        name = "_".join([str(word)] + core)
        if name not in used:
            used.add(name)
            return name
    raise RuntimeError(f"no unique folder name left for {core}")  # 18 words per (texture, fabric, category)


def _padded(rows: list[tuple[str, str]], header: str, width: int = 0) -> str:
    """Count line, header line, then ``first`` padded with spaces to a common column and ``rest``."""
    col = max(width, max(len(a) for a, _ in rows) + 2)
    return f"{len(rows)}\n{header}\n" + "".join(f"{a.ljust(col)}{b}\n" for a, b in rows)


def _partition(rng: np.random.Generator) -> list[str]:
    """Statuses of one item's photos: at least 3 train, the rest mostly val and test."""
    extra = rng.choice(["train", "val", "test"], size=PHOTOS_PER_ITEM - 3, p=[0.2, 0.4, 0.4])
    return [str(s) for s in rng.permutation(["train"] * 3 + list(extra))]


def write(root: Path, rng: np.random.Generator, *, scale: int = 1) -> Path:
    """Write the dataset under ``root`` (created); returns ``root``. ``scale`` multiplies the items."""
    items = design_items(rng, N_ITEMS * scale)
    cat_id = {name: i for i, (name, _) in enumerate(CATEGORIES, start=1)}
    attr_rows, cat_rows, bbox_rows, part_rows = [], [], [], []
    for item in items:
        for k, status in enumerate(_partition(rng), start=1):
            rel = f"img/{item.folder}/img_{k:08d}.jpg"
            pixels, mask = render_garment(rng, item.garment)
            save_jpeg(pixels, root / rel)
            unknown = rng.random(len(ATTRIBUTES)) < 0.01
            values = [1 if a in item.attributes else 0 if u else -1 for (a, _), u in zip(ATTRIBUTES, unknown)]
            attr_rows.append((rel, " ".join(str(v) for v in values)))
            cat_rows.append((rel, str(cat_id[item.category])))
            bbox_rows.append((rel, " ".join(f"{v:03d}" for v in mask_bbox(mask))))
            part_rows.append((rel, status))
    anno, ev = root / "Anno", root / "Eval"
    anno.mkdir(parents=True, exist_ok=True)
    ev.mkdir(parents=True, exist_ok=True)
    cloth_attrs, cloth_cats = [(a, str(t)) for a, t in ATTRIBUTES], [(c, str(t)) for c, t in CATEGORIES]
    files = {
        anno / "list_attr_cloth.txt": _padded(cloth_attrs, "attribute_name  attribute_type", 29),
        anno / "list_category_cloth.txt": _padded(cloth_cats, "category_name  category_type", 29),
        anno / "list_attr_img.txt": _padded(attr_rows, "image_name  attribute_labels", 64),
        anno / "list_category_img.txt": _padded(cat_rows, "image_name  category_label", 64),
        anno / "list_bbox.txt": _padded(bbox_rows, "image_name  x_1  y_1  x_2  y_2", 64),
        ev / "list_eval_partition.txt": _padded(part_rows, "image_name  evaluation_status", 64),
    }
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return root
