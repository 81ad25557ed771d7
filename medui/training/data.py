"""Labelled datasets: a folder (or zip) with one sub-folder per class, optional train/val/test splits.

`index_dataset` reads every image once (anything `medui.io` reads; each 2-D image or DICOM instance is
a sample) and keeps what it learnt (file, frame, label, pseudonymous patient, digest, shape) but no
pixels; it reports what it found and refuses what cannot be trained on. `split` makes a stratified,
patient-grouped split with a fixed seed; `load_arrays` decodes the images of a split when they are
trained on, through the model card's preprocessing; `thumbnails` decodes a few per class to show.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from medui.errors import DatasetError
from medui.io.loader import load
from medui.io.sources import Input, Limits, Skipped, SourceFile, expand
from medui.training.folders import ScanLimits, list_inputs
from medui.training.jobs import installation_salt
from medui.training.splits import grouped_split

if TYPE_CHECKING:
    from medui.ai.card import ModelCard

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                  "test": "test", "testing": "test"}


@dataclass(frozen=True)
class Sample:
    """One training image, without its pixels: where to find it again and what it is."""

    file: str  # name as `medui.io.sources.expand` gives it (relative to the input's parent); pseudonymous in a job
    position: int  # the file's place in `expand(inputs)`: finds it again when the name is withheld
    series: int  # which series of that file (most files hold one)
    frame: int  # which slice of the series (the middle one)
    label: str
    patient: str  # pseudonym of the grouping key (salted hash, never the key itself)
    split: str | None  # given by the folder layout, else None
    digest: str  # sha1 of the slice's pixels: duplicates, and a check that the file did not change
    shape: tuple[int, ...]  # rows, cols (, 3)
    modality: str = "OT"
    invert: bool = False  # MONOCHROME1


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
    source_names_patient: bool = False  # a dataset path given names one of its patients: cards withhold it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def without_names(self) -> Report:
        """The report with file names withheld (for files on disk): what was wrong, not which file."""
        return dataclasses.replace(
            self, unreadable=[{"file": "(name withheld)", "reason": u["reason"]} for u in self.unreadable],
            duplicates=[[f"{len(g)} files"] for g in self.duplicates],
            cross_class_duplicates=[[f"{len(g)} files"] for g in self.cross_class_duplicates])


@dataclass
class DatasetIndex:
    """What `index_dataset` found: samples (no pixels), the report, and the inputs to read them again
    (within `roots`: None, each input is its own). A job's index (`from_json`) holds pseudonymous names."""

    inputs: list[Input]
    samples: list[Sample]
    report: Report
    limits: Limits | None = field(default=None, repr=False)
    roots: list[str] | None = None
    kept_parts: int = 0  # leading path parts kept in pseudonymous names: top folders, split, class
    salt: bytes = field(default=b"", repr=False, compare=False)
    pseudonymous: bool = False  # sample names are pseudonymous already (read from a job folder)

    @property
    def classes(self) -> list[str]:
        return self.report.classes

    def job_name(self, sample: Sample) -> str:
        """The sample's file as job files record it: relative to the dataset, every folder and file name
        below the class folder replaced by its salted pseudonym (`pseudonymous_name`)."""
        if self.pseudonymous or not sample.file:
            return sample.file
        return pseudonymous_name(sample.file, self.kept_parts, self.salt or installation_salt())

    def to_json(self) -> dict[str, Any]:
        """JSON for the job folder: labels, pseudonyms, pseudonymous file names and digests; no pixels, no
        patient IDs and no folder or file name below the class folders (one may be a patient's), only the
        input folders given."""
        if not all(isinstance(i, str) or hasattr(i, "__fspath__") for i in self.inputs):
            raise DatasetError("only a dataset read from folders or files can be handed to a training job; "
                               "save the upload to a folder first")
        return {"format": 2, "inputs": [str(i) for i in self.inputs], "roots": self.roots,
                "kept_parts": self.kept_parts,
                "samples": [{**asdict(s), "file": self.job_name(s)} for s in self.samples],
                "report": self.report.without_names().to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any], salt: bytes | None = None) -> DatasetIndex:
        """The index a job folder holds (names pseudonymous with this installation's salt, or `salt`)."""
        try:
            samples = [Sample(**{**s, "shape": tuple(s["shape"])}) for s in data["samples"]]
            return cls(list(data["inputs"]), samples, Report(**data["report"]), roots=data.get("roots"),
                       kept_parts=int(data.get("kept_parts", 0)), salt=salt or installation_salt(), pseudonymous=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"the dataset index is not one MedUI wrote ({exc}); check the data again") from exc


