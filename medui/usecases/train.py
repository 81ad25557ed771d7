"""Train use cases, for the Train page: stage an uploaded dataset, decide which server folders a
user may train from, and start a training job from a typed request."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Literal, Protocol

import numpy as np

from medui.accounts import audit
from medui.accounts.actor import Actor, current, require, require_owner
from medui.ai.architectures import ARCHITECTURES
from medui.ai.registry import check_name
from medui.errors import CardError, DatasetError, ServerFolderError, TrainingError
from medui.io.sources import expand
from medui.training import jobs
from medui.training.data import DatasetIndex, index_dataset, thumbnails
from medui.training.fit import TrainConfig
from medui.training.folders import ScanLimits, on_kernel_fs
from medui.training.plan import ModelPlan, cached_weights, download_possible, plan_model
from medui.training.staging import stage_files

ROOTS_VARIABLE = "MEDUI_DATA_ROOTS"
StartFrom = Literal["recommended", "fine-tune", "architecture"]


class Upload(Protocol):
    """An uploaded file (Streamlit's UploadedFile is one): its name, relative path kept, and bytes."""

    @property
    def name(self) -> str: ...

    def getvalue(self) -> bytes: ...


@dataclass(frozen=True)
class TrainRequest:
    """What the user asks for on the Train page."""

    data: Path
    name: str  # the new model's name
    start_from: StartFrom = "recommended"  # DenseNet121 on a GPU, MobileNetV2 on a CPU
    base: str | None = None  # with "fine-tune": a registered model id or name
    arch: str | None = None  # with "architecture": one of ARCHITECTURES
    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 1e-3
    target_sensitivity: float | None = None  # None: Youden's J
    hflip: bool = False
    patient_pattern: str | None = None
    min_per_class: int = 10

    def config(self) -> TrainConfig:
        """The job's parameters; raises TrainingError for a request that cannot start."""
        name = self.name.strip()
        if not name:
            raise TrainingError("the new model needs a name (letters, digits, '.', '_' or '-')")
        try:
            check_name(name)
        except CardError as exc:
            raise TrainingError(str(exc)) from exc
        base = arch = None
        if self.start_from == "fine-tune":
            if not self.base:
                raise TrainingError("fine-tuning needs a registered model to start from; choose one")
            base = self.base
        elif self.start_from == "architecture":
            if self.arch not in ARCHITECTURES:
                raise TrainingError(f"unknown architecture '{self.arch}'; choose one of {', '.join(ARCHITECTURES)}")
            arch = self.arch
        cfg = TrainConfig(data=[str(self.data)], out=name, base=base, arch=arch, epochs=int(self.epochs),
                          batch_size=int(self.batch_size), learning_rate=float(self.learning_rate),
                          min_sensitivity=self.target_sensitivity or None,
                          patient_pattern=self.patient_pattern or None, min_per_class=int(self.min_per_class))
        return replace(cfg, augment={**cfg.augment, "hflip": 1.0 if self.hflip else 0.0})


def check_dataset(folder: Path, patient_pattern: str | None = None, min_per_class: int = 10, per_class: int = 4,
                  scan: ScanLimits | None = None) -> tuple[DatasetIndex, dict[str, list[np.ndarray]]]:
    """Index a labelled folder (classes, splits, patients, duplicates; no pixels kept) and a few
    thumbnails per class. Every file, links included, must resolve inside `dataset_roots()`; pipes,
    devices and kernel files are skipped; the listing is bounded (`scan`). Raises DatasetError (a
    DatasetScanError for the listing) when it cannot be trained on."""
    index = index_dataset([folder], patient_pattern, min_per_class, roots=dataset_roots(), scan=scan)
    return index, thumbnails(index, per_class)


def dataset_roots() -> list[Path]:
    """Where the files of a dataset checked here may lie (resolved): MEDUI_DATA_ROOTS and staged uploads."""
    return [*data_roots(), (jobs.jobs_dir() / "uploads").resolve()]


def start(request: TrainRequest, index: DatasetIndex | None = None, actor: Actor | None = None) -> jobs.Job:
    """Start a background training job (its own process); returns at once. With the index of the
    checked data the job trains on exactly what the user saw and does not read the folder again.
    Needs the 'train' permission; the job folder records who started it; audited."""
    who = current(actor)
    with audit.attempt(audit.START_JOB, who, request.name.strip()) as step:
        require(who, "train", "starting a training job")
        job = jobs.start(request.config().to_json(), index=index, started_by=who.to_json() if who else None)
        step.target = job.id
        step.details["model"] = request.name.strip()
    return job


def cancel(job: jobs.Job, actor: Actor | None = None) -> None:
    """Ask a queued or running job to stop. Needs the 'cancel-job' permission, and for a job someone else
    started, 'cancel-any-job' (administrators); audited."""
    who = current(actor)
    with audit.attempt(audit.CANCEL_JOB, who, job.id):
        require(who, "cancel-job", "cancelling a training job")
        require_owner(who, f"job {job.id}", job.started_by())
        job.cancel()


def plans(gpu: bool | None = None) -> dict[str | None, ModelPlan]:
    """What each 'Start from' choice trains on this machine (None: the recommended default), with the
    weights it starts from. One connection check at most, only when some ImageNet weights are not cached."""
    from medui.ai.device import gpu_present

    gpu = gpu_present() if gpu is None else gpu
    needs_net = any(spec["pretrained"] and cached_weights(a) is None for a, spec in ARCHITECTURES.items())
    online = download_possible() if needs_net else True
    return {a: plan_model(a, None, gpu, online=online) for a in [None, *ARCHITECTURES]}


def _relative_parts(name: str) -> tuple[str, ...]:
    """An upload's relative path, without '..', '.', or a leading '/'."""
    return tuple(p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".", "..", "/"))


