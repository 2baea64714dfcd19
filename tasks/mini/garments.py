"""Clothing images for the two fashion datasets: a `Garment` spec drawn as a silhouette with fabric,
pattern and detail layers. Each field of the spec is a visible feature, so a binary label tied to a
field is learnable from the pixels.

Garments are drawn in a unit frame (x in [-0.5, 0.5], y in [0, 1] from the top), then rotated by
up to 6 degrees, scaled to 82-92 % of the image side and jittered by up to 3 px. The scale does not
depend on the garment, so a maxi dress is taller than a mini dress in pixels too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from tasks.mini.images import (GRID_X, GRID_Y, SIZE, SUPERSAMPLE, Backdrop, Polygon, finish, hsv, paint, place,
                               polygon_mask, smooth_noise, texture, two_tone)

KINDS = ("tee", "blouse", "jacket", "shorts", "skirt", "jeans", "dress", "romper")
PATTERNS = ("plain", "stripes", "checks", "plaid", "dots", "chevron", "colorblock", "floral")
FABRICS = ("cotton", "denim", "leather", "knit", "chiffon")
WHITE = (0.95, 0.95, 0.93)


@dataclass(frozen=True)
class Garment:
    kind: str  # one of KINDS: the silhouette
    color: tuple[float, float, float]  # dominant colour (denim and leather override it)
    pattern: str = "plain"  # one of PATTERNS, drawn in pattern_color
    pattern_color: tuple[float, float, float] = WHITE
    fabric: str = "cotton"  # one of FABRICS
    length: str = "regular"  # regular | mini | maxi (skirt and dress only)
    flare: bool = False  # a-line hem (skirt and dress only)
    pleats: bool = False  # thin vertical fold lines
    sleeves: str = "short"  # none | short | long (tee, blouse, jacket, dress, romper)
    vneck: bool = False  # V cut at the neck instead of a round one (tops and full-body)
    pockets: bool = False  # patch-pocket outlines
    sparkles: bool = False  # bright sequin specks ("party")
    warm_backdrop: bool = False  # sunny yellow background instead of a grey studio ("summer")


def _trap(y0: float, y1: float, w0: float, w1: float) -> Polygon:
    return [(-w0, y0), (w0, y0), (w1, y1), (-w1, y1)]


def _mirror(poly: Polygon) -> Polygon:
    return [(-x, y) for x, y in poly]


def _legs(y0: float, y1: float, crotch: float, w0: float, w1: float) -> Polygon:
    return [(-w0, y0), (w0, y0), (w1, y1), (0.035, y1), (0, crotch), (-0.035, y1), (-w1, y1)]


def _sleeves(kind: str, y0: float, w: float) -> list[Polygon]:
    if kind == "none":
        return []
    if kind == "short":
        left = [(-w, y0), (-w, y0 + 0.2), (-w - 0.14, y0 + 0.27), (-w - 0.22, y0 + 0.12)]
    else:
        left = [(-w, y0), (-w, y0 + 0.2), (-w - 0.13, y0 + 0.62), (-w - 0.26, y0 + 0.57)]
    return [left, _mirror(left)]


def _neck(y0: float, vneck: bool) -> Polygon:
    if vneck:
        return [(-0.1, y0 - 0.02), (0.1, y0 - 0.02), (0.0, y0 + 0.22)]
    return [(0.075 * math.cos(t), y0 + 0.06 * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 16, endpoint=False)]


def silhouette(g: Garment) -> tuple[list[Polygon], list[Polygon], list[Polygon]]:
    """(filled polygons, holes, detail outlines) of a garment in the unit frame."""
    hem = {"regular": 0.0, "mini": -0.2, "maxi": 0.18}[g.length]
    flare = 0.16 if g.flare else 0.0
    pockets: list[Polygon] = []
    if g.kind in ("tee", "blouse", "jacket"):
        w, bottom = (0.18, 0.72) if g.kind == "blouse" else (0.2, 0.76 if g.kind == "jacket" else 0.72)
        fills = [_trap(0.1, bottom, w, 0.25 if g.kind == "blouse" else w)] + _sleeves(g.sleeves, 0.1, w)
        holes = [_neck(0.1, g.vneck)]
        details = [[(0.0, 0.16), (0.0, bottom)]] if g.kind == "jacket" else []
        pockets = [[(0.05, 0.24), (0.15, 0.24), (0.15, 0.34), (0.05, 0.34)]]
    elif g.kind in ("shorts", "jeans", "skirt"):
        if g.kind == "shorts":
            fills = [_legs(0.1, 0.5, 0.3, 0.22, 0.26)]
        elif g.kind == "jeans":
            fills = [_legs(0.04, 0.97, 0.34, 0.2, 0.22)]
        else:
            fills = [_trap(0.1, 0.62 + hem, 0.18, 0.27 + flare)]
        top = fills[0][0][1]
        holes, details = [], [[(-0.2, top + 0.05), (0.2, top + 0.05)]]  # waistband seam
        pockets = [[(0.06, top + 0.08), (0.16, top + 0.08), (0.16, top + 0.18), (0.06, top + 0.18)]]
    else:  # dress, romper
        fills = [_trap(0.06, 0.39, 0.16, 0.14)] + _sleeves(g.sleeves, 0.06, 0.16)
        if g.kind == "dress":
            fills.append(_trap(0.37, 0.78 + hem, 0.14, 0.26 + flare))
        else:
            fills.append(_legs(0.37, 0.66, 0.5, 0.17, 0.22))
        holes, details = [_neck(0.06, g.vneck)], [[(-0.15, 0.38), (0.15, 0.38)]]
        pockets = [[(0.05, 0.45), (0.14, 0.45), (0.14, 0.54), (0.05, 0.54)]]
    if g.pockets:
        details += [p + p[:1] for p in pockets] + [_mirror(p) + _mirror(p)[:1] for p in pockets]
    return fills, holes, details


def _line_mask(lines: list[Polygon]) -> np.ndarray:
    im = Image.new("L", (SIZE * SUPERSAMPLE, SIZE * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(im)
    for line in lines:
        draw.line([(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in line], fill=255, width=SUPERSAMPLE)
    return np.asarray(im.resize((SIZE, SIZE), Image.Resampling.BOX), dtype=np.float32) / 255.0


def _pattern_fill(g: Garment, rng: np.random.Generator, base: np.ndarray, *, cx: float,
                  mask: np.ndarray) -> np.ndarray:
    """(H, W, 3) garment colour with its printed pattern (``mask`` places the flowers)."""
    other = np.asarray(g.pattern_color, np.float32)
    if g.pattern == "plain":
        return np.broadcast_to(base, (SIZE, SIZE, 3)).copy()
    if g.pattern == "stripes":
        return two_tone(base, other, texture("stripes", rng, period=5.0, angle_deg=90))
    if g.pattern == "checks":
        return two_tone(base, other, texture("checks", rng, period=5.0, angle_deg=rng.uniform(-5, 5)))
    if g.pattern == "plaid":
        p = 0.5 * texture("stripes", rng, period=6.0, angle_deg=0) + 0.5 * texture("stripes", rng, period=6.0,
                                                                                    angle_deg=90)
        return two_tone(base, other, p)
    if g.pattern == "dots":
        return two_tone(base, other, texture("dots", rng, period=6.0, angle_deg=rng.uniform(-20, 20)))
    if g.pattern == "chevron":
        return two_tone(base, other, texture("zigzag", rng, period=6.0, angle_deg=90))
    if g.pattern == "colorblock":
        return two_tone(base, other, (GRID_X > cx + rng.uniform(-3, 3)).astype(np.float32))
    if g.pattern == "floral":
        fill = np.broadcast_to(base, (SIZE, SIZE, 3)).copy()
        ys_on, xs_on = np.nonzero(mask > 0.5)
        for i in rng.choice(len(xs_on), size=min(len(xs_on), 16), replace=False):
            fx, fy, r = xs_on[i], ys_on[i], rng.uniform(1.6, 2.8)
            d2 = (GRID_X - fx) ** 2 + (GRID_Y - fy) ** 2
            fill[d2 < r * r] = hsv(rng.random(), 0.75, 0.95)
            fill[d2 < 0.3 * r * r] = (0.98, 0.85, 0.2)
        return fill
    raise ValueError(f"unknown pattern {g.pattern!r}; known: {', '.join(PATTERNS)}")


def _fabric(g: Garment, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """(base colour, opacity): denim and leather have their own colour; chiffon is pale and sheer."""
    jitter = rng.normal(0.0, 0.03, 3).astype(np.float32)
    if g.fabric == "denim":
        return hsv(0.61 + rng.normal(0, 0.015), 0.6, rng.uniform(0.38, 0.55)) + jitter, 1.0
    if g.fabric == "leather":
        return hsv(0.07, 0.45, rng.uniform(0.1, 0.18)) + jitter, 1.0
    color = np.asarray(g.color, np.float32) + jitter
    if g.fabric == "chiffon":
        return 0.45 * color + 0.55, 0.55
    return color, 1.0


def _surface(g: Garment, rng: np.random.Generator, fill: np.ndarray) -> np.ndarray:
    """Fabric weave and shading on top of the printed fill."""
    if g.fabric == "denim":
        fill = fill * (1.0 - 0.18 * texture("stripes", rng, period=2.5, angle_deg=45))[..., None]
    elif g.fabric == "leather":
        fill = fill + 0.2 * np.clip(smooth_noise(rng, 3), 0.0, None)[..., None]  # glossy highlights
    elif g.fabric == "knit":
        ribs = texture("stripes", rng, period=2.5, angle_deg=90) * 0.6 + 0.4 * texture("grain", rng, period=2.0)
        fill = fill * (1.0 - 0.2 * ribs)[..., None]
    if g.pleats:
        folds = (np.sin(2 * np.pi * GRID_X / 4.5 + rng.uniform(0, 6.3)) > 0.75).astype(np.float32)
        fill = fill * (1.0 - 0.3 * folds)[..., None]
    return fill * (1.0 + 0.06 * smooth_noise(rng, 4))[..., None]


def render_garment(rng: np.random.Generator, g: Garment) -> tuple[np.ndarray, np.ndarray]:
    """One photo of a garment; returns (uint8 (H, W, 3) image, (H, W) garment mask)."""
    if g.warm_backdrop:
        backdrop = Backdrop(tuple(hsv(0.13 + rng.normal(0, 0.01), 0.45, 0.95)), cells=4, amp=0.06)
    else:
        backdrop = Backdrop(tuple(hsv(rng.random(), 0.04, rng.uniform(0.82, 0.92))), cells=3, amp=0.04)
    canvas = backdrop.render(rng)
    fills, holes, details = silhouette(g)
    ys = [y for poly in fills for _, y in poly]
    scale = SIZE * rng.uniform(0.82, 0.92)
    cx = SIZE / 2 + rng.uniform(-3, 3)
    cy = SIZE / 2 - scale * (min(ys) + max(ys)) / 2 + rng.uniform(-3, 3)
    kw = dict(cx=cx, cy=cy, scale=scale, angle_deg=rng.uniform(-6, 6))
    mask = polygon_mask([place(p, **kw) for p in fills], [place(p, **kw) for p in holes])
    base, opacity = _fabric(g, rng)
    fill = _surface(g, rng, _pattern_fill(g, rng, base, cx=cx, mask=mask))
    fill = fill * (1.0 - 0.45 * _line_mask([place(p, **kw) for p in details]))[..., None]
    if g.sparkles:
        ys_on, xs_on = np.nonzero(mask > 0.9)
        for i in rng.choice(len(xs_on), size=min(len(xs_on), 22), replace=False):
            fill[ys_on[i]:ys_on[i] + 2, xs_on[i]:xs_on[i] + 2] = (1.0, 0.97, 0.8)
    canvas = paint(canvas, mask * opacity, fill)
    return finish(canvas, rng, noise=0.02), mask
