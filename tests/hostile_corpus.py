"""A corpus of hostile, damaged and odd inputs for MedUI's loader, each a few KB, generated.

    cases = build(tmp_path)       # writes every case into tmp_path, returns [Case]

Every case is one file (a zip for cases that need several members) named '<id>_<what>.<ext>';
what `medui.io.loader.load` makes of it is checked by tests/test_hostile.py and counted by
bench/bench_hostile.py. `expect` is 'load' (a series must come out), 'skip' (the file must be
reported) or 'any' (either, as long as it is loaded or reported).
"""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    RLELossless,
    generate_uid,
)


@dataclass(frozen=True)
class Case:
    name: str  # file name, unique prefix of everything the loader reports for it
    category: str
    data: bytes
    expect: str = "any"  # 'load' | 'skip' | 'any'


def dicom(mutate: Callable[[Dataset], None] | None = None, rows: int = 8, cols: int = 8, frames: int = 1,
          syntax: str = ExplicitVRLittleEndian, pixel: bytes | None = None, preamble: bool = True,
          replace: tuple[bytes, bytes] | None = None) -> bytes:
    """A small valid CT image (int16), changed by `mutate` before it is written (unchecked)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID = "Hostile^Case", "HOSTILE-0"
    ds.Modality = "CT"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.PixelSpacing = [0.7, 0.7]
    ds.ImagePositionPatient = [0, 0, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ReferencedImageSequence = [Dataset()]
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = generate_uid()
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = pixel if pixel is not None else (
        np.arange(rows * cols * frames, dtype="<i2") % 2000).tobytes()
    if mutate:
        mutate(ds)
    bio = io.BytesIO()
    ds.is_little_endian = True
    ds.is_implicit_VR = syntax == ImplicitVRLittleEndian
    pydicom.dcmwrite(bio, ds, enforce_file_format=False, write_like_original=not preamble)
    out = bio.getvalue()
    if isinstance(mutate, _Raw):
        out = mutate.patch(out)
    if replace is not None:  # same-length bytes: a value no pydicom element may hold
        out = out.replace(*replace)
    return out if preamble else out[132:]


def _set(**values: object) -> Callable[[Dataset], None]:
    def mutate(ds: Dataset) -> None:
        for key, value in values.items():
            if value is None:
                delattr(ds, key) if key in ds else None
            else:
                setattr(ds, key, value)
    return mutate


@dataclass(frozen=True)
class _Raw:
    """Store a value's bytes as given, bypassing pydicom's checks (text in a number, a wrong length):
    a valid placeholder is written, then the element's value bytes are replaced in the file."""

    tag: int
    vr: str
    value: object

    def __call__(self, ds: Dataset) -> None:
        ds.add_new(self.tag, self.vr, 1 if self.vr in ("US", "UL", "SS") else "1")

    def patch(self, data: bytes) -> bytes:
        raw = b"" if self.value is None else self.value if isinstance(self.value, bytes) else str(
            self.value).encode("latin-1")
        if self.vr not in ("US", "UL", "SS"):
            raw += b" " * (len(raw) % 2)
        key = struct.pack("<HH", self.tag >> 16, self.tag & 0xFFFF) + self.vr.encode()
        at = data.find(key, 132)
        old = int.from_bytes(data[at + 6:at + 8], "little")
        return data[:at + 6] + len(raw).to_bytes(2, "little") + raw + data[at + 8 + old:]


def _raw(tag: int, vr: str, value: object) -> _Raw:
    return _Raw(tag, vr, value)


