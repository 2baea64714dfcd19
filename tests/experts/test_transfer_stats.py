"""Spearman of Task2Vec distances against D_ft, the per-pair seed spread, the scatter figure."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from experts.transfer_stats import distance_vs_transfer, pair_means, scatter_plot, spearman


def test_spearman_is_rank_based_and_skips_missing_values() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, np.nan, 5.0])
    c = spearman(x, x**3)  # monotone, not linear: ρ = 1 exactly
    assert math.isclose(c.rho, 1.0) and c.n_pairs == 5 and c.p_value < 0.05
    assert math.isclose(spearman(x, -x).rho, -1.0)
    assert math.isclose(spearman([1, 2, 3, 4], [1, 3, 2, 4]).rho, 0.8)  # 1 − 6·2/(4·15)


def test_spearman_is_nan_when_undefined() -> None:
    assert math.isnan(spearman([1, 2], [2, 1]).rho)  # too few pairs
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5]).rho)  # constant


def test_distance_vs_transfer_reports_both_distances() -> None:
    rng = np.random.default_rng(0)
    d_ft = rng.normal(size=30)
    out = distance_vs_transfer(d_ft + 0.01 * rng.normal(size=30), -d_ft, d_ft)
    assert out["d_asym"].rho > 0.95 and math.isclose(out["d_sym"].rho, -1.0)


def test_pair_means_average_seeds_with_their_spread() -> None:
    stats = pair_means(["a", "a", "b", "a"], ["x", "x", "x", "y"], [0.1, 0.3, None, -0.2])
    by = {(s.source, s.target): s for s in stats}
    assert math.isclose(by["a", "x"].d_ft_mean, 0.2) and math.isclose(by["a", "x"].d_ft_std, 0.1)
    assert by["a", "x"].n_seeds == 2 and by["a", "y"].d_ft_std == 0.0
    assert by["b", "x"].n_seeds == 0 and math.isnan(by["b", "x"].d_ft_mean)  # kept, not dropped


def test_scatter_plot_writes_a_png(tmp_path) -> None:
    x = np.linspace(0, 1, 8)
    path = scatter_plot(x, x[::-1], x**2, tmp_path / "fig" / "transfer.png", d_ft_std=np.full(8, 0.05), title="t")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 500
