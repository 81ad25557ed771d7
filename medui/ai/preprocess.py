"""The one preprocessing function, shared by training and inference, driven by the model card."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medui.ai.card import ModelCard


@dataclass(frozen=True)
class Geometry:
    """Where the original image lies inside the model input (to map saliency back onto it)."""

    original: tuple[int, int]  # rows, cols of the source image
    top: int
    left: int
    height: int  # size of the image inside the model input, before padding
    width: int


def _intensity(image: np.ndarray, card: ModelCard) -> np.ndarray:
    pre = card.preprocessing
    x = image.astype(np.float32, copy=False)
    if pre.intensity == "window" and pre.window:
        lo, hi = pre.window[0] - pre.window[1] / 2, pre.window[0] + pre.window[1] / 2
    elif pre.intensity == "minmax":
        lo, hi = float(x.min()), float(x.max())
    else:
        flat = x.reshape(-1)[:: max(1, x.size // 200_000)]
        lo, hi = (float(v) for v in np.percentile(flat, [pre.low, pre.high]))
    if hi <= lo:
        hi = lo + 1.0
    out = np.subtract(x, lo)  # one new array, then in place: a 2048x2048 radiograph is 16 MB per pass
    np.divide(out, hi - lo, out=out)
    return np.clip(out, 0.0, 1.0, out=out)


def prepare(image: np.ndarray, card: ModelCard, invert: bool = False) -> tuple[np.ndarray, Geometry]:
    """A 2-D slice in modality units (grey HxW or colour HxWx3) -> model input HxWxC in [0, 1].

    `invert` is True for MONOCHROME1 images, so the model always sees bright = dense.
    """
    import cv2

    if image.ndim == 3:
        grey = image.mean(axis=2) if card.channels == 1 else None
        x = (np.clip(image, 0, 255) / 255.0).astype(np.float32) if grey is None else _intensity(grey, card)
    else:
        x = _intensity(image, card)
    if invert:
        x = 1.0 - x
    th, tw = card.input_size
    h, w = x.shape[:2]
    if card.preprocessing.resize == "stretch":
        nh, nw, top, left = th, tw, 0, 0
    else:
        scale = min(th / h, tw / w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        top, left = (th - nh) // 2, (tw - nw) // 2
    interp = cv2.INTER_AREA if nh < h else cv2.INTER_LINEAR
    resized = cv2.resize(x, (nw, nh), interpolation=interp)
    out = np.zeros((th, tw) + resized.shape[2:], np.float32)
    out[top:top + nh, left:left + nw] = resized
    if out.ndim == 2:
        out = out[..., np.newaxis]
    if out.shape[-1] != card.channels:
        out = np.repeat(out[..., :1], card.channels, axis=-1)
    return out, Geometry((h, w), top, left, nh, nw)


def to_original(saliency: np.ndarray, geom: Geometry) -> np.ndarray:
    """A map on the model input grid, cropped of padding and resized to the source image grid."""
    import cv2

    crop = saliency[geom.top:geom.top + geom.height, geom.left:geom.left + geom.width].astype(np.float32)
    return cv2.resize(crop, (geom.original[1], geom.original[0]), interpolation=cv2.INTER_LINEAR)