def _boundaries(data: bytes) -> list[int]:
    """Offsets of the top-level elements of an explicit VR little endian file, and inside them."""
    out, at = [0, 64, 128, 130, 132, 136], 132
    long_vrs = {b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"OD", b"OL", b"OV", b"UC", b"UR"}
    while at + 8 <= len(data):
        out += [at, at + 2, at + 4, at + 6, at + 8]
        vr = data[at + 4:at + 6]
        if vr in long_vrs:
            length = int.from_bytes(data[at + 8:at + 12], "little")
            head = 12
        else:
            length = int.from_bytes(data[at + 6:at + 8], "little")
            head = 8
        if length == 0xFFFFFFFF:
            end = data.find(b"\xfe\xff\xdd\xe0", at)
            if end < 0:
                break
            out.append((at + end) // 2)
            at = end + 8
        else:
            if length > 2:
                out.append(at + head + length // 2)
            at += head + length
    return sorted({o for o in out if 0 < o < len(data)})


def _dicom_truncations() -> Iterator[Case]:
    good = dicom()
    for k, cut in enumerate(_boundaries(good)):
        yield Case(f"trunc{k:03d}_at{cut}.dcm", "dicom_truncation", good[:cut], "skip")


def _deep_sequence(depth: int) -> bytes:
    """A file whose first element is a sequence nested `depth` deep (undefined lengths), by hand."""
    good = dicom(lambda ds: delattr(ds, "ReferencedImageSequence"))
    start = 144 + int.from_bytes(good[140:144], "little")  # after the file meta group
    open_sq = b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    close_sq = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    return good[:start] + open_sq * depth + close_sq * depth + good[start:]


def _palette(entries: int, data_entries: int | None, bits: int = 16) -> Callable[[Dataset], None]:
    def mutate(ds: Dataset) -> None:
        ds.PhotometricInterpretation = "PALETTE COLOR"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = bytes(range(64))
        for colour in ("Red", "Green", "Blue"):
            ds.add_new(pydicom.datadict.tag_for_keyword(f"{colour}PaletteColorLookupTableDescriptor"),
                       "US", [entries, 0, bits])
            if data_entries is not None:
                ds.add_new(pydicom.datadict.tag_for_keyword(f"{colour}PaletteColorLookupTableData"),
                           "OW", b"\x00\x01" * data_entries)
    return mutate


def _modality_lut(descriptor: list[int] | None, data: list[int] | None) -> Callable[[Dataset], None]:
    def mutate(ds: Dataset) -> None:
        item = Dataset()
        if descriptor is not None:
            item.add_new(0x00283002, "US", descriptor)
        if data is not None:
            item.add_new(0x00283006, "US", data)
        item.ModalityLUTType = "HU"
        ds.ModalityLUTSequence = Sequence([item] if descriptor or data else [])
        del ds.RescaleSlope, ds.RescaleIntercept
    return mutate


def _j2k_stream(cols: int, rows: int) -> bytes:
    siz = struct.pack(">HHIIIIIIIIH", 41, 0, cols, rows, 0, 0, cols, rows, 0, 0, 1) + b"\x0f\x01\x01"
    return b"\xff\x4f\xff\x51" + siz + b"\xff\xd9"


def _encapsulated(fragments: list[bytes]) -> bytes:
    out = b"\xfe\xff\x00\xe0\x00\x00\x00\x00"
    for frag in fragments:
        frag += b"\x00" * (len(frag) % 2)
        out += b"\xfe\xff\x00\xe0" + len(frag).to_bytes(4, "little") + frag
    return out + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _enhanced(rescale: object) -> Callable[[Dataset], None]:
    def mutate(ds: Dataset) -> None:
        frames = []
        for k in range(2):
            fg = Dataset()
            pv = Dataset()
            pv.add_new(0x00281053, "DS", rescale if k else "1")
            pv.add_new(0x00281052, "DS", "0")
            pv.add_new(0x00281054, "LO", "HU")
            fg.PixelValueTransformationSequence = Sequence([pv])
            frames.append(fg)
        ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    return mutate


def _dicom_values() -> Iterator[Case]:
    cases: list[tuple[str, bytes, str]] = [
        ("slope_text", dicom(_raw(0x00281053, "DS", "abc")), "skip"),
        ("intercept_text", dicom(_raw(0x00281052, "DS", "x1")), "skip"),
        ("slope_nan", dicom(_raw(0x00281053, "DS", "NaN")), "skip"),
        ("slope_inf", dicom(_raw(0x00281053, "DS", "inf")), "skip"),
        ("window_center_text", dicom(_raw(0x00281050, "DS", "abc")), "load"),
        ("window_width_text", dicom(_raw(0x00281051, "DS", "wide")), "load"),
        ("window_width_zero", dicom(_set(WindowWidth=0)), "load"),
        ("rows_zero", dicom(_set(Rows=0)), "skip"),
        ("columns_zero", dicom(_set(Columns=0)), "skip"),
        ("rows_missing", dicom(_set(Rows=None)), "skip"),
        ("rows_empty", dicom(_raw(0x00280010, "US", None)), "skip"),
        ("frames_zero", dicom(_raw(0x00280008, "IS", "0")), "skip"),
        ("frames_negative", dicom(_raw(0x00280008, "IS", "-5")), "skip"),
        ("frames_text", dicom(_raw(0x00280008, "IS", "many")), "skip"),
        ("frames_fraction", dicom(_raw(0x00280008, "IS", "2.5")), "skip"),
        ("frames_million_no_data", dicom(_raw(0x00280008, "IS", "1000000"), rows=1, cols=1), "skip"),
        # loads with the default budget (native frames are handled as arrays); 200000 frames of bookkeeping
        # pass the 16 MiB budget of the tests, so there it is reported
        ("frames_200k_1x1", dicom(_set(BitsAllocated=8, BitsStored=8, HighBit=7, PixelRepresentation=0),
                                  rows=1, cols=1, frames=200000, pixel=b"\x01" * 200000), "any"),
        ("frames_at_cap_1x1", dicom(_set(BitsAllocated=8, BitsStored=8, HighBit=7, PixelRepresentation=0),
                                    rows=1, cols=1, frames=20000, pixel=b"\x01" * 20000), "load"),
        ("frames_more_than_data", dicom(_raw(0x00280008, "IS", "3")), "skip"),
        ("bits_12", dicom(_set(BitsAllocated=12)), "skip"),
        ("bits_7", dicom(_set(BitsAllocated=7)), "skip"),
        ("bits_0", dicom(_set(BitsAllocated=0)), "skip"),
        ("bits_128", dicom(_set(BitsAllocated=128)), "skip"),
        ("samples_3_mono", dicom(_set(SamplesPerPixel=3)), "skip"),
        ("samples_1_rgb", dicom(_set(PhotometricInterpretation="RGB")), "skip"),
        ("samples_2", dicom(_set(SamplesPerPixel=2)), "skip"),
        ("samples_0", dicom(_set(SamplesPerPixel=0)), "skip"),
        ("photometric_unknown", dicom(_set(PhotometricInterpretation="FOO")), "any"),
        ("palette_no_lut", dicom(_palette(256, None)), "skip"),
        ("palette_short_lut", dicom(_palette(256, 10)), "skip"),
        ("palette_bits_3", dicom(_palette(256, 256, bits=3)), "skip"),
        ("palette_good", dicom(_palette(256, 256)), "load"),
        ("modality_lut_empty", dicom(_modality_lut(None, None)), "skip"),
        ("modality_lut_no_data", dicom(_modality_lut([4096, 0, 16], None)), "skip"),
        ("modality_lut_short", dicom(_modality_lut([4096, 0, 16], [0, 1, 2])), "skip"),
        ("modality_lut_bad_descriptor", dicom(_modality_lut([4096], list(range(16)))), "skip"),
        ("unknown_transfer_syntax", dicom(lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", "1.2.3.4.5")),
         "skip"),
        ("pixel_zero_length", dicom(pixel=b""), "skip"),
        ("pixel_two_bytes_short", dicom(pixel=b"\x00" * 126), "skip"),
        ("pixel_missing", dicom(lambda ds: delattr(ds, "PixelData")), "skip"),
        ("pixel_extra_bytes", dicom(pixel=b"\x00" * 4096), "load"),
        ("spacing_negative", dicom(_set(PixelSpacing=[-1, -1])), "load"),
        ("spacing_nan", dicom(_raw(0x00280030, "DS", "NaN\\NaN")), "load"),
        ("spacing_zero", dicom(_set(PixelSpacing=[0, 0])), "load"),
        ("spacing_text", dicom(_raw(0x00280030, "DS", "a\\b")), "load"),
        ("position_nan", dicom(_raw(0x00200032, "DS", "NaN\\0\\0")), "load"),
        ("position_text", dicom(_raw(0x00200032, "DS", "x\\y\\z")), "load"),
        ("position_short", dicom(_raw(0x00200032, "DS", "1\\2")), "load"),
        ("orientation_zero", dicom(_set(ImageOrientationPatient=[0, 0, 0, 0, 0, 0])), "load"),
        ("orientation_nan", dicom(_raw(0x00200037, "DS", "NaN\\0\\0\\0\\1\\0")), "load"),
        ("thickness_negative", dicom(_set(SliceThickness=-3)), "load"),
        ("instance_number_text", dicom(_raw(0x00200013, "IS", "seven")), "load"),
        ("rows_as_text_vr", dicom(_raw(0x00280010, "US", b"\x01")), "skip"),
        ("rows_wrong_vr_ds", dicom(_raw(0x00280010, "DS", "8.0")), "any"),
        ("huge_length_string", dicom(lambda ds: ds.add_new(0x00081030, "LO", "x" * 70000)), "any"),
        ("deep_sequence_200", _deep_sequence(200), "any"),
        ("deep_sequence_5000", _deep_sequence(5000), "any"),
        ("enhanced_rescale_text", dicom(_enhanced("987"), frames=2, replace=(b"987 ", b"abc ")), "skip"),
        ("enhanced_rescale_good", dicom(_enhanced("2"), frames=2), "load"),
        ("sr_document", dicom(_set(SOPClassUID="1.2.840.10008.5.1.4.1.1.88.11")), "skip"),
        ("no_sop_no_rows", dicom(_set(SOPClassUID=None, Rows=None, Columns=None)), "skip"),
        ("no_preamble", dicom(preamble=False), "any"),
        ("implicit_vr", dicom(syntax=ImplicitVRLittleEndian), "load"),
        ("rgb_good", dicom(_set(SamplesPerPixel=3, PhotometricInterpretation="RGB", BitsAllocated=8, BitsStored=8,
                                HighBit=7, PixelRepresentation=0, PlanarConfiguration=0,
                                PixelData=bytes(range(192)))), "load"),
        ("j2k_siz_huge", dicom(pixel=_encapsulated([_j2k_stream(60000, 60000)]), syntax=JPEG2000Lossless), "skip"),
        ("j2k_siz_mismatch", dicom(pixel=_encapsulated([_j2k_stream(16, 16)]), syntax=JPEG2000Lossless), "skip"),
        ("j2k_garbage", dicom(pixel=_encapsulated([b"\xff\x4f" + b"\x00" * 50]), syntax=JPEG2000Lossless), "skip"),
        ("j2k_no_fragments", dicom(pixel=_encapsulated([]), syntax=JPEG2000Lossless), "skip"),
        ("jpeg_ls_garbage", dicom(pixel=_encapsulated([b"\xff\xd8" + b"\x17" * 64]), syntax=JPEGLosslessSV1), "skip"),
        ("rle_bad_offsets", dicom(pixel=_encapsulated([struct.pack("<16I", 2, 64, 9999, *([0] * 13)) + b"\x00" * 8]),
                                  syntax=RLELossless), "skip"),
        ("rle_short_segment", dicom(pixel=_encapsulated([struct.pack("<16I", 2, 64, 66, *([0] * 13)) + b"\x7f\x01"]),
                                    syntax=RLELossless), "skip"),
        ("rle_segment_count_15", dicom(pixel=_encapsulated([struct.pack("<16I", 15, *([64] * 15)) + b"\x00" * 8]),
                                       syntax=RLELossless), "skip"),
        ("encapsulated_not_items", dicom(pixel=_encapsulated([b"ABCDEFGH" * 8]), syntax=RLELossless,
                                         replace=(b"\xfe\xff\x00\xe0\x00\x00\x00\x00", b"\x00" * 8)), "skip"),
        ("random_bytes", bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8)), "skip"),
        ("dicm_then_garbage", b"\x00" * 128 + b"DICM" + b"\xff" * 300, "skip"),
        ("meta_length_huge", _meta_length_huge(), "any"),
        ("zeros_after_meta_3mb", dicom(pixel=b"")[:-12] + b"\x00" * 3_000_000, "skip"),
    ]
    for k, (what, data, expect) in enumerate(cases):
        yield Case(f"value{k:03d}_{what}.dcm", "dicom_values", data, expect)


def _meta_length_huge() -> bytes:
    good = dicom()
    # (0002,0000) FileMetaInformationGroupLength UL: its value sits right after its 8-byte header
    return good[:140] + b"\xff\xff\xff\x7f" + good[144:]


def _nifti(shape: tuple[int, ...] = (8, 8, 4), dtype: str = "<i2", affine: np.ndarray | None = None,
           mutate: Callable[[object], None] | None = None) -> bytes:
    import nibabel as nib

    if dtype == "RGB":
        data = np.zeros(shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
        data["R"] = 200
    else:
        data = (np.arange(int(np.prod(shape))) % 100).astype(dtype).reshape(shape)
    img = nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine)
    if mutate:
        mutate(img.header)
    return bytes(img.to_bytes())


def _nifti_cases() -> Iterator[Case]:
    good = _nifti()

    def zero_forms(h: object) -> None:
        h.set_sform(np.zeros((4, 4)), code=1)  # type: ignore[attr-defined]
        h.set_qform(None, code=0)  # type: ignore[attr-defined]

    def dim(values: list[int]) -> bytes:  # patched in the bytes: nibabel rewrites dim from the data
        return good[:40] + struct.pack("<8h", *values) + good[56:]

    cases: list[tuple[str, bytes, str]] = [
        ("good.nii", good, "load"),
        ("good.nii.gz", gzip.compress(good), "load"),
        ("truncated_data.nii", good[:400], "skip"),
        ("header_only.nii", good[:348], "skip"),
        ("header_cut.nii", good[:200], "skip"),
        ("vox_offset_past_end.nii", _set_vox_offset(good, 1_000_000.0), "skip"),
        ("vox_offset_negative.nii", _set_vox_offset(good, -100.0), "any"),
        ("dims_zero.nii", (dim([3, 8, 0, 4, 1, 1, 1, 1])), "skip"),
        ("dims_negative.nii", (dim([3, 8, -8, 4, 1, 1, 1, 1])), "skip"),
        ("dim0_zero.nii", (dim([0, 8, 8, 4, 1, 1, 1, 1])), "any"),
        ("dim0_nine.nii", (dim([9, 8, 8, 4, 1, 1, 1, 1])), "skip"),
        ("dims_huge.nii", (dim([3, 30000, 30000, 30000, 1, 1, 1, 1])), "skip"),
        ("sform_nan.nii", _set_short(good[:280] + struct.pack("<12f", *([float("nan")] * 12)) + good[328:], 254, 1),
         "load"),
        ("qform_nan.nii", _set_short(_set_short(good[:256] + struct.pack("<6f", *([float("nan")] * 6)) + good[280:],
                                                254, 0), 252, 1), "load"),
        ("sform_qform_zero.nii", _nifti(mutate=zero_forms), "load"),
        ("rgb24.nii", _nifti(dtype="RGB"), "load"),
        ("rgb24_2d.nii", _nifti(shape=(8, 8), dtype="RGB"), "load"),
        ("float_nan_voxels.nii", _nifti(dtype="<f4", mutate=None), "load"),
        ("datatype_unknown.nii", _set_short(good, 70, 999), "skip"),
        ("bitpix_lies.nii", _set_short(good, 72, 64), "any"),
        ("gz_truncated.nii.gz", gzip.compress(good)[:120], "skip"),
        ("gz_garbage.nii.gz", b"\x1f\x8b" + b"\x00" * 100, "skip"),
        ("gz_stream_past_header.nii.gz", gzip.compress(good + b"\x00" * 3_000_000), "load"),
        ("not_nifti_named.nii", b"hello, this is text" * 30, "skip"),
        ("four_d.nii", _nifti(shape=(8, 8, 2, 3)), "load"),
    ]
    for k, (what, data, expect) in enumerate(cases):
        yield Case(f"nifti{k:03d}_{what}", "nifti", data, expect)


def _set_vox_offset(data: bytes, value: float) -> bytes:
    return data[:108] + struct.pack("<f", value) + data[112:]


def _set_short(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + struct.pack("<h", value) + data[at + 2:]


def _png_header_only(width: int, height: int, colour: int = 2) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def _tiff_ifd_loop() -> bytes:
    """A 1x1 page whose next-IFD offset points back to itself."""
    tags = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 8),
            (277, 3, 1, 1), (278, 3, 1, 1), (279, 4, 1, 1)]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags) + struct.pack("<I", 10)
    return b"II*\x00" + struct.pack("<I", 10) + b"\x7f\x00" + ifd


