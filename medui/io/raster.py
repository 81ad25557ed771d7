"""PNG, JPEG and TIFF (8/16-bit, grey or colour, multi-page TIFF) through OpenCV."""

from __future__ import annotations

import io

import numpy as np

from medui.io.sources import Limits, Skipped, SourceFile
from medui.series import Series

_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def looks_like_raster(head: bytes, name: str) -> bool:
    return head.startswith(_MAGIC) or name.lower().endswith(RASTER_SUFFIXES)


def _declared_size(data: bytes) -> tuple[int, int, int, int] | None:
    """(pixels over all pages, widest page's width, its height, bands) from the headers, without decoding."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            bands = len(im.getbands())
            width, height, pixels = im.width, im.height, 0
            for page in range(getattr(im, "n_frames", 1)):  # every page of a multi-page TIFF
                im.seek(page)
                pixels += im.width * im.height
                bands = max(bands, len(im.getbands()))
            return pixels, width, height, bands
    except Exception:
        return None


def read_raster(src: SourceFile, limits: Limits) -> tuple[Series | None, Skipped | None]:
    import cv2

    data = src.read()
    declared = _declared_size(data)
    if declared is None:
        return None, Skipped(src.name, "is not a readable PNG/JPEG/TIFF image (damaged or another format)")
    pixels, w, h, bands = declared
    need = pixels * (3 if bands >= 3 else 1) * 4
    if need > limits.max_image_bytes:
        return None, Skipped(src.name, f"is {w}x{h} pixels ({pixels // max(w * h, 1)} page(s)) and would need {need / 2**20:.0f} MiB once decoded; the "
                                       f"limit is {limits.max_image_bytes / 2**20:.0f} MiB (raise MEDUI_MAX_IMAGE_MB)")
    buf = np.frombuffer(data, np.uint8)
    pages: list[np.ndarray] = []
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        ok, mats = cv2.imdecodemulti(buf, cv2.IMREAD_UNCHANGED)
        pages = list(mats) if ok else []
    else:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        pages = [img] if img is not None else []
    if not pages:
        return None, Skipped(src.name, "could not be decoded as an image (damaged file?); re-save it as PNG")
    pages = [_to_rgb_or_grey(p) for p in pages]
    shapes = {p.shape for p in pages}
    warnings = ["pixel spacing unknown (not recorded in this format); distances are in pixels"]
    if len(shapes) > 1:
        warnings.append(f"{len(pages)} pages of different sizes: showing the first")
        pages = pages[:1]
    depth = pages[0].dtype
    pixels = np.stack(pages).astype(np.float32)
    colour = pixels.ndim == 4
    if colour and depth == np.uint16:
        pixels *= np.float32(255.0 / 65535.0)
    if len(pages) > 1:
        warnings.append("multi-page image: pages are shown as frames without positions")
    return Series(
        pixels=pixels, affine=np.eye(4), modality="OT", photometric="RGB" if colour else "MONOCHROME2",
        description=src.name.rsplit("/", 1)[-1], source_format=src.name.rsplit(".", 1)[-1].upper() if "." in src.name else "image",
        files=[src.name], warnings=warnings, has_geometry=False,
    ), None


def _to_rgb_or_grey(img: np.ndarray) -> np.ndarray:
    import cv2

    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim == 3 and img.shape[2] == 3:
        if np.array_equal(img[:, :, 0], img[:, :, 1]) and np.array_equal(img[:, :, 1], img[:, :, 2]):
            return img[:, :, 0]
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.ndim == 3 and img.shape[2] == 1:
        return img[:, :, 0]
    return img
