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

What depends only on the rows, not on the labels (the eigen-decomposition of FᵀF, the inverse of the
shrunk covariance, the source predictive distribution) is a ``ScoreBasis``, made once per row set by
``score_basis``: every binary task of a source has the same training rows, so a heads unit scores its
hundreds of tasks on one basis (``basis_scores``) instead of decomposing the same matrices per task.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.covariance import LedoitWolf


def logme(features: np.ndarray, labels: np.ndarray, *, max_iter: int = 11, tol: float = 1e-3) -> float:
    """LogME of ``features`` for ``labels`` (K ≥ 2 classes; one regression per one-hot column)."""
    f = np.asarray(features, dtype=np.float64)
    sigma, eigvecs = _gram_eigen(f)
    return _logme(f, np.asarray(labels), sigma, eigvecs, max_iter=max_iter, tol=tol)


def _gram_eigen(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """σ_i (the squared singular values of ``f``, clipped at 0) and the eigenvectors of FᵀF."""
    eigvals, eigvecs = np.linalg.eigh(f.T @ f)
    return np.clip(eigvals, 0.0, None), eigvecs


def _logme(f: np.ndarray, y: np.ndarray, sigma: np.ndarray, eigvecs: np.ndarray, *, max_iter: int = 11,
           tol: float = 1e-3) -> float:
    n = len(f)
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
    zi, yi = _codes(source_labels), _codes(labels)
    width = int(yi.max()) + 1
    joint = np.bincount(zi * width + yi, minlength=(int(zi.max()) + 1) * width).reshape(-1, width) / len(yi)
    p_z = np.broadcast_to(joint.sum(1, keepdims=True), joint.shape)
    mask = joint > 0
    return float((joint[mask] * np.log(joint[mask] / p_z[mask])).sum())  # Σ P(y, z) log P(y | z)


def _codes(labels: np.ndarray) -> np.ndarray:
    """Integer labels as codes 0..: themselves when none is negative (no sort), else their ranks."""
    labels = np.asarray(labels)
    return labels if labels.min() >= 0 else np.unique(labels, return_inverse=True)[1]


def hscore(features: np.ndarray, labels: np.ndarray) -> float:
    """Regularised H-score: tr(Σ_LW⁻¹ cov(E[F | y])) with Σ_LW the Ledoit-Wolf covariance of F."""
    centred, cov_pinv = _shrunk_inverse(np.asarray(features, dtype=np.float64))
    return _hscore(centred, cov_pinv, np.asarray(labels))


def _shrunk_inverse(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``f`` centred, and the pseudo-inverse of its Ledoit-Wolf covariance."""
    centred = f - f.mean(0)
    cov = LedoitWolf(assume_centered=True).fit(centred).covariance_
    return centred, np.linalg.pinv(cov, hermitian=True)


def _hscore(centred: np.ndarray, cov_pinv: np.ndarray, y: np.ndarray) -> float:
    """tr(Σ⁻¹ B) with B = Σ_k n_k μ_k μ_kᵀ / n, μ_k the class means of the centred features."""
    yi = _codes(y)
    counts = np.bincount(yi)
    sums = (np.eye(len(counts))[yi].T @ centred)[counts > 0]  # (K, D) class sums (np.add.at is slow)
    counts = counts[counts > 0]
    between = sums.T @ (sums / counts[:, None]) / len(centred)
    return float(np.trace(cov_pinv @ between))


@dataclass(frozen=True)
class ScoreBasis:
    """What every task scored on the same rows shares (``score_basis``); the labels come per task."""

    features: np.ndarray  # (n, D) float64
    sigma: np.ndarray  # LogME: eigenvalues of FᵀF, clipped at 0
    eigvecs: np.ndarray  # LogME: eigenvectors of FᵀF
    centred: np.ndarray  # H-score: F minus its column means
    cov_pinv: np.ndarray  # H-score: pseudo-inverse of the Ledoit-Wolf covariance
    probs: np.ndarray | None  # LEEP: the source head's softmax, (n, Z); None without a head
    source_labels: np.ndarray | None  # NCE: the source head's argmax, (n,)


def score_basis(features: np.ndarray, source_logits: np.ndarray | None) -> ScoreBasis:
    """The label-free part of ``all_scores`` for these rows (one eigen-decomposition, one covariance fit)."""
    f = np.asarray(features, dtype=np.float64)
    sigma, eigvecs = _gram_eigen(f)
    centred, cov_pinv = _shrunk_inverse(f)
    probs = labels = None
    if source_logits is not None:
        e = np.exp(source_logits - source_logits.max(1, keepdims=True))
        probs, labels = e / e.sum(1, keepdims=True), source_logits.argmax(1)
    return ScoreBasis(f, sigma, eigvecs, centred, cov_pinv, probs, labels)


def basis_scores(basis: ScoreBasis, labels: np.ndarray) -> dict[str, float | None]:
    """The four scores of one task whose training rows are ``basis``'s; LEEP/NCE None without a source head."""
    y = np.asarray(labels)
    return {"logme": _logme(basis.features, y, basis.sigma, basis.eigvecs),
            "hscore": _hscore(basis.centred, basis.cov_pinv, y),
            "leep": None if basis.probs is None else leep(basis.probs, y),
            "nce": None if basis.source_labels is None else nce(basis.source_labels, y)}


def all_scores(features: np.ndarray, labels: np.ndarray, source_logits: np.ndarray | None) -> dict[str, float | None]:
    """The four scores of one (expert, task) on its training rows; LEEP/NCE None without a source head."""
    return basis_scores(score_basis(features, source_logits), labels)
