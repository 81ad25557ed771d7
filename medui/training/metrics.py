"""Evaluation metrics without extra dependencies: ROC/PR curves, AUC with a bootstrap interval,
confusion matrix and operating-point statistics, calibration, threshold choice, temperature."""

from __future__ import annotations

import numpy as np


def roc_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and thresholds (decreasing), like scikit-learn's."""
    y = np.asarray(y).astype(bool)
    order = np.argsort(-np.asarray(p, float), kind="mergesort")
    ps, ys = np.asarray(p, float)[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(ps))[0], len(ps) - 1]
    tps = np.cumsum(ys)[distinct]
    fps = (distinct + 1) - tps
    pos, neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    tpr = np.r_[0.0, tps / pos]
    fpr = np.r_[0.0, fps / neg]
    thr = np.r_[np.inf, ps[distinct]]
    return fpr, tpr, thr


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    y = np.asarray(y).astype(bool)
    if y.all() or (~y).all():
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(p)
    n_pos, n_neg = y.sum(), (~y).sum()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_ci(y: np.ndarray, p: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC (resampling cases)."""
    rng = np.random.default_rng(seed)
    y, p = np.asarray(y), np.asarray(p)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() != y[idx].max():
            values.append(auc(y[idx], p[idx]))
    if not values:
        return float("nan"), float("nan")
    return float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))


def pr_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision as the threshold falls."""
    _, tpr, thr = roc_curve(y, p)
    y = np.asarray(y).astype(bool)
    precision = [1.0]
    for t in thr[1:]:
        called = np.asarray(p) >= t
        precision.append(float((called & y).sum() / max(called.sum(), 1)))
    return tpr, np.asarray(precision)


def at_threshold(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    """Confusion matrix [[TN, FP], [FN, TP]] and sensitivity, specificity, PPV, NPV, accuracy."""
    y = np.asarray(y).astype(bool)
    called = np.asarray(p) >= threshold
    tp, fp = int((called & y).sum()), int((called & ~y).sum())
    fn, tn = int((~called & y).sum()), int((~called & ~y).sum())

    def ratio(a: int, b: int) -> float:
        return float(a / b) if b else float("nan")

    return {"threshold": float(threshold), "confusion_matrix": [[tn, fp], [fn, tp]],
            "sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp), "ppv": ratio(tp, tp + fp),
            "npv": ratio(tn, tn + fn), "accuracy": ratio(tp + tn, len(y))}


def choose_threshold(y: np.ndarray, p: np.ndarray, min_sensitivity: float | None = None) -> tuple[float, str]:
    """Youden's J by default; or the highest threshold whose sensitivity reaches `min_sensitivity`."""
    fpr, tpr, thr = roc_curve(y, p)
    finite = np.isfinite(thr)
    if min_sensitivity is not None:
        ok = np.nonzero((tpr >= min_sensitivity) & finite)[0]
        k = int(ok[0]) if len(ok) else int(np.nonzero(finite)[0][-1])
        method = f"highest threshold reaching sensitivity >= {min_sensitivity:.2f} on held-out data"
    else:
        j = np.where(finite, tpr - fpr, -np.inf)
        k = int(np.argmax(j))
        method = "Youden's J (max sensitivity + specificity - 1) on held-out data"
    # Any cut between this score and the next lower one classifies the held-out data the same way:
    # take the midpoint (in logit space) rather than sitting on the lowest positive's score.
    t = float(thr[k])
    if k + 1 < len(thr) and np.isfinite(thr[k + 1]):
        lo, hi = (float(np.clip(v, 1e-6, 1 - 1e-6)) for v in (thr[k + 1], thr[k]))
        logit = (np.log(lo / (1 - lo)) + np.log(hi / (1 - hi))) / 2
        t = float(1 / (1 + np.exp(-logit)))
    return float(np.clip(t, 1e-4, 1 - 1e-4)), method


def calibration_curve(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict:
    """Reliability curve: mean predicted probability and observed frequency per bin, and ECE."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    mean_p, freq, count = [], [], []
    for b in range(bins):
        m = which == b
        if m.any():
            mean_p.append(float(p[m].mean()))
            freq.append(float(y[m].mean()))
            count.append(int(m.sum()))
    ece = float(sum(c * abs(a - f) for a, f, c in zip(mean_p, freq, count)) / max(len(y), 1))
    return {"mean_predicted": mean_p, "observed": freq, "count": count, "ece": ece}


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature T minimising the binary log-loss of sigmoid(logit / T) on held-out data."""
    from scipy.optimize import minimize_scalar

    z, y = np.asarray(logits, float).reshape(-1), np.asarray(y, float)

    def nll(log_t: float) -> float:
        q = 1 / (1 + np.exp(-z / np.exp(log_t)))
        q = np.clip(q, 1e-7, 1 - 1e-7)
        return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean())

    res = minimize_scalar(nll, bounds=(-3, 3), method="bounded")
    return float(np.exp(res.x))
