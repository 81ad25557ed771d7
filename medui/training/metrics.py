"""Evaluation metrics on scikit-learn and scipy: ROC/PR curves, AUC with a bootstrap interval,
confusion matrix and operating-point statistics, calibration, threshold choice, temperature."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np


def roc_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and thresholds (decreasing, the first +inf)."""
    from sklearn.metrics import roc_curve as sk_roc

    fpr, tpr, thr = sk_roc(np.asarray(y).astype(bool), np.asarray(p, float), drop_intermediate=False)
    return fpr, tpr, thr


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y).astype(bool)
    if y.all() or (~y).all():
        return float("nan")
    return float(roc_auc_score(y, np.asarray(p, float)))


def _auc_rows(y: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mann-Whitney AUC of each row (vectorised for the bootstrap); NaN for one-class rows."""
    from scipy.stats import rankdata

    y = np.asarray(y, bool)
    ranks = rankdata(p, axis=axis)
    n_pos = y.sum(axis=axis)
    n_neg = y.shape[axis] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((np.where(y, ranks, 0).sum(axis=axis) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_ci(y: np.ndarray, p: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC (scipy.stats.bootstrap, cases resampled in pairs).
    Resamples holding one class only have no AUC and are left out."""
    from scipy.stats import bootstrap

    y, p = np.asarray(y).astype(bool), np.asarray(p, float)
    if y.all() or (~y).all():
        return float("nan"), float("nan")
    with warnings.catch_warnings():  # one-class resamples give NaN: scipy's interval warns, ours drops them
        warnings.simplefilter("ignore")
        res = bootstrap((y, p), _auc_rows, paired=True, vectorized=True, n_resamples=n_boot,
                        method="percentile", confidence_level=1 - alpha, rng=np.random.default_rng(seed))
    dist = np.asarray(res.bootstrap_distribution)
    dist = dist[np.isfinite(dist)]
    if not dist.size:
        return float("nan"), float("nan")
    return float(np.quantile(dist, alpha / 2)), float(np.quantile(dist, 1 - alpha / 2))


def pr_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision as the threshold falls (starting at recall 0, precision 1)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(np.asarray(y).astype(bool), np.asarray(p, float))
    return recall[::-1].copy(), precision[::-1].copy()


def at_threshold(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """Confusion matrix [[TN, FP], [FN, TP]] and sensitivity, specificity, PPV, NPV, accuracy."""
    from sklearn.metrics import confusion_matrix

    y = np.asarray(y).astype(bool)
    called = np.asarray(p) >= threshold
    (tn, fp), (fn, tp) = confusion_matrix(y, called, labels=[False, True]).tolist()

    def ratio(a: int, b: int) -> float:
        return float(a / b) if b else float("nan")

    return {"threshold": float(threshold), "confusion_matrix": [[tn, fp], [fn, tp]],
            "sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp), "ppv": ratio(tp, tp + fp),
            "npv": ratio(tn, tn + fn), "accuracy": ratio(tp + tn, len(y))}


def confusion(y: np.ndarray, pred: np.ndarray, n_classes: int) -> list[list[int]]:
    """Multi-class confusion matrix: rows true class, columns predicted."""
    from sklearn.metrics import confusion_matrix

    return [[int(v) for v in row] for row in confusion_matrix(y, pred, labels=list(range(n_classes)))]


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


def calibration_curve(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, Any]:
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
    ece = float(sum(c * abs(a - f) for a, f, c in zip(mean_p, freq, count, strict=True)) / max(len(y), 1))
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


BAND_ERROR_RATE = 0.25
BAND_METHOD = (f"indeterminate band: on each side of the threshold, out to the farthest validation score such that at "
               f"least {BAND_ERROR_RATE:.0%} of the validation cases between it and the threshold are misclassified "
               "(calibrated probabilities; the threshold itself when no case qualifies)")


def indeterminate_band(y: np.ndarray, p: np.ndarray, threshold: float,
                       error_rate: float = BAND_ERROR_RATE) -> list[float]:
    """[low, high] calibrated probabilities around `threshold` where validation calls are unreliable.

    Walking outward from the threshold on each side, a score s is inside the band when, among the
    validation cases between s and the threshold (s included), at least `error_rate` are on the wrong
    side of it (positives below, negatives at or above); low/high are the farthest such scores, the
    threshold itself when there is none. See BAND_METHOD."""
    y, p = np.asarray(y).astype(bool), np.asarray(p, float)

    def edge(scores: np.ndarray, wrong: np.ndarray) -> float:
        if not len(scores):
            return float(threshold)
        rate = np.cumsum(wrong) / np.arange(1, len(scores) + 1)
        inside = np.nonzero(rate >= error_rate)[0]
        return float(scores[inside[-1]]) if len(inside) else float(threshold)

    below = p < threshold
    down = np.argsort(-p[below], kind="stable")  # nearest the threshold first
    up = np.argsort(p[~below], kind="stable")
    low = edge(p[below][down], y[below][down])
    high = edge(p[~below][up], ~y[~below][up])
    return [min(low, float(threshold)), max(high, float(threshold))]


TEMPERATURE_RANGE = (0.2, 5.0)
MIN_LOGIT_SD = 0.25  # calibrated validation logits varying less than this: every score is about the same


def calibration_check(temperature: float | None, p: np.ndarray) -> str | None:
    """Why the calibration makes the scores meaningless, or None when it is sane.

    Temperature scaling divides logits by T: T above 5 squeezes every probability towards 0.5 (the
    model's scores did not separate the validation classes), T below 0.2 pushes them to 0 and 1. Either,
    or calibrated validation probabilities whose logits have a standard deviation under 0.25 (all about
    the same score; the logit scale does not flag a useful model on rare disease), fails evaluation."""
    advice = ("Do not use this model: train longer, on more or better-labelled data, or from another "
              "starting point")
    lo_t, hi_t = TEMPERATURE_RANGE
    if temperature is not None and not lo_t <= temperature <= hi_t:
        effect = "flattens every score towards 0.5" if temperature > hi_t else "pushes every score to 0 or 1"
        return (f"calibration failed: the fitted temperature is {temperature:.3g}, outside the sane range "
                f"{lo_t}-{hi_t}; it {effect}, so the model's scores do not separate the classes on validation "
                f"data. {advice}")
    p = np.clip(np.asarray(p, float), 1e-7, 1 - 1e-7)
    sd = float(np.std(np.log(p / (1 - p)))) if len(p) else 0.0
    if sd < MIN_LOGIT_SD:
        lo, hi = (float(v) for v in (p.min(), p.max())) if len(p) else (float("nan"), float("nan"))
        return (f"calibration failed: every calibrated validation score lies between {lo:.3f} and {hi:.3f} "
                f"(logit standard deviation {sd:.3f}, expected at least {MIN_LOGIT_SD}), so a result says nothing "
                f"about the image. {advice}")
    return None
