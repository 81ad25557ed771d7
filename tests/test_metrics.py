"""Evaluation metrics: scikit-learn/scipy agreement, speed, threshold choice and temperature scaling."""

from __future__ import annotations

import time

import numpy as np
import pytest

from medui.training import metrics


def _scores(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
    return y, p


def test_pr_curve_is_fast_and_matches_scikit_learn():
    from sklearn.metrics import average_precision_score

    y, p = _scores(20_000)
    t = time.perf_counter()
    recall, precision = metrics.pr_curve(y, p)
    elapsed = time.perf_counter() - t
    assert elapsed < 0.1, f"pr_curve took {elapsed:.3f} s at 20k scores"
    assert recall[0] == 0 and precision[0] == 1 and recall[-1] == pytest.approx(1.0)
    assert np.all(np.diff(recall) >= 0)
    ap = float(np.sum(np.diff(recall) * precision[1:]))  # step-wise area, as scikit-learn's AP
    assert ap == pytest.approx(average_precision_score(y, p), abs=1e-9)


def test_auc_confusion_matrix_and_ci():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    assert metrics.auc(y, p) == pytest.approx(15 / 16)
    assert np.isnan(metrics.auc(np.ones(4), np.arange(4.0)))
    op = metrics.at_threshold(y, p, 0.5)
    assert op["confusion_matrix"] == [[3, 1], [1, 3]] and op["sensitivity"] == 0.75 and op["ppv"] == 0.75
    yb, pb = _scores(2000, seed=3)
    t = time.perf_counter()
    lo, hi = metrics.auc_ci(yb, pb)
    assert time.perf_counter() - t < 2.0
    assert lo < metrics.auc(yb, pb) < hi and hi - lo < 0.06
    assert metrics.auc_ci(yb, pb) == (lo, hi)  # fixed seed


def test_youden_picks_the_known_best_cut():
    # negatives at 0.1..0.4, positives at 0.35..0.9: the best cut lies between 0.3 and 0.35 (J = 1 - 1/4... )
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.35, 0.6, 0.7, 0.8, 0.9])
    t, method = metrics.choose_threshold(y, p)
    assert "Youden" in method
    # cut above 0.4: sens 4/5, spec 1 -> J 0.8; cut at 0.35: sens 1, spec 3/4 -> J 0.75
    assert 0.4 < t < 0.6
    op = metrics.at_threshold(y, p, t)
    assert op["sensitivity"] == pytest.approx(0.8) and op["specificity"] == 1.0


def test_min_sensitivity_mode_reaches_the_sensitivity():
    y, p = _scores(500, seed=5)
    for target in (0.8, 0.9, 0.95):
        t, method = metrics.choose_threshold(y, p, min_sensitivity=target)
        assert f"{target:.2f}" in method
        assert metrics.at_threshold(y, p, t)["sensitivity"] >= target
        # the highest such threshold: one score step higher would miss the target
        above = np.sort(p[p > t])
        if len(above):
            assert metrics.at_threshold(y, p, above[0] + 1e-12)["sensitivity"] < target


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 20_000)
    y = (rng.random(true_logits.size) < 1 / (1 + np.exp(-true_logits))).astype(int)
    for temperature in (0.5, 2.0):
        assert metrics.fit_temperature(true_logits * temperature, y) == pytest.approx(temperature, rel=0.05)


def test_indeterminate_band_on_a_constructed_case():
    # below the threshold, nearest first: 0.45 is a positive (wrong), then negatives: the share of wrong
    # calls between a score and 0.5 is 1, 1/2, 1/3, 1/4 (>= 25%: 0.30 is the edge), 1/5, ...
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.45, 0.40, 0.35, 0.30, 0.25, 0.20, 0.10, 0.55, 0.60, 0.70, 0.80, 0.90])
    # above: 0.55 is a negative (wrong), then positives: 1, 1/2, 1/3, 1/4 (0.80 is the edge), 1/5
    assert metrics.indeterminate_band(y, p, 0.5) == pytest.approx([0.30, 0.80])
    separated = metrics.indeterminate_band(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.6, 0.9]), 0.5)
    assert separated == [0.5, 0.5]  # no wrong call near the threshold: no band
    assert "25%" in metrics.BAND_METHOD and "validation" in metrics.BAND_METHOD


def test_calibrations_that_flatten_every_score_fail():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    z = 8 * rng.standard_normal(300)  # large logits that say nothing about the label
    t = metrics.fit_temperature(z, y)
    assert t > 5  # the fit flattens them (it stops at e^3 ~ 20, as in the reported model)
    p = 1 / (1 + np.exp(-z / t))
    warning = metrics.calibration_check(t, p)
    assert warning and "temperature" in warning and "Do not use this model" in warning
    assert "outside the sane range" in (metrics.calibration_check(0.1, p) or "")
    flat = 0.5 + 0.01 * rng.standard_normal(300)  # a sane temperature, but every score within ~0.03 of 0.5
    assert "every calibrated validation score lies between" in (metrics.calibration_check(1.0, flat) or "")
    ys, ps = _scores(400)
    assert metrics.calibration_check(1.0, ps) is None and metrics.calibration_check(None, ps) is None
    rare = np.clip(np.r_[rng.uniform(0.01, 0.08, 380), rng.uniform(0.3, 0.9, 20)], 0, 1)
    assert metrics.calibration_check(1.2, rare) is None  # a useful model on rare disease is not flagged
