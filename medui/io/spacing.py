"""The checks of a stack's slice positions a radiologist cares about: missing slices, variable or
irregular spacing, gantry tilt. Vectorised: a stack of a million frames is checked in a few numpy calls."""

from __future__ import annotations

import numpy as np

MIN_RUN = 3  # gaps in a row at one spacing that make a section of a variable-spacing series


MAX_RUNS = 100  # more runs of one spacing than this: spacing is irregular, not a few sections


def _runs(steps: np.ndarray, tol: float) -> list[tuple[int, int, float]]:
    """Consecutive gaps of one size: (first gap, last gap, mean step) each; gap i follows slice i.
    A run goes on while each gap is within `tol` of the mean of the run so far. Vectorised: each run's
    end is found with running means over a window that doubles, so the work is proportional to the
    gaps; [] when there are more than MAX_RUNS runs (no sections to name)."""
    runs: list[tuple[int, int, float]] = []
    n = len(steps)
    if n and float(steps.max() - steps.min()) <= tol:  # every gap is within tol of every mean
        return [(0, n - 1, float(np.mean(steps)))]
    start = 0
    while start < n:
        if len(runs) >= MAX_RUNS:
            return []
        width, end = 64, n
        while True:
            stop = min(start + width, n)
            seg = steps[start:stop]
            means = np.cumsum(seg)[:-1] / np.arange(1, len(seg))  # mean of the run before gap k
            off = np.nonzero(np.abs(seg[1:] - means) > tol)[0]
            if off.size:
                end = start + int(off[0]) + 1
                break
            if stop == n:
                break
            width *= 2
        runs.append((start, end - 1, float(np.mean(steps[start:end]))))
        start = end
    return runs


def _variable_spacing(proj: np.ndarray, runs: list[tuple[int, int, float]], reverse: bool) -> str:
    """'variable slice spacing: 4 mm for slices 1–14, 7 mm after' in the Viewer's numbering."""
    n = len(proj)

    def shown(native: int) -> int:
        return n - native if reverse else native + 1

    sections = sorted((min(shown(a), shown(b + 1)), max(shown(a), shown(b + 1)), step) for a, b, step in runs)
    parts = [f"{step:.3g} mm for slices {lo}–{hi}" for lo, hi, step in sections[:-1]]
    parts.append(f"{sections[-1][2]:.3g} mm after")
    mean = (proj[-1] - proj[0]) / (n - 1)
    off = float(np.max(np.abs(proj - (proj[0] + mean * np.arange(n)))))
    return (f"variable slice spacing: {', '.join(parts)}; positions are shown on a mean step of {abs(mean):.2f} mm, "
            f"up to {off:.1f} mm from where the slices were acquired")


def check_spacing(positions: np.ndarray, normal: np.ndarray, slice_vec: np.ndarray,
                   reverse: bool = False) -> list[str]:
    """Missing slices, variable or irregular spacing, gantry tilt. Slice numbers are the Viewer's:
    `reverse` when it shows the stack last-first (`shown_last_first`)."""
    warnings = []
    proj = np.asarray(positions, float) @ normal
    steps = np.diff(proj)
    step = float(np.median(steps)) if steps.size else 0.0
    tol = max(0.02 * abs(step), 0.05)
    runs = _runs(steps, tol) if steps.size else []
    sections = [r for r in runs if r[1] - r[0] + 1 >= MIN_RUN]
    if sections and max(r[2] for r in sections) - min(r[2] for r in sections) > tol:
        warnings.append(_variable_spacing(proj, runs, reverse))
    elif steps.size >= 1 and abs(step) > 1e-6:
        big = np.nonzero(steps > 1.5 * step)[0]
        for i in big[:5]:
            missing = int(round(steps[i] / step)) - 1
            after = len(steps) - int(i) if reverse else int(i) + 1  # the gap lies between these two slices
            warnings.append(f"missing slice(s): a gap of {steps[i]:.2f} mm between slices {after} and {after + 1} "
                            f"where {step:.2f} mm is usual (about {missing} slice(s) absent)")
        if len(big) > 5:
            warnings.append(f"... and {len(big) - 5} more gaps")
        spread = float(steps.max() - steps.min())
        if len(big) == 0 and spread > max(0.01 * abs(step), 0.05):
            warnings.append(f"irregular slice spacing: steps range from {steps.min():.3f} to {steps.max():.3f} mm; "
                            "the affine uses the mean step")
    length = np.linalg.norm(slice_vec)
    if length > 1e-6:
        cos = abs(float(np.dot(slice_vec / length, normal)))
        angle = float(np.degrees(np.arccos(min(1.0, cos))))
        if angle > 0.1:
            warnings.append(f"gantry tilt of {angle:.1f} degrees: slices are sheared, not perpendicular to "
                            "their stacking direction; positions are kept as acquired (not resampled)")
    return warnings
