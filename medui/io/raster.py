"""PNG, JPEG and TIFF (8/16-bit, grey or colour, multi-page TIFF) through OpenCV."""

from __future__ import annotations

import io

import numpy as np

from medui.errors import ImageTooLargeError, UnreadableFileError
from medui.io.sources import Limits, SourceFile
from medui.series import Series

_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def looks_like_raster(head: bytes, name: str) -> bool:
    return head.startswith(_MAGIC) or name.lower().endswith(RASTER_SUFFIXES)


def declared_size(data: bytes, max_pages: int) -> tuple[int, int, int, int] | None:
    """(pixels over all pages, pages, first page's width x height, bands) from the headers only."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            bands = len(im.getbands())
            first, pixels = im.width * im.height, 0
            pages = int(getattr(im, "n_frames", 1))
            if pages > max_pages:
                raise ImageTooLargeError(f"has {pages} pages; at most {max_pages} are read (MEDUI_MAX_FRAMES)")
            for page in range(pages):  # every page of a multi-page TIFF
                im.seek(page)
                pixels += im.width * im.height
                bands = max(bands, len(im.getbands()))
            return pixels, pages, first, bands
    except ImageTooLargeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"declares more pixels than any image MedUI reads ({exc})") from exc
    except Exception:
        return None


def read_raster(src: SourceFile, limits: Limits) -> Series:
    """One image file as a Series; raises UnreadableFileError or ImageTooLargeError."""
    import cv2

    data = src.read()
    declared = declared_size(data, limits.max_frames)
    if declared is None:
        raise UnreadableFileError("is not a readable PNG/JPEG/TIFF image (damaged or another format); "
                                  "re-save it as PNG")
    pixels_total, n_pages, _, bands = declared
    # float32 result; colour also holds the decoded 8-bit page and its RGB copy while decoding
    need = pixels_total * (3 * (4 + 2) if bands >= 3 else 4)
    limits.check_image(need, f"{n_pages} page(s), {pixels_total} pixels")
    buf = np.frombuffer(data, np.uint8)
    pages: list[np.ndarray] = []
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        ok, mats = cv2.imdecodemulti(buf, cv2.IMREAD_UNCHANGED)
        pages = list(mats) if ok else []
    else:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        pages = [img] if img is not None else []
    if not pages:
        raise UnreadableFileError("could not be decoded as an image (damaged file?); re-save it as PNG")
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
    base = src.name.rsplit("/", 1)[-1]
    limits.charge(pixels.nbytes, f"the image {src.name}")  # what the load keeps (checked above before decoding)
    return Series(
        pixels=pixels, affine=np.eye(4), modality="OT", photometric="RGB" if colour else "MONOCHROME2",
        description=base, source_format=base.rsplit(".", 1)[-1].upper() if "." in base else "image",
        files=[src.name], warnings=warnings, has_geometry=False, pixel_spacing_known=False,
    )


def _to_rgb_or_grey(img: np.ndarray) -> np.ndarray:
    import cv2

    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim == 3 and img.shape[2] == 3:
        if np.array_equal(img[:, :, 0], img[:, :, 1]) and np.array_equal(img[:, :, 1], img[:, :, 2]):
            return img[:, :, 0]
        rgb: np.ndarray = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return rgb
    if img.ndim == 3 and img.shape[2] == 1:
        return img[:, :, 0]
    return img