def pseudonym(salt: bytes, text: str) -> str:
    """A stable, salted, one-way pseudonym of a patient key or a file or folder name (16 hex digits)."""
    return hmac.new(salt, text.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()[:16]


def pseudonymous_name(name: str, kept: int, salt: bytes) -> str:
    """`name` with its first `kept` parts (top folders, split, class) as they are and each later part
    replaced by its pseudonym; a file keeps a short extension (`normal/<p>/<f>.dcm`)."""
    parts = _parts(name)
    out = parts[:kept]
    for k, part in enumerate(parts[kept:], start=kept):
        suffix = PurePosixPath(part).suffix.lower() if k == len(parts) - 1 else ""
        keep_suffix = 1 < len(suffix) <= 6 and suffix[1:].isalnum()
        out.append(pseudonym(salt, part) + (suffix if keep_suffix else ""))
    return "/".join(out)


def _listing(inputs: Iterable[Input], limits: Limits | None, roots: Sequence[str | Path] | None,
             scan: ScanLimits | None) -> tuple[list[SourceFile], list[Skipped]]:
    """Files of the inputs: folders listed within `roots` (`medui.training.folders`), then expanded."""
    listed, skipped = list_inputs(inputs, [Path(r) for r in roots] if roots is not None else None, scan)
    files, more = expand(listed, limits)
    return files, skipped + more


def _parts(name: str) -> list[str]:
    return [p for p in PurePosixPath(name).parts if p]


def layout(files: list[SourceFile]) -> tuple[int, bool]:
    """How many leading path parts to drop, and whether split folders are present."""
    parts = [_parts(f.name) for f in files]
    depth = 0
    while all(len(p) > depth + 2 for p in parts) and len({p[depth] for p in parts}) == 1:
        depth += 1  # a common top folder (or the zip name)
    level = {p[depth].lower() for p in parts if len(p) > depth + 1}
    has_splits = bool(level) and level <= set(_SPLIT_ALIASES)
    return depth, has_splits


def patient_from_pattern(pattern: str, filename: str) -> str | None:
    """'<patient>_<n>.png' style patterns: <patient> is captured, <anything> matches anything."""
    pieces = re.split(r"(<[A-Za-z_]+>)", pattern)
    regex = "".join("(?P<patient>.+?)" if p == "<patient>" else ".+?" if re.fullmatch(r"<[A-Za-z_]+>", p)
                    else re.escape(p) for p in pieces)
    m = re.fullmatch(regex, filename)
    return m.group("patient") if m else None


def patient_key(patient_id: str | None, parts: list[str], pattern: str | None) -> tuple[str, str]:
    """(grouping key, how it was found) of one image at `parts` (<class>/.../<file>, below any split
    folder): its DICOM PatientID, else the first folder below the class folder, else the file-name
    pattern, else the file itself. Staging an upload decides it the same way (medui.training.staging)."""
    if patient_id:
        return patient_id, "dicom"
    if len(parts) > 2:
        return parts[1], "folder"
    found = patient_from_pattern(pattern, parts[-1]) if pattern else None
    if found is not None:
        return found, "pattern"
    return f"{parts[0]}:{'/'.join(parts)}", "file"


def _digest(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def index_dataset(inputs: Iterable[Input], patient_pattern: str | None = None, min_per_class: int = 10,
                  limits: Limits | None = None, roots: Sequence[str | Path] | None = None,
                  scan: ScanLimits | None = None, salt: bytes | None = None) -> DatasetIndex:
    """Read a labelled folder/zip once into samples (no pixels) and a report; DatasetError when unusable.

    Every file of a folder must resolve inside `roots` (None: inside the folder given); the listing is
    bounded by `scan` (DatasetScanError). Pseudonyms use `salt` (default: this installation's)."""
    inputs = list(inputs)
    files, skipped = _listing(inputs, limits, roots, scan)
    unreadable = [{"file": k.file, "reason": k.reason} for k in skipped]
    if not files:
        raise DatasetError("the dataset holds no files that can be read; give a folder with one sub-folder per "
                           "class", unreadable)
    depth, has_splits = layout(files)
    salt = salt or installation_salt()
    keys: set[str] = set()  # the patient keys themselves (DICOM PatientID, patient folders): never kept
    samples: list[Sample] = []
    sources = {"dicom": 0, "folder": 0, "pattern": 0, "file": 0}
    for position, src in enumerate(files):
        parts = _parts(src.name)[depth:]
        split = None
        if has_splits:
            split, parts = _SPLIT_ALIASES.get(parts[0].lower()), parts[1:]
        if len(parts) < 2:
            unreadable.append({"file": src.name, "reason": "is not inside a class folder (expected <class>/<image>)"})
            continue
        label = parts[0]
        result = load([src], limits)
        unreadable += [{"file": k.file, "reason": k.reason} for k in result.skipped]
        for k, series in enumerate(result.series):
            frame = series.n_slices // 2
            image = series.pixels[frame]
            pid, how = patient_key(series.patient_id, parts, patient_pattern)
            sources[how] += 1
            if how in ("dicom", "folder"):
                keys.add(pid)
            samples.append(Sample(src.name, position, k, frame, label, pseudonym(salt, pid), split, _digest(image),
                                  tuple(image.shape), series.modality, series.photometric == "MONOCHROME1"))
        del result  # nothing of the decoded volume outlives this loop
    if not samples:
        raise DatasetError(f"nothing readable: none of {len(files)} file(s) is an image MedUI reads "
                           "(DICOM, PNG, JPEG, TIFF, NIfTI). See the list of unreadable files.", unreadable)
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
    report.source_names_patient = names_patient(inputs, keys)
    return DatasetIndex(inputs, samples, report, limits, [str(r) for r in roots] if roots is not None else None,
                        depth + int(has_splits) + 1, salt)


def names_patient(inputs: Iterable[Input], keys: Iterable[str]) -> bool:
    """Whether a dataset path given (folder or zip, as the user gave it) contains a patient key (any case)."""
    given = " ".join(str(i) for i in inputs if isinstance(i, str) or hasattr(i, "__fspath__")).lower()
    return any(len(k.strip()) >= 3 and k.strip().lower() in given for k in keys)


def sources(index: DatasetIndex, indices: list[int]) -> list[tuple[SourceFile, str, list[tuple[int, int]]]]:
    """The files holding the samples `indices`, each once: (file, name to show, [(position in `indices`,
    sample index)]), in the order of first use. DatasetError when a file is gone."""
    by_file: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for pos, i in enumerate(indices):
        by_file[index.samples[i].position].append((pos, i))
    if not by_file:
        return []
    files, _ = _listing(index.inputs, index.limits, index.roots, None)
    if index.pseudonymous:
        by_name = {pseudonymous_name(f.name, index.kept_parts, index.salt): f for f in files}
    else:
        by_name = {f.name: f for f in files}
    out = []
    for position, items in by_file.items():
        first = index.samples[items[0][1]]
        name = first.file or f"file {position + 1} of the dataset"
        if first.file:
            src = by_name.get(first.file)
        else:  # names withheld (a job's index): the same listing puts the same file at the same place
            src = files[position] if position < len(files) else None
        if src is None:
            raise DatasetError(f"{name} was in the dataset when it was checked and is gone now; check the data again")
        out.append((src, name, items))
    return out


def decode(src: SourceFile, name: str, samples: Sequence[Sample], limits: Limits | None
           ) -> Iterator[tuple[int, np.ndarray]]:
    """(k, 2-D image) of each of `samples` (all of the file `src`), each checked against its digest.
    Runs in decode worker processes too: nothing here imports TensorFlow."""
    series = load([src], limits).series
    for k, s in enumerate(samples):
        image = np.array(series[s.series].pixels[s.frame]) if s.series < len(series) else None  # a copy
        if image is None or _digest(image) != s.digest:
            raise DatasetError(f"{name} changed since the dataset was checked (its pixels differ, or files "
                               "were added or removed); check the data again")
        yield k, image
    del series


def _images(index: DatasetIndex, indices: list[int]) -> Iterator[tuple[int, int, np.ndarray]]:
    """(position in `indices`, sample index, 2-D image) for each sample, decoding each file once."""
    for src, name, items in sources(index, indices):
        for k, image in decode(src, name, [index.samples[i] for _, i in items], index.limits):
            pos, i = items[k]
            yield pos, i, image


def load_arrays(index: DatasetIndex, indices: list[int], card: ModelCard,
                progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs (N, H, W, C) through the card's preprocessing and class indices (card.class_names),
    all in memory: for small sets and as the reference of the streaming pipeline (`medui.training.shards`
    and `stream`, which training uses). `progress(n)` is called after each image with the number so far."""
    from medui.ai.preprocess import prepare

    x = np.zeros((len(indices), *card.input_size, card.channels), np.float32)
    for done, (pos, i, image) in enumerate(_images(index, indices), start=1):
        x[pos] = prepare(image, card, index.samples[i].invert)[0]
        if progress is not None:
            progress(done)
    return x, class_numbers(index, indices, card.class_names)


def class_numbers(index: DatasetIndex, indices: Sequence[int], classes: Sequence[str]) -> np.ndarray:
    """The class of each sample `indices` as its place in `classes` (int32)."""
    return np.asarray([list(classes).index(index.samples[i].label) for i in indices], np.int32)


def thumbnails(index: DatasetIndex, per_class: int = 4) -> dict[str, list[np.ndarray]]:
    """A few uint8 images per class, windowed for display (auto window, MONOCHROME1 inverted)."""
    from medui.reading.display import apply_window, auto_window

    chosen: dict[str, list[int]] = {c: [] for c in index.classes}
    for i, s in enumerate(index.samples):
        if len(chosen[s.label]) < per_class:
            chosen[s.label].append(i)
    flat = [i for c in index.classes for i in chosen[c]]
    out: dict[str, list[np.ndarray]] = {c: [] for c in index.classes if chosen[c]}
    images = {i: image for _, i, image in _images(index, flat)}
    for i in flat:
        s, img = index.samples[i], images[i]
        grey = img if img.ndim == 2 else img.mean(axis=2)
        out[s.label].append(apply_window(grey, auto_window(grey), s.invert))
    return out


NEGATIVE_NAMES = {"normal", "negative", "healthy", "benign", "no_finding", "no finding", "nofinding", "no-finding",
                  "0", "absent", "none", "control"}


def order_classes(names: Iterable[str], reference: list[str] | None = None) -> list[str]:
    """Class order: the reference's (a parent model's) when it has the same classes; else the negative
    class ('normal', 'negative', ...) first, then alphabetical. For two classes the last is positive."""
    names = sorted(set(names))
    if reference and sorted(reference) == names:
        return list(reference)
    return sorted(names, key=lambda n: (n.lower() not in NEGATIVE_NAMES, n.lower()))


def _report(samples: list[Sample], classes: list[str], unreadable: list[dict[str, str]], has_splits: bool,
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
        sizes=dict(Counter(f"{s.shape[0]}x{s.shape[1]}" for s in samples).most_common(10)),
        modalities=dict(Counter(s.modality for s in samples)), imbalance=round(imbalance, 2),
        given_splits=[sp for sp in SPLITS if sp in counts], content_hash=content, warnings=warnings)


def split(index: DatasetIndex, val: float = 0.15, test: float = 0.15, seed: int = 0) -> dict[str, list[int]]:
    """Sample indices per split. Splits given by the folders are kept (missing ones are carved out of
    train); otherwise a stratified split grouped by patient, so no patient is in two splits."""
    samples = index.samples
    given = {sp: [i for i, s in enumerate(samples) if s.split == sp] for sp in SPLITS}
    if any(given.values()):
        pool = given["train"] or [i for i, s in enumerate(samples) if s.split is None]
        need = {sp: frac for sp, frac in (("val", val), ("test", test)) if not given[sp]}
        carved = grouped_split(samples, pool, need, seed) if need else {"train": pool}
        return {"train": carved["train"], "val": given["val"] or carved.get("val", []),
                "test": given["test"] or carved.get("test", [])}
    return grouped_split(samples, list(range(len(samples))), {"val": val, "test": test}, seed)
