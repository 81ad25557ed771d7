"""Public datasets written as labelled folders. PneumoniaMNIST (MedMNIST v2, CC BY 4.0): paediatric
chest X-rays, normal vs pneumonia, at 28, 64, 128 or 224 pixels.

Online, the `medmnist` package downloads the `.npz` once; offline, an already-downloaded `.npz` of the
same format is used (`--npz FILE`, or the medmnist data folder).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from medui.errors import DatasetUnavailableError

PNEUMONIA_CLASSES = ("normal", "pneumonia")
SIZES = (28, 64, 128, 224)


def _npz_name(size: int) -> str:
    return "pneumoniamnist.npz" if size == 28 else f"pneumoniamnist_{size}.npz"


def medmnist_root() -> Path:
    return Path(os.environ.get("MEDMNIST_ROOT", Path.home() / ".medmnist"))


def find_npz(size: int, npz: str | None = None) -> Path:
    """The .npz to read: given, already downloaded, or downloaded now through medmnist."""
    if npz:
        path = Path(npz)
        if not path.is_file():
            raise DatasetUnavailableError(f"{path} does not exist; give the path of a PneumoniaMNIST .npz file")
        return path
    local = medmnist_root() / _npz_name(size)
    if local.is_file():
        return local
    try:
        import medmnist  # noqa: F401
        from medmnist import PneumoniaMNIST
    except ImportError as exc:
        raise DatasetUnavailableError(
            "the medmnist package is not installed and no local copy was found at "
            f"{local}. Install it (pip install medmnist) and run again online, or pass --npz FILE") from exc
    try:
        medmnist_root().mkdir(parents=True, exist_ok=True)
        PneumoniaMNIST(split="train", download=True, size=size, root=str(medmnist_root()))
    except Exception as exc:
        raise DatasetUnavailableError(
            f"could not download PneumoniaMNIST ({size}px) ({type(exc).__name__}: {str(exc)[:120]}). This machine "
            f"may be offline: download {_npz_name(size)} from https://zenodo.org/records/10519652 on a machine "
            f"with internet, copy it to {local} or pass --npz FILE") from exc
    return local


def write_pneumoniamnist(out: Path, size: int = 64, npz: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """Write out/{train,val,test}/{normal,pneumonia}/pneumoniamnist_<split>_<n>.png; returns counts."""
    import cv2

    if size not in SIZES:
        raise DatasetUnavailableError(f"PneumoniaMNIST comes in sizes {SIZES}, not {size}")
    path = find_npz(size, npz)
    try:
        data = np.load(path)
        arrays = {sp: (data[f"{sp}_images"], data[f"{sp}_labels"].reshape(-1)) for sp in ("train", "val", "test")}
    except (KeyError, ValueError, OSError) as exc:
        raise DatasetUnavailableError(f"{path} is not a MedMNIST .npz (needs train/val/test _images and _labels "
                                      f"arrays): {exc}") from exc
    out = Path(out)
    counts: dict[str, dict[str, int]] = {}
    for sp, (images, labels) in arrays.items():
        counts[sp] = {c: 0 for c in PNEUMONIA_CLASSES}
        n = len(images) if limit is None else min(limit, len(images))
        for k in range(n):
            cls = PNEUMONIA_CLASSES[int(labels[k])]
            target = out / sp / cls / f"pneumoniamnist_{sp}_{k:05d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(target), np.asarray(images[k], np.uint8))
            counts[sp][cls] += 1
    return {"source": str(path), "size": size, "counts": counts, "out": str(out)}