def stage_upload(files: Iterable[Upload], patient_pattern: str | None = None) -> Path:
    """Write an upload (files, or zips of them) de-identified under jobs/uploads/<digest>/ and return it.

    Laid out as `[<split>/]<class>/<patient pseudonym>/<n>.<ext>` with DICOM headers de-identified
    (`medui.training.staging`): no folder or file name and no identifying DICOM attribute of the upload
    reaches the disk; the patients (decided with `patient_pattern` where needed) keep their grouping.
    The digest covers every original file's path and content and the pattern: the same upload with the
    same pattern reuses its folder; any changed byte or another pattern gives a new one. The folder
    appears complete or not at all."""
    items = [(_relative_parts(f.name) or ("unnamed",), f.getvalue()) for f in files]
    if not items:
        raise DatasetError("no files were uploaded; upload a folder with one sub-folder per class, or a zip of it")
    pattern = (patient_pattern or "").strip() or None
    digest = hashlib.sha256(f"pattern\0{pattern or ''}\0".encode())
    for parts, data in sorted(items):
        digest.update("/".join(parts).encode() + b"\0" + hashlib.sha256(data).digest())
    root = jobs.jobs_dir() / "uploads" / digest.hexdigest()[:16]
    if root.exists():
        return root
    sources, skipped = expand([("/".join(parts), data) for parts, data in items])
    staged = stage_files(sources, pattern)
    if not staged:
        raise DatasetError("the upload holds no image MedUI reads (DICOM, PNG, JPEG, TIFF, NIfTI); upload a folder "
                           "with one sub-folder per class, or a zip of it",
                           [{"file": k.file, "reason": k.reason} for k in skipped])
    _remove_stale_partials(root.parent)
    partial = root.with_name(f".{root.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        for f in staged:
            target = partial.joinpath(*f.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.data)
        os.replace(partial, root)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if not root.exists():  # not a concurrent twin of this upload that won the race
            raise DatasetError(f"could not save the upload under {root.parent} ({exc.strerror or exc}); expected a "
                               "writable jobs folder with free space. Free space or set MEDUI_JOBS to another "
                               "folder, then upload again") from exc
    return root


STALE_UPLOAD_S = 3600.0  # an upload being written touches its folder; one untouched this long was abandoned


def _remove_stale_partials(uploads: Path) -> None:
    """Remove what an upload killed half-way left (`.<digest>.<tag>.partial` folders) once stale."""
    now = time.time()
    for partial in uploads.glob(".*.partial") if uploads.is_dir() else []:
        try:
            newest = max([partial.stat().st_mtime, *(p.stat().st_mtime for p in partial.rglob("*"))])
        except OSError:
            continue
        if now - newest > STALE_UPLOAD_S:
            shutil.rmtree(partial, ignore_errors=True)


def data_roots() -> list[Path]:
    """The folders users may train from (MEDUI_DATA_ROOTS, ':'-separated), symlinks resolved."""
    return [Path(r).expanduser().resolve() for r in os.environ.get(ROOTS_VARIABLE, "").split(os.pathsep) if r]


def allowed_folder(text: str) -> Path:
    """A folder on the server that users may train from.

    Closed by default: with MEDUI_DATA_ROOTS unset no server folder is allowed; with it set, only
    folders inside those roots, after resolving symlinks and '..'."""
    roots = data_roots()
    if not roots:
        raise ServerFolderError(f"training from folders on the server is turned off: {ROOTS_VARIABLE} is not set. "
                                "Upload the folder instead, or ask the administrator to set "
                                f"{ROOTS_VARIABLE} to the folders users may train from (':'-separated)")
    if not text.strip():
        raise ServerFolderError(f"enter a folder inside {', '.join(map(str, roots))}")
    path = Path(text.strip()).expanduser().resolve()
    if not any(path == r or r in path.parents for r in roots):
        raise ServerFolderError(f"{path} is outside the folders this server allows ({', '.join(map(str, roots))}); "
                                "ask the administrator or upload the folder instead")
    if on_kernel_fs(path):
        raise ServerFolderError(f"{path} is a kernel or device file system (/proc, /sys, /dev), not a dataset; "
                                "choose a folder of images")
    try:
        if not path.is_dir():
            raise ServerFolderError(f"{path} does not exist on the server (or is not a folder)")
        os.scandir(path).close()
    except OSError as exc:
        raise ServerFolderError(f"{path} cannot be read by the server ({exc.strerror or type(exc).__name__}); ask "
                                "the administrator to let the server's account read it, or upload the folder") from exc
    return path
