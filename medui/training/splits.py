"""Stratified, patient-grouped splits with scikit-learn's StratifiedGroupKFold."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Protocol

import numpy as np


class _Labelled(Protocol):
    @property
    def label(self) -> str: ...

    @property
    def patient(self) -> str: ...


def grouped_split(samples: Sequence[_Labelled], pool: list[int], fractions: dict[str, float],
                  seed: int) -> dict[str, list[int]]:
    """Split `pool` (sample indices) into train and the named held-out parts (fractions of the pool):
    stratified by label, no patient in two parts, the same result for the same seed. Test is carved
    first, then validation from the rest; a part that cannot be made (too few patients) stays empty."""
    from sklearn.model_selection import StratifiedGroupKFold

    first: dict[str, int] = {}  # group ids in order of first appearance: independent of the pseudonyms
    for i in pool:
        first.setdefault(samples[i].patient, len(first))
    remaining = sorted(pool)
    out: dict[str, list[int]] = {}
    for name in sorted(fractions, key=lambda k: k != "test"):
        frac = fractions[name]
        groups = [first[samples[i].patient] for i in remaining]
        n_splits = min(max(2, round(len(remaining) / max(frac * len(pool), 1e-9))), len(set(groups)))
        if frac <= 0 or n_splits < 2:
            out[name] = []
            continue
        labels = [samples[i].label for i in remaining]
        folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "least populated class has only n members"
            _, held = next(folds.split(np.zeros(len(remaining)), labels, groups))
        out[name] = sorted(remaining[j] for j in held)
        taken = set(out[name])
        remaining = [i for i in remaining if i not in taken]
    return {"train": remaining, **out}
