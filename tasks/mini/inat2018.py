"""Writes the mini iNaturalist 2018 dataset in the real on-disk layout (docs: datasets.md section 1).

Layout under ``root``::

    train2018.json, val2018.json   COCO-like; taxonomic names obfuscated as in the real release
    categories.json                bare list with the real names (the released un-obfuscation file)
    train_val2018/<supercategory>/<category id>/<32 hex>.jpg

22 species in 8 orders of 3 classes. Seven orders have 2-4 species (seven order tasks); Coleoptera has
one species, so the task rules must skip it. Training counts differ per species and are fixed (not
seeded), so the order ranking by training images is the same for every seed:
Passeriformes 54 > Lepidoptera 52 > Anseriformes 37 > Asterales 36 > Odonata 31 > Strigiformes 22 >
Rosales 20 (> Coleoptera 12). Every species has exactly 3 validation images, as in the real data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.mini.images import Backdrop, Glyph, draw_glyph, save_jpeg, spread_hues

N_VAL = 3
_TAXON = {  # class -> (supercategory, kingdom, phylum)
    "Aves": ("Aves", "Animalia", "Chordata"),
    "Insecta": ("Insecta", "Animalia", "Arthropoda"),
    "Magnoliopsida": ("Plantae", "Plantae", "Tracheophyta"),
}
# (species, class, order, family, training images). The genus is the first word of the species.
_SPECIES = [
    ("Poecile atricapillus", "Aves", "Passeriformes", "Paridae", 14),
    ("Poecile gambeli", "Aves", "Passeriformes", "Paridae", 12),
    ("Corvus corax", "Aves", "Passeriformes", "Corvidae", 13),
    ("Corvus brachyrhynchos", "Aves", "Passeriformes", "Corvidae", 15),
    ("Anas platyrhynchos", "Aves", "Anseriformes", "Anatidae", 16),
    ("Anas acuta", "Aves", "Anseriformes", "Anatidae", 11),
    ("Aythya valisineria", "Aves", "Anseriformes", "Anatidae", 10),
    ("Bubo virginianus", "Aves", "Strigiformes", "Strigidae", 12),
    ("Strix varia", "Aves", "Strigiformes", "Strigidae", 10),
    ("Danaus plexippus", "Insecta", "Lepidoptera", "Nymphalidae", 16),
    ("Vanessa cardui", "Insecta", "Lepidoptera", "Nymphalidae", 12),
    ("Vanessa atalanta", "Insecta", "Lepidoptera", "Nymphalidae", 11),
    ("Papilio glaucus", "Insecta", "Lepidoptera", "Papilionidae", 13),
    ("Libellula luctuosa", "Insecta", "Odonata", "Libellulidae", 12),
    ("Libellula pulchella", "Insecta", "Odonata", "Libellulidae", 10),
    ("Enallagma civile", "Insecta", "Odonata", "Coenagrionidae", 9),
    ("Coccinella septempunctata", "Insecta", "Coleoptera", "Coccinellidae", 12),
    ("Helianthus annuus", "Magnoliopsida", "Asterales", "Asteraceae", 14),
    ("Taraxacum officinale", "Magnoliopsida", "Asterales", "Asteraceae", 12),
    ("Achillea millefolium", "Magnoliopsida", "Asterales", "Asteraceae", 10),
    ("Rosa californica", "Magnoliopsida", "Rosales", "Rosaceae", 11),
    ("Prunus serotina", "Magnoliopsida", "Rosales", "Rosaceae", 9),
]
# Class -> background (each class its own colour and noise scale).
BACKDROPS = {
    "Aves": Backdrop((0.55, 0.72, 0.92), cells=3, amp=0.10),  # smooth sky
    "Insecta": Backdrop((0.30, 0.50, 0.25), cells=8, amp=0.18),  # foliage
    "Magnoliopsida": Backdrop((0.50, 0.38, 0.26), cells=20, amp=0.22),  # grainy soil
}
# Order -> shape (orders of one class never share a shape).
SHAPE_OF_ORDER = {
    "Passeriformes": "circle", "Anseriformes": "ellipse", "Strigiformes": "square",
    "Lepidoptera": "bowtie", "Odonata": "cross", "Coleoptera": "hexagon",
    "Asterales": "star", "Rosales": "pentagon",
}
FAMILY_TEXTURES = ("plain", "stripes", "dots")  # k-th family of an order (in table order)
SISTER_HUE_STEP = 0.1  # hue gap between species of one genus; genera of an order are spread round the wheel


@dataclass(frozen=True)
class Species:
    id: int
    name: str
    cls: str
    order: str
    family: str
    n_train: int

    @property
    def genus(self) -> str:
        return self.name.split()[0]

    @property
    def supercategory(self) -> str:
        return _TAXON[self.cls][0]


def species_table() -> list[Species]:
    """The 22 species; the category id is the table position (0..21)."""
    return [Species(i, *row) for i, row in enumerate(_SPECIES)]


def glyphs(species: list[Species]) -> dict[int, Glyph]:
    """Species id -> glyph: order -> shape, family -> texture, genus -> hue sector, species -> hue step."""
    out: dict[int, Glyph] = {}
    orders = list(dict.fromkeys(s.order for s in species))
    for oi, order in enumerate(orders):
        members = [s for s in species if s.order == order]
        families = list(dict.fromkeys(s.family for s in members))
        genera = list(dict.fromkeys(s.genus for s in members))
        genus_hue = dict(zip(genera, spread_hues(len(genera), start=0.17 * oi)))
        seen: dict[str, int] = {}
        for s in members:
            k = seen[s.genus] = seen.get(s.genus, -1) + 1
            tex = FAMILY_TEXTURES[families.index(s.family) % len(FAMILY_TEXTURES)]
            out[s.id] = Glyph(SHAPE_OF_ORDER[order], genus_hue[s.genus] + SISTER_HUE_STEP * k, tex)
    return out


def _category(s: Species, *, real: bool, index: dict[str, dict[str, int]]) -> dict:
    """A category record: real names (categories.json) or obfuscated ones (the split files)."""
    _, kingdom, phylum = _TAXON[s.cls]
    ranks = {"kingdom": kingdom, "phylum": phylum, "class": s.cls, "order": s.order,
             "family": s.family, "genus": s.genus}
    if not real:  # e.g. "Order_03": stable per name, like the release's opaque names
        ranks = {r: f"{r.capitalize()}_{index[r].setdefault(n, len(index[r])):02d}" for r, n in ranks.items()}
    return {"id": s.id, "name": s.name if real else str(s.id), "supercategory": s.supercategory, **ranks}


_LICENSES = [
    {"id": 1, "name": "Attribution-NonCommercial License", "url": "http://creativecommons.org/licenses/by-nc/4.0/"},
    {"id": 2, "name": "Attribution License", "url": "http://creativecommons.org/licenses/by/4.0/"},
    {"id": 3, "name": "Attribution-ShareAlike License", "url": "http://creativecommons.org/licenses/by-sa/4.0/"},
    {"id": 4, "name": "No known copyright restrictions", "url": "http://flickr.com/commons/usage/"},
]


def _info(split: str) -> dict:
    return {"year": 2018, "version": "1.0", "description": f"task-sweep synthetic mini iNat2018 ({split})",
            "contributor": "task-sweep tasks.mini", "url": "https://github.com/visipedia/inat_comp",
            "date_created": "2018-02-22 00:00:00"}


def write(root: Path, rng: np.random.Generator, *, scale: int = 1) -> Path:
    """Write the dataset under ``root`` (created); returns ``root``. ``scale`` multiplies every image count."""
    species = species_table()
    looks = glyphs(species)
    index: dict[str, dict[str, int]] = {r: {} for r in ("kingdom", "phylum", "class", "order", "family", "genus")}
    obfuscated = [_category(s, real=False, index=index) for s in species]
    next_id = 0
    for split, count in (("train", lambda s: s.n_train), ("val", lambda s: N_VAL)):
        jobs = [s for s in species for _ in range(count(s) * scale)]
        images, annotations = [], []
        for j in rng.permutation(len(jobs)):  # the real files are not grouped by species
            s = jobs[j]
            rel = f"train_val2018/{s.supercategory}/{s.id}/{rng.bytes(16).hex()}.jpg"
            pixels, _ = draw_glyph(rng, BACKDROPS[s.cls], looks[s.id])
            save_jpeg(pixels, root / rel)
            images.append({"id": next_id, "width": pixels.shape[1], "height": pixels.shape[0], "file_name": rel,
                           "license": int(rng.integers(1, len(_LICENSES) + 1)), "rights_holder": "task-sweep"})
            annotations.append({"id": next_id, "image_id": next_id, "category_id": s.id})
            next_id += 1
        manifest = {"info": _info(split), "images": images, "categories": obfuscated,
                    "annotations": annotations, "licenses": _LICENSES}
        (root / f"{split}2018.json").write_text(json.dumps(manifest), encoding="utf-8")
    real = [_category(s, real=True, index=index) for s in species]
    (root / "categories.json").write_text(json.dumps(real), encoding="utf-8")
    return root