def _raster_cases() -> Iterator[Case]:
    import cv2

    img = (np.arange(64 * 48) % 255).astype(np.uint8).reshape(64, 48)
    png = cv2.imencode(".png", img)[1].tobytes()
    jpg = cv2.imencode(".jpg", img)[1].tobytes()
    tif = cv2.imencodemulti(".tiff", [img, img])[1].tobytes()
    cases: list[tuple[str, bytes, str]] = [
        ("good.png", png, "load"),
        ("good.jpg", jpg, "load"),
        ("good.tiff", tif, "load"),
        ("png_13000_rgb.png", _png_header_only(13000, 13000), "skip"),
        ("png_13000_grey.png", _png_header_only(13000, 13000, 0), "any"),
        ("png_zero_size.png", _png_header_only(0, 0), "skip"),
        ("png_truncated.png", png[: len(png) // 2], "any"),
        ("png_header_cut.png", png[:20], "skip"),
        ("jpg_truncated.jpg", jpg[: len(jpg) // 2], "any"),
        ("jpg_soi_only.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 20, "skip"),
        ("tiff_truncated.tiff", tif[:100], "skip"),
        ("tiff_garbage.tiff", b"II*\x00" + b"\xff" * 200, "skip"),
        ("bmp_huge.bmp", b"BM" + struct.pack("<IHHIIiiHHIIiiII", 0, 0, 0, 54, 40, 60000, 60000, 1, 24, 0, 0, 0, 0,
                                             0, 0), "skip"),
        ("text_named.png", b"just some text, not a picture" * 5, "skip"),
        ("gif.gif", b"GIF89a" + b"\x00" * 100, "skip"),
        ("empty.png", b"", "skip"),
        ("seven_bytes.jpg", b"\xff\xd8\xff\x00\x00\x00\x00", "skip"),
        ("tiff_ifd_loop.tiff", _tiff_ifd_loop(), "any"),
        ("jpeg_sof_65000.jpg", b"\xff\xd8\xff\xc0" + struct.pack(">HBHHB", 17, 8, 65000, 65000, 3)
         + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00" + b"\xff\xd9", "skip"),
        ("png_13000_rgb_no_suffix", _png_header_only(13000, 13000), "skip"),
    ]
    for k, (what, data, expect) in enumerate(cases):
        yield Case(f"raster{k:03d}_{what}", "raster", data, expect)


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", method) as zf:
        for name, data in members.items():
            if name.endswith("/"):
                zf.writestr(zipfile.ZipInfo(name), b"")
            else:
                zf.writestr(name, data)
    return bio.getvalue()


def _zip_cases() -> Iterator[Case]:
    one = dicom()
    same_uid = dicom()
    dup = dicom(_set(SOPInstanceUID=pydicom.dcmread(io.BytesIO(same_uid)).SOPInstanceUID))
    inner = _zip({"a.dcm": dicom()})
    bomb = _zip({"zeros.dcm": b"\x00" * 20_000_000})
    good_zip = _zip({"s/1.dcm": one})
    cases: list[tuple[str, bytes, str]] = [
        ("good.zip", good_zip, "load"),
        ("empty.zip", _zip({}), "skip"),
        ("only_folders.zip", _zip({"a/": b"", "a/b/": b""}), "skip"),
        ("slip_dotdot.zip", _zip({"../../etc/passwd.dcm": one}), "skip"),
        ("slip_absolute.zip", _zip({"/etc/x.dcm": one}), "skip"),
        ("slip_windows.zip", _zip({"C:\\evil\\x.dcm": one}), "skip"),
        ("control_chars_name.zip", _zip({"bad\nname\x1b[31m.dcm": one}), "load"),
        ("bomb_20mb_zeros.zip", bomb, "skip"),
        ("nested_ok.zip", _zip({"inner.zip": inner}), "load"),
        ("nested_three_deep.zip", _zip({"l1.zip": _zip({"l2.zip": _zip({"l3.zip": inner})})}), "skip"),
        ("nested_bomb.zip", _zip({"inner.zip": bomb}), "skip"),
        ("truncated.zip", good_zip[: len(good_zip) // 2], "skip"),
        ("crc_wrong.zip", _flip_byte(_zip({"s/1.dcm": one}, zipfile.ZIP_STORED), 200), "skip"),
        ("not_really_zip.zip", b"PK\x03\x04" + b"\x00" * 60, "skip"),
        ("duplicate_sop_uid.zip", _zip({"x/1.dcm": same_uid, "x/2.dcm": dup}), "load"),
        ("mixed_members.zip", _zip({"x/1.dcm": one, "x/readme.txt": b"hello" * 10, "x/empty.dcm": b""}), "load"),
        ("with_dcm_gz_member.zip", _zip({"x/1.dcm.gz": gzip.compress(one)}), "load"),
        ("macosx_junk_only.zip", _zip({"__MACOSX/._a.dcm": b"junk", ".DS_Store": b"junk"}), "skip"),
    ]
    for k, (what, data, expect) in enumerate(cases):
        yield Case(f"zip{k:03d}_{what}", "zip", data, expect)


def _flip_byte(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def _gzip_cases() -> Iterator[Case]:
    good = dicom()
    cases: list[tuple[str, bytes, str]] = [
        ("good.dcm.gz", gzip.compress(good), "load"),
        ("no_dcm_suffix.gz", gzip.compress(good), "load"),
        ("truncated.dcm.gz", gzip.compress(good)[:150], "skip"),
        ("garbage.dcm.gz", b"\x1f\x8b\x08\x00" + b"\xff" * 100, "skip"),
        ("bomb.dcm.gz", gzip.compress(b"\x00" * 128 + b"DICM" + b"\x00" * 30_000_000), "skip"),
        ("text.gz", gzip.compress(b"plain text " * 100), "skip"),
        ("truncated_dicom_inside.dcm.gz", gzip.compress(good[:300]), "skip"),
    ]
    for k, (what, data, expect) in enumerate(cases):
        yield Case(f"gzip{k:03d}_{what}", "gzip", data, expect)


def _name_cases() -> Iterator[Case]:
    one = dicom()
    yield Case("name000_tab\tand\x01ctrl.dcm", "names", one, "load")
    yield Case("name001_" + "x" * 200 + ".dcm", "names", one, "load")
    yield Case("name002_ünïcødé 名前.dcm", "names", one, "load")
    yield Case("name003_newline\nin name.png", "names", b"\x89PNG broken", "skip")


_ONE_BYTE = _set(BitsAllocated=8, BitsStored=8, HighBit=7, PixelRepresentation=0)


def _frames(n: int, *mutations: Callable[[Dataset], None], syntax: str = ExplicitVRLittleEndian,
            pixel: bytes | None = None) -> bytes:
    """A multi-frame object of `n` 1x1 one-byte frames (values 0..250), changed by `mutations`."""
    def mutate(ds: Dataset) -> None:
        for m in (_ONE_BYTE, *mutations):
            m(ds)
    data = pixel if pixel is not None else (np.arange(n) % 251).astype(np.uint8).tobytes()
    return dicom(mutate, rows=1, cols=1, frames=n, syntax=syntax, pixel=data)


def _offsets(values: object) -> Callable[[Dataset], None]:
    """GridFrameOffsetVector (3004,000C): frame k at ImagePositionPatient + values[k] along the normal."""
    def mutate(ds: Dataset) -> None:
        ds.GridFrameOffsetVector = [float(v) for v in values]  # type: ignore[attr-defined]
    return mutate


def _orientations(n: int) -> Callable[[Dataset], None]:
    """Per-frame functional groups putting every frame in an orientation of its own."""
    def mutate(ds: Dataset) -> None:
        groups = []
        for k in range(n):
            angle = k * np.pi / (2 * n)
            fg, po = Dataset(), Dataset()
            po.ImageOrientationPatient = [float(np.cos(angle)), float(np.sin(angle)), 0, 0, 0, -1]
            fg.PlaneOrientationSequence = Sequence([po])
            groups.append(fg)
        ds.PerFrameFunctionalGroupsSequence = Sequence(groups)
    return mutate


def _many_frames() -> Iterator[Case]:
    """Multi-frame objects with many frames: native ones are handled as arrays (they load, or the
    budget refuses them, in a fraction of a second); frames handled one by one are capped."""
    import warnings

    rle_frame = struct.pack("<16I", 1, 64, *([0] * 14)) + b"\x00\x07"  # one RLE segment: a literal run of 1 byte
    with warnings.catch_warnings():  # pydicom writes a GridFrameOffsetVector over 64 KiB as UN, and says so
        warnings.simplefilter("ignore", UserWarning)
        cases: list[tuple[str, bytes, str]] = [
            ("native_50k_1x1", _frames(50_000), "load"),
            ("native_50k_grid_offsets", _frames(50_000, _offsets(np.arange(50_000) * 0.5)), "load"),
            ("native_50k_two_per_position", _frames(50_000, _offsets(np.arange(50_000) // 2)), "load"),
            ("native_50k_irregular_offsets", _frames(50_000, _offsets(np.arange(50_000) + (np.arange(50_000) % 2) / 2)),
             "load"),
            ("native_2000_at_one_position", _frames(2000, _offsets(np.zeros(2000))), "load"),
            ("native_2m_declared_no_data", _frames(2_000_000, pixel=b"\x01" * 64), "skip"),
            ("native_2m_1x1", _frames(2_000_000), "any"),  # loads with the default budget; over 16 MiB
            ("native_300_orientations", _frames(300, _orientations(300)), "skip"),
            ("rle_over_frame_cap", _frames(20_001, syntax=RLELossless, pixel=_encapsulated([rle_frame] * 20_001)),
             "skip"),
            ("rle_1000_frames", _frames(1000, syntax=RLELossless, pixel=_encapsulated([rle_frame] * 1000)), "load"),
        ]
    for k, (what, data, expect) in enumerate(cases):
        yield Case(f"frames{k:03d}_{what}.dcm", "many_frames", data, expect)


GENERATORS = (_dicom_truncations, _dicom_values, _nifti_cases, _raster_cases, _zip_cases, _gzip_cases, _name_cases,
              _many_frames)


def cases() -> list[Case]:
    """Every case, in a fixed order."""
    return [case for gen in GENERATORS for case in gen()]


def build(folder: Path, chosen: list[Case] | None = None) -> list[tuple[Case, Path]]:
    """Write every case (or the `chosen` ones: pass the list a test was parametrized with, since
    truncation offsets, and so names, depend on the random UIDs of each generation) into `folder`
    (one file each); returns (case, path) pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for case in cases() if chosen is None else chosen:
        path = folder / case.name
        path.write_bytes(case.data)
        out.append((case, path))
    return out
