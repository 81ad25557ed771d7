"""Labelled datasets: a folder (or zip) with one sub-folder per class, optional train/val/test splits.

`scan` reads every image once (anything `medui.io` reads; each 2-D image or DICOM instance is a
sample), reports what it found, refuses what cannot be trained on, and `split` makes a stratified,
patient-grouped split with a fixed seed.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from medui.errors import DatasetError
from medui.io.loader import load
from medui.io.sources import Input, Limits, SourceFile, expand

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                  "test": "test", "testing": "test"}


@dataclass
class Sample:
    file: str
    label: str
    patient: str
    split: str | None  # given by the folder layout, else None
    image: np.ndarray = field(repr=False)  # one 2-D slice (grey HxW or colour HxWx3), modality values
    invert: bool = False  # MONOCHROME1
    digest: str = ""
    modality: str = "OT"


@dataclass
class Report:
    classes: list[str]
    counts: dict[str, dict[str, int]]  # split ("all" or train/val/test) -> class -> images
    patients: dict[str, int]  # class -> distinct patients
    grouping: str
    unreadable: list[dict[str, str]]
    duplicates: list[list[str]]  # groups of files with identical pixels
    cross_class_duplicates: list[list[str]]
    sizes: dict[str, int]  # "rowsxcols" -> count
    modalities: dict[str, int]
    imbalance: float  # largest class / smallest class
    given_splits: list[str]
    content_hash: str
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Dataset:
    samples: list[Sample]
    report: Report

    @property
    def classes(self) -> list[str]:
        return self.report.classes


def _parts(name: str) -> list[str]:
    return [p for p in PurePosixPath(name).parts if p]


def _layout(files: list[SourceFile]) -> tuple[int, bool]:
    """How many leading path parts to drop, and whether split folders are present."""
    parts = [_parts(f.name) for f in files]
    depth = 0
    while all(len(p) > depth + 2 for p in parts) and len({p[depth] for p in parts}) == 1:
        depth += 1  # a common top folder (or the zip name)
    level = {p[depth].lower() for p in parts if len(p) > depth + 1}
    has_splits = bool(level) and level <= set(_SPLIT_ALIASES)
    return depth, has_splits


def _patient_from_pattern(pattern: str, filename: str) -> str | None:
    """'<patient>_<n>.png' style patterns: <patient> is captured, <anything> matches anything."""
    pieces = re.split(r"(<[A-Za-z_]+>)", pattern)
    regex = "".join("(?P<patient>.+?)" if p == "<patient>" else ".+?" if re.fullmatch(r"<[A-Za-z_]+>", p)
                    else re.escape(p) for p in pieces)
    m = re.fullmatch(regex, filename)
    return m.group("patient") if m else None


def scan(inputs: Iterable[Input], patient_pattern: str | None = None, min_per_class: int = 10,
         limits: Limits | None = None) -> Dataset:
    """Read a labelled folder/zip into samples and a report; raise DatasetError when unusable."""
    files, skipped = expand(list(inputs), limits)
    unreadable = [{"file": k.file, "reason": k.reason} for k in skipped]
    if not files:
        raise DatasetError("the upload holds no files; give a folder with one sub-folder per class")
    depth, has_splits = _layout(files)
    samples: list[Sample] = []
    sources = {"dicom": 0, "folder": 0, "pattern": 0, "file": 0}
    for src in files:
        parts = _parts(src.name)[depth:]
        split = None
        if has_splits:
            split, parts = _SPLIT_ALIASES.get(parts[0].lower()), parts[1:]
        if len(parts) < 2:
            unreadable.append({"file": src.name, "reason": "is not inside a class folder (expected <class>/<image>)"})
            continue
        label = parts[0]
        result = load([src], limits)
        for k in result.skipped:
            unreadable.append({"file": k.file, "reason": k.reason})
        for series in result.series:
            image = series.pixels[series.n_slices // 2]
            pid = series.patient_id or None
            how = "dicom"
            if pid is None and len(parts) > 2:
                pid, how = parts[1], "folder"
            if pid is None and patient_pattern:
                pid = _patient_from_pattern(patient_pattern, parts[-1])
                how = "pattern"
            if pid is None:
                pid, how = "/".join(parts), "file"
            sources[how] += 1
            digest = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
            samples.append(Sample(src.name, label, f"{label}:{pid}" if how == "file" else pid, split, image,
                                  series.photometric == "MONOCHROME1", digest, series.modality))
    if not samples:
        raise DatasetError(f"nothing readable: none of {len(files)} file(s) is an image MedUI reads "
                           "(DICOM, PNG, JPEG, TIFF, NIfTI). See the list of unreadable files.")
    counts = Counter(s.label for s in samples)
    classes = order_classes(counts)
    if len(classes) < 2:
        raise DatasetError(f"found one class ('{classes[0]}'); training needs at least two class folders, "
                           "e.g. normal/ and pneumonia/")
    small = [c for c in classes if counts[c] < min_per_class]
    if small:
        raise DatasetError(f"class(es) {', '.join(f'{c} ({counts[c]})' for c in small)} have fewer than "
                           f"{min_per_class} images; add images or merge classes")
    report = _report(samples, classes, unreadable, has_splits, sources, patient_pattern)
    return Dataset(samples, report)


NEGATIVE_NAMES = {"normal", "negative", "healthy", "benign", "no_finding", "no finding", "nofinding", "no-finding",
                  "0", "absent", "none", "control"}


def order_classes(names: Iterable[str], reference: list[str] | None = None) -> list[str]:
    """Class order: the reference's (a parent model's) when it has the same classes; else the negative
    class ('normal', 'negative', ...) first, then alphabetical. For two classes the last is positive."""
    names = sorted(set(names))
    if reference and sorted(reference) == names:
        return list(reference)
    return sorted(names, key=lambda n: (n.lower() not in NEGATIVE_NAMES, n.lower()))


def _report(samples: list[Sample], classes: list[str], unreadable: list[dict], has_splits: bool,
            sources: dict[str, int], pattern: str | None) -> Report:
    counts: dict[str, dict[str, int]] = {"all": dict(Counter(s.label for s in samples))}
    if has_splits:
        for sp in SPLITS:
            c = Counter(s.label for s in samples if s.split == sp)
            if c:
                counts[sp] = dict(c)
    by_digest: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_digest[s.digest].append(s)
    dups = [[s.file for s in g] for g in by_digest.values() if len(g) > 1]
    cross = [[f"{s.label}: {s.file}" for s in g] for g in by_digest.values() if len({s.label for s in g}) > 1]
    used = [k for k, v in sources.items() if v]
    grouping = {"dicom": "DICOM PatientID", "folder": "first folder below the class folder",
                "pattern": f"file-name pattern '{pattern}'", "file": "none (each image is its own patient)"}
    warnings = []
    n = dict(Counter(s.label for s in samples))
    imbalance = max(n.values()) / max(min(n.values()), 1)
    if imbalance > 3:
        warnings.append(f"classes are imbalanced ({imbalance:.1f}:1); class weights will compensate in training")
    if cross:
        warnings.append(f"{len(cross)} image(s) appear in more than one class: check the labels")
    if "file" in used:
        warnings.append("no patient identity found for some images: images of one patient could land in two "
                        "splits. Use one folder per patient, DICOM with PatientID, or a file-name pattern")
    content = hashlib.sha1("".join(sorted(f"{s.label}/{s.digest}" for s in samples)).encode()).hexdigest()
    return Report(
        classes=classes, counts=counts,
        patients={c: len({s.patient for s in samples if s.label == c}) for c in classes},
        grouping=" + ".join(grouping[k] for k in used), unreadable=unreadable, duplicates=dups,
        cross_class_duplicates=cross,
        sizes=dict(Counter(f"{s.image.shape[0]}x{s.image.shape[1]}" for s in samples).most_common(10)),
        modalities=dict(Counter(s.modality for s in samples)), imbalance=round(imbalance, 2),
        given_splits=[sp for sp in SPLITS if sp in counts], content_hash=content, warnings=warnings)


def split(dataset: Dataset, val: float = 0.15, test: float = 0.15, seed: int = 0) -> dict[str, list[int]]:
    """Sample indices per split. Splits given by the folders are kept (missing ones are carved out of
    train); otherwise a stratified split grouped by patient, so no patient is in two splits."""
    samples = dataset.samples
    given = {sp: [i for i, s in enumerate(samples) if s.split == sp] for sp in SPLITS}
    if any(given.values()):
        pool = given["train"] or [i for i, s in enumerate(samples) if s.split is None]
        need = {sp: frac for sp, frac in (("val", val), ("test", test)) if not given[sp]}
        carved = _grouped_split(samples, pool, need, seed) if need else {"train": pool}
        return {"train": carved["train"], "val": given["val"] or carved.get("val", []),
                "test": given["test"] or carved.get("test", [])}
    return _grouped_split(samples, list(range(len(samples))), {"val": val, "test": test}, seed)


def _grouped_split(samples: list[Sample], pool: list[int], fractions: dict[str, float], seed: int) -> dict[str, list[int]]:
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = defaultdict(list)
    for i in pool:
        groups[samples[i].patient].append(i)
    by_class: dict[str, list[str]] = defaultdict(list)
    for pid, idx in groups.items():
        majority = Counter(samples[i].label for i in idx).most_common(1)[0][0]
        by_class[majority].append(pid)
    out: dict[str, list[int]] = {"train": [], **{k: [] for k in fractions}}
    for cls in sorted(by_class):
        pids = sorted(by_class[cls])
        rng.shuffle(pids)
        total = sum(len(groups[p]) for p in pids)
        targets = {k: f * total for k, f in fractions.items()}
        filled = {k: 0 for k in fractions}
        for pid in pids:
            size = len(groups[pid])
            short = [k for k in fractions if filled[k] + size / 2 <= targets[k]]
            dest = short[0] if short else "train"
            out[dest].extend(groups[pid])
            if dest != "train":
                filled[dest] += size
    return {k: sorted(v) for k, v in out.items()}
