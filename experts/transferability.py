"""Forward-only transferability scores of an expert's features for a target task (higher = better).

All four use only a forward pass: the expert's features ``F`` ``(n, D)`` on the target's training
images, the target labels ``y`` ``(n,)`` in 0..K-1 (binary tasks: K = 2), and for LEEP/NCE the
expert's own classifier outputs on those images.

- ``logme``: You et al. 2021, the log marginal evidence of a Bayesian linear regression of each
  one-hot target column on ``F``, maximised over the prior precision α and noise precision β by the
  published fixed-point iteration, divided by n and averaged over the K columns.
- ``leep``: Nguyen et al. 2020, the mean log-likelihood of the "expected empirical predictor"
  built from the source predictive distribution θ(x) and the empirical P(y | z).
- ``nce``: Tran et al. 2019, the negative conditional entropy −H(Y | Z) of the target labels given
  hard source labels Z (we take Z = the argmax of the expert's own head).
- ``hscore``: Bao et al. 2019, tr(cov(F)⁻¹ cov(E[F | y])), regularised as in Ibrahim et al. 2022
  with the Ledoit-Wolf shrinkage estimate of cov(F) (scikit-learn).
"""

from __future__ import annotations

import numpy as np
from sklearn.covariance import LedoitWolf


def logme(features: np.ndarray, labels: np.ndarray, *, max_iter: int = 11, tol: float = 1e-3) -> float:
    """LogME of ``features`` for ``labels`` (K ≥ 2 classes; one regression per one-hot column)."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    n, dim = f.shape
    eigvals, eigvecs = np.linalg.eigh(f.T @ f)  # σ_i = squared singular values, (D,)
    sigma = np.clip(eigvals, 0.0, None)
    evidences = []
    for k in range(max(2, int(y.max()) + 1)):
        target = (y == k).astype(np.float64)
        evidences.append(_logme_column(f, target, sigma, eigvecs, max_iter, tol) / n)
    return float(np.mean(evidences))


def _logme_column(f: np.ndarray, y: np.ndarray, sigma: np.ndarray, v: np.ndarray, max_iter: int, tol: float) -> float:
    n, dim = f.shape
    x2 = (v.T @ (f.T @ y)) ** 2 / np.where(sigma > 1e-12, sigma, np.inf)  # (u_iᵀy)² per direction
    res_x2 = max(float(y @ y - x2.sum()), 0.0)  # the part of y outside the span of F
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        t = alpha / beta
        gamma = float((sigma / (sigma + t)).sum())
        m2 = float((sigma * x2 / (t + sigma) ** 2).sum())
        res2 = float((x2 / (1 + sigma / t) ** 2).sum()) + res_x2
        alpha = gamma / (m2 + 1e-5)
        beta = (n - gamma) / (res2 + 1e-5)
        if abs(alpha / beta - t) / t < tol:
            break
    t = alpha / beta
    m2 = float((sigma * x2 / (t + sigma) ** 2).sum())
    res2 = float((x2 / (1 + sigma / t) ** 2).sum()) + res_x2
    return (dim / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.log(alpha + beta * sigma).sum()
            - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP from the expert's predictive distribution ``source_probs`` ``(n, Z)`` (rows sum to 1)."""
    theta = np.asarray(source_probs, dtype=np.float64)
    y = np.asarray(labels)
    onehot = np.eye(max(2, int(y.max()) + 1))[y]  # (n, K)
    joint = onehot.T @ theta / len(y)  # P(y, z), (K, Z)
    cond = joint / np.clip(joint.sum(0, keepdims=True), 1e-300, None)  # P(y | z)
    eep = theta @ cond.T  # (n, K): Σ_z P(y | z) θ_z(x)
    return float(np.mean(np.log(np.clip(eep[np.arange(len(y)), y], 1e-300, None))))


def nce(source_labels: np.ndarray, labels: np.ndarray) -> float:
    """NCE = −H(Y | Z) in nats for hard source labels Z and target labels Y (both integer)."""
    z = np.asarray(source_labels)
    y = np.asarray(labels)
    _, zi = np.unique(z, return_inverse=True)
    _, yi = np.unique(y, return_inverse=True)
    joint = np.zeros((zi.max() + 1, yi.max() + 1))
    np.add.at(joint, (zi, yi), 1.0)
    joint /= len(y)
    cond = joint / joint.sum(1, keepdims=True)  # P(y | z)
    mask = joint > 0
    return float((joint[mask] * np.log(cond[mask])).sum())


def hscore(features: np.ndarray, labels: np.ndarray) -> float:
    """Regularised H-score: tr(Σ_LW⁻¹ cov(E[F | y])) with Σ_LW the Ledoit-Wolf covariance of F."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    f = f - f.mean(0)
    class_means = np.zeros_like(f)
    for k in np.unique(y):
        class_means[y == k] = f[y == k].mean(0)
    between = class_means.T @ class_means / len(f)
    cov = LedoitWolf(assume_centered=True).fit(f).covariance_
    return float(np.trace(np.linalg.pinv(cov, hermitian=True) @ between))


def all_scores(features: np.ndarray, labels: np.ndarray, source_logits: np.ndarray | None) -> dict[str, float | None]:
    """The four scores of one (expert, task) on its training rows; LEEP/NCE None without a source head."""
    out: dict[str, float | None] = {"logme": logme(features, labels), "hscore": hscore(features, labels),
                                    "leep": None, "nce": None}
    if source_logits is not None:
        z = source_logits - source_logits.max(1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        out["leep"] = leep(probs, labels)
        out["nce"] = nce(source_logits.argmax(1), labels)
    return out
