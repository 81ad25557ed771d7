"""Saliency overlays: a map in [0, 1] blended over the windowed image, with an optional contour."""

from __future__ import annotations

import numpy as np

COLORMAPS = {"jet": 2, "inferno": 21, "viridis": 16, "hot": 11, "turbo": 20}  # OpenCV COLORMAP_* ids


def overlay_rgb(base_u8: np.ndarray, saliency: np.ndarray, opacity: float = 0.4, colormap: str = "jet",
                contour: float | None = None, floor: float = 0.2) -> np.ndarray:
    """uint8 RGB: `base_u8` (grey or RGB) with the map blended where it exceeds `floor`."""
    import cv2

    base = cv2.cvtColor(base_u8, cv2.COLOR_GRAY2RGB) if base_u8.ndim == 2 else base_u8
    if saliency.shape != base.shape[:2]:
        size = (base.shape[1], base.shape[0])
        saliency = cv2.resize(saliency.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    s = np.clip(saliency, 0, 1)
    heat = cv2.applyColorMap((s * 255).astype(np.uint8), COLORMAPS.get(colormap, 2))
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB).astype(np.float32)
    alpha = (opacity * np.clip((s - floor) / max(1 - floor, 1e-6), 0, 1))[..., None]
    out = base.astype(np.float32) * (1 - alpha) + heat * alpha
    out = np.asarray(np.clip(out, 0, 255).astype(np.uint8))
    if contour is not None:
        cnts, _ = cv2.findContours((s >= contour).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, cnts, -1, (255, 255, 255), max(1, round(max(out.shape[:2]) / 400)))
    return out
