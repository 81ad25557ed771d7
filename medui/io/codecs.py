"""A pydicom decoding plugin backed by imagecodecs (libjpeg-turbo 3 and CharLS).

JPEG Lossless is what most CT and MR archives send. pydicom's own plugins decode it with GDCM
(~5-7 ms per 512x512 slice here) or libjpeg (about twice that); libjpeg-turbo 3 does it in
~2 ms. The plugin follows pydicom's plugin contract (`is_available`, `DECODER_DEPENDENCIES`,
`_decode_frame`) and is added *after* pydicom's own plugins, so other code calling
`ds.pixel_array` keeps pydicom's order; MedUI asks for it by name (`pixel_array` below) and
falls back to pydicom's plugins whenever it declines or fails. `MEDUI_DECODER=pydicom` turns it
off.

Scope (checked against pydicom's plugins in tests/test_io_codecs.py): one sample per pixel
(greyscale) JPEG Lossless (process 14 and SV1) and JPEG-LS lossless. Colour and lossy syntaxes
go to pydicom's plugins, which handle their colour spaces.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np
from pydicom import uid


def _load_imagecodecs() -> Any:
    """The imagecodecs module when it has the JPEG and JPEG-LS codecs, else None."""
    try:
        import imagecodecs

        return imagecodecs if imagecodecs.JPEG8.available and imagecodecs.JPEGLS.available else None
    except (ImportError, AttributeError):  # not installed, or a build without these codecs
        return None


imagecodecs: Any = _load_imagecodecs()
HAVE_IMAGECODECS = imagecodecs is not None

LABEL = "imagecodecs"
_JPEG_LOSSLESS = (uid.JPEGLossless, uid.JPEGLosslessSV1)
_JPEG_LS = (uid.JPEGLSLossless,)
DECODER_DEPENDENCIES = {ts: ("imagecodecs>=2024.1.1",) for ts in _JPEG_LOSSLESS + _JPEG_LS}


def is_available(tsyntax: str) -> bool:
    """True if imagecodecs is installed with the codec for this transfer syntax."""
    return HAVE_IMAGECODECS and tsyntax in DECODER_DEPENDENCIES


def _decode_frame(src: bytes, runner: Any) -> bytes:
    """Decode one encoded frame to its raw sample bytes (pydicom applies sign and shape)."""
    tsyntax = runner.transfer_syntax
    if runner.samples_per_pixel != 1:
        raise NotImplementedError("the imagecodecs plugin only decodes greyscale (one sample per pixel)")
    if tsyntax in _JPEG_LOSSLESS:
        arr = imagecodecs.jpeg8_decode(src)
    elif tsyntax in _JPEG_LS:
        arr = imagecodecs.jpegls_decode(src)
    else:
        raise NotImplementedError(f"the imagecodecs plugin does not decode '{tsyntax.name}'")
    if arr.shape != (runner.rows, runner.columns):
        raise ValueError(f"the frame decoded to shape {arr.shape}, but the header says "
                         f"{runner.rows}x{runner.columns}")
    if arr.dtype.itemsize * 8 != runner.bits_allocated:
        # e.g. a 12-bit JPEG Lossless stream in 16-bit storage decodes to uint16 anyway; an
        # 8-bit precision stream in 16-bit storage decodes to uint8: tell pydicom what it got.
        runner.set_option("bits_allocated", arr.dtype.itemsize * 8)
    raw: bytes = arr.tobytes()
    return raw


def _register() -> bool:
    """Add the plugin to pydicom's decoders for the syntaxes above (idempotent).

    Runs once, at import (imports are serialised, and pydicom's `add_plugin` is not thread-safe).
    """
    if not HAVE_IMAGECODECS:
        return False
    from pydicom.pixels.decoders.base import get_decoder

    for tsyntax in DECODER_DEPENDENCIES:
        decoder = get_decoder(tsyntax)
        if LABEL not in decoder.available_plugins:
            with contextlib.suppress(ValueError):  # registered by an earlier import under another name
                decoder.add_plugin(LABEL, (__name__, "_decode_frame"))
    return LABEL in get_decoder(uid.JPEGLosslessSV1).available_plugins


REGISTERED = _register()


def enabled() -> bool:
    """Whether MedUI decodes with the plugin (MEDUI_DECODER=pydicom turns it off)."""
    return REGISTERED and os.environ.get("MEDUI_DECODER", "auto").lower() != "pydicom"


def pixel_array(ds: Any, fast: bool = True) -> np.ndarray:
    """`ds.pixel_array`, decoded by the imagecodecs plugin where it applies (and `fast`).

    Falls back to pydicom's own plugins when the plugin declines (colour, other syntaxes) or
    fails on a stream, so a file that pydicom can decode is never lost.
    """
    meta = getattr(ds, "file_meta", None)
    tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if fast and REGISTERED and tsyntax in DECODER_DEPENDENCIES and int(ds.get("SamplesPerPixel", 1) or 1) == 1:
        try:
            ds.pixel_array_options(decoding_plugin=LABEL)
            fast_pixels: np.ndarray = ds.pixel_array
            return fast_pixels
        except Exception:
            pass
        finally:
            ds.pixel_array_options(decoding_plugin="")
    pixels: np.ndarray = ds.pixel_array
    return pixels
