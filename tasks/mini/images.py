"""Drawing primitives for the mini datasets: backdrops, shapes, textures and JPEG output.

Images are ``SIZE``x``SIZE`` RGB. Until `save_jpeg`, a canvas is a float32 array of shape
(H, W, 3) with values in about [0, 1]. Every random choice comes from the `np.random.Generator`
that the caller passes, so an image is a pure function of the generator's state.

The taxonomic "visual grammar" (which rank decides which feature) lives in the dataset writers.
This module only knows how to draw.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
JPEG_QUALITY = 90
SUPERSAMPLE = 2  # masks are drawn at 2x and box-filtered down, which anti-aliases the edges

Polygon = list[tuple[float, float]]
GRID_Y, GRID_X = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)  # pixel coordinates, shared by all images


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """RGB (3,) float32 of a hue in turns (wrapped) and a saturation and value clipped to [0, 1]."""
    rgb = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return np.asarray(rgb, dtype=np.float32)


def smooth_noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    """(H, W) noise of unit scale: a cells x cells Gaussian grid, upsampled bicubically.

    Few cells give soft blotches (sky); many cells give fine grain (soil).
    """
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(grid).resize((SIZE, SIZE), Image.Resampling.BICUBIC))


@dataclass(frozen=True)
class Backdrop:
    """A background style: base colour plus luminance noise at one spatial scale."""

    rgb: tuple[float, float, float]
    cells: int  # noise grid size: the texture scale of the background
    amp: float  # noise amplitude

    def render(self, rng: np.random.Generator) -> np.ndarray:
        base = np.asarray(self.rgb, dtype=np.float32) + rng.normal(0.0, 0.03, 3).astype(np.float32)
        lum = smooth_noise(rng, self.cells) * self.amp
        return np.broadcast_to(base, (SIZE, SIZE, 3)) + lum[..., None]


def _regular(n: int, r: float = 1.0, phase: float = -math.pi / 2) -> Polygon:
    return [(r * math.cos(phase + 2 * math.pi * k / n), r * math.sin(phase + 2 * math.pi * k / n)) for k in range(n)]


def _star(n: int, inner: float) -> Polygon:
    outer, inn = _regular(n), _regular(n, inner, -math.pi / 2 + math.pi / n)
    return [p for pair in zip(outer, inn) for p in pair]


def _rect(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


# Unit shapes (radius about 1, centred on 0), each a list of filled polygons.
SHAPES: dict[str, list[Polygon]] = {
    "circle": [_regular(32)],
    "ellipse": [[(x, 0.55 * y) for x, y in _regular(32)]],
    "triangle": [_regular(3)],
    "square": [_regular(4, 0.95, math.pi / 4)],
    "pentagon": [_regular(5)],
    "hexagon": [_regular(6, 1.0, 0.0)],
    "star": [_star(5, 0.45)],
    "cross": [_rect(-1, -0.32, 1, 0.32), _rect(-0.32, -1, 0.32, 1)],
    "bowtie": [[(-1, -0.8), (0.1, 0), (-1, 0.8)], [(1, -0.8), (-0.1, 0), (1, 0.8)]],
}


def polygon_mask(fills: Sequence[Polygon], holes: Sequence[Polygon] = ()) -> np.ndarray:
    """(H, W) coverage in [0, 1] of polygons given in pixel coordinates, with holes cut out."""
    im = Image.new("L", (SIZE * SUPERSAMPLE, SIZE * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(im)
    for poly, fill in [(p, 255) for p in fills] + [(p, 0) for p in holes]:  # holes after fills
        draw.polygon([(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in poly], fill=fill)
    small = im.resize((SIZE, SIZE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def place(poly: Polygon, *, cx: float, cy: float, scale: float, angle_deg: float) -> Polygon:
    """Rotate a unit polygon, scale it and move its origin to (cx, cy) in pixels."""
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return [(cx + scale * (c * x - s * y), cy + scale * (s * x + c * y)) for x, y in poly]


def shape_mask(shape: str, *, cx: float, cy: float, radius: float, angle_deg: float) -> np.ndarray:
    """(H, W) coverage of one of SHAPES, rotated, scaled to ``radius`` pixels and centred on (cx, cy)."""
    return polygon_mask([place(p, cx=cx, cy=cy, scale=radius, angle_deg=angle_deg) for p in SHAPES[shape]])


TEXTURES = ("plain", "stripes", "dots", "checks", "zigzag", "rings", "grain")


def texture(kind: str, rng: np.random.Generator, *, period: float, angle_deg: float = 0.0,
            center: tuple[float, float] = (SIZE / 2, SIZE / 2)) -> np.ndarray:
    """(H, W) pattern in [0, 1] (1 = the secondary colour), with a random phase.

    ``period`` is in pixels; ``angle_deg`` turns stripes, checks and zigzags.
    """
    a = math.radians(angle_deg)
    u = GRID_X * math.cos(a) + GRID_Y * math.sin(a) + rng.uniform(0, period)
    v = -GRID_X * math.sin(a) + GRID_Y * math.cos(a) + rng.uniform(0, period)
    if kind == "plain":
        return np.zeros((SIZE, SIZE), np.float32)
    if kind == "stripes":
        return (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    if kind == "checks":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if kind == "dots":
        du, dv = u % period - period / 2, v % period - period / 2
        return (du * du + dv * dv < (0.3 * period) ** 2).astype(np.float32)
    if kind == "zigzag":
        tri = np.abs((v / period) % 1.0 - 0.5) * period
        return (np.sin(2 * np.pi * (u + tri) / period) > 0).astype(np.float32)
    if kind == "rings":
        r = np.hypot(GRID_X - center[0], GRID_Y - center[1])
        return (np.sin(2 * np.pi * r / period) > 0).astype(np.float32)
    if kind == "grain":
        return (smooth_noise(rng, max(4, int(SIZE / period * 2))) > 0.3).astype(np.float32)
    raise ValueError(f"unknown texture {kind!r}; known: {', '.join(TEXTURES)}")


def paint(canvas: np.ndarray, mask: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """Alpha-blend ``fill`` ((3,) or (H, W, 3)) onto ``canvas`` where ``mask`` (H, W) covers it."""
    m = mask[..., None]
    return canvas * (1.0 - m) + fill * m


def two_tone(a: np.ndarray, b: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """(H, W, 3) fill: colour ``a`` where the pattern is 0, ``b`` where it is 1."""
    p = pattern[..., None]
    return a * (1.0 - p) + b * p


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2), inclusive pixel bounds of where the mask is at least half on."""
    ys, xs = np.nonzero(mask >= 0.5)
    if len(xs) == 0:
        return 0, 0, SIZE - 1, SIZE - 1
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def finish(canvas: np.ndarray, rng: np.random.Generator, *, noise: float = 0.025) -> np.ndarray:
    """uint8 (H, W, 3) image: canvas plus Gaussian sensor noise, clipped."""
    noisy = canvas + noise * rng.standard_normal(canvas.shape, dtype=np.float32)
    return (np.clip(noisy, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_jpeg(pixels: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, "JPEG", quality=JPEG_QUALITY)


@dataclass(frozen=True)
class Glyph:
    """What identifies a class in iNat and CUB: a shape, a hue and a texture."""

    shape: str
    hue: float  # in turns
    texture: str = "plain"


def draw_glyph(rng: np.random.Generator, backdrop: Backdrop, glyph: Glyph) -> tuple[np.ndarray, np.ndarray]:
    """One image of a glyph with per-image jitter; returns (uint8 image, (H, W) object mask).

    Jitter: position (+-12 % of the side), radius (28-40 %), rotation (+-25 degrees), hue
    (sigma 0.012 turns), saturation and value, texture period and angle, background noise, a
    white-balance cast (per-channel gain, sigma 6 %), and in one image of four a small distractor
    blob of a random hue.
    """
    canvas = backdrop.render(rng)
    cx, cy = SIZE / 2 + rng.uniform(-0.12, 0.12, 2) * SIZE
    radius = SIZE * rng.uniform(0.28, 0.40)
    mask = shape_mask(glyph.shape, cx=cx, cy=cy, radius=radius, angle_deg=rng.uniform(-25, 25))
    h, s, v = glyph.hue + rng.normal(0, 0.012), rng.uniform(0.6, 0.9), rng.uniform(0.65, 0.95)
    pattern = texture(glyph.texture, rng, period=rng.uniform(6.0, 8.0), angle_deg=rng.uniform(-30, 30),
                      center=(cx, cy))
    fill = two_tone(hsv(h, s, v), hsv(h, s * 0.6, v * 0.45), pattern)
    fill = fill * (1.0 + 0.08 * smooth_noise(rng, 4))[..., None]  # soft shading
    canvas = paint(canvas, mask, fill)
    if rng.random() < 0.25:
        dx, dy = rng.uniform(0.1, 0.9, 2) * SIZE
        blob = shape_mask("circle", cx=dx, cy=dy, radius=SIZE * rng.uniform(0.06, 0.1), angle_deg=0.0)
        canvas = paint(canvas, blob, hsv(rng.random(), 0.7, 0.8))
    canvas = canvas * (1.0 + rng.normal(0.0, 0.06, 3)).astype(np.float32)
    return finish(canvas, rng), mask


def spread_hues(n: int, *, start: float, span: float = 1.0) -> list[float]:
    """n hues evenly spaced over ``span`` turns from ``start`` (a full turn never repeats the first)."""
    return [start + span * k / n for k in range(n)]
