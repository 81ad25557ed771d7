"""Real sample scans that ship inside installed packages, for a first look without data."""

from __future__ import annotations

from pathlib import Path

# label -> file name in pydicom's bundled test files (no download needed).
PYDICOM_SAMPLES = {
    "CT chest slice (pydicom CT_small)": "CT_small.dcm",
    "MR slice (pydicom MR_small)": "MR_small.dcm",
    "Ultrasound cine, colour, 30 frames": "examples_ybr_color.dcm",
}


def sample_path(label: str) -> Path:
    """Path of a bundled sample; raises KeyError for an unknown label."""
    from pydicom.data import get_testdata_file

    name = PYDICOM_SAMPLES[label]
    path = get_testdata_file(name, download=False)
    if path is None:
        raise FileNotFoundError(f"pydicom's sample '{name}' is not installed; reinstall pydicom")
    return Path(path)
