"""Uploads are staged de-identified (issue #10): no folder name, file name or identifying DICOM attribute
of the upload reaches the server's disk, and the staged copy reads, indexes and groups like the original."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from medui.io.loader import load
from medui.reading.header import basic_profile
from medui.training.data import index_dataset
from medui.usecases.train import stage_upload
from tests.synth import Upload, identified_dataset, identifier_forms, leaks

ROOT = Path(__file__).resolve().parents[1]



def _uploads(folder: Path) -> list[Upload]:
    """The folder as a browser uploads it: paths relative to its parent (the folder's own name first)."""
    return [Upload(p.relative_to(folder.parent).as_posix(), p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()]


def _images(folder: Path) -> list[tuple]:
    """(pixels, affine, modality, photometric, window) of every image under `folder`, in a stable order."""
    out = []
    for s in load([str(folder)]).series:
        window = (s.window.center, s.window.width) if s.window else None
        out.append((s.pixels.tobytes(), s.pixels.shape, str(s.pixels.dtype), np.round(s.affine, 6).tobytes(),
                    s.modality, s.photometric, window))
    return sorted(out)


def _grouping(folder: Path, pattern: str | None = None) -> tuple[dict, dict, list]:
    report = index_dataset([folder], pattern, min_per_class=2).report
    return report.patients, report.counts, sorted(report.sizes.items())


def test_a_staged_dicom_upload_holds_no_identifier_and_reads_and_groups_like_the_original(tmp_path):
    data, texts = identified_dataset(tmp_path / "QZPID3X77 export", per_class=5)
    forms = identifier_forms(texts)
    assert leaks([data], forms)  # the export itself names its patients everywhere
    staged = stage_upload(_uploads(data))
    assert not leaks([staged], forms), "identifiers in the staged upload"
    files = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    assert len(files) == 10 and all(f.split("/")[0] in ("normal", "pneumonia") for f in files)
    assert all(f.split("/")[1].startswith("p-") and f.split("/")[2] == "0001.dcm" for f in files)
    assert _images(staged) == _images(data)  # same pixels, geometry, modality, photometric, window
    assert _grouping(staged) == _grouping(data)
    assert index_dataset([staged], min_per_class=2).report.grouping == "DICOM PatientID"
    profile = basic_profile()
    for path in staged.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        kept = [e.keyword for e in ds.iterall() if profile.covers(int(e.tag), e.keyword) and e.VR != "UI"]
        assert kept == ["PatientID"] and ds.PatientID == path.parent.name, kept
        assert ds.PatientIdentityRemoved == "YES" and not any(e.tag.is_private for e in ds.iterall())
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def test_uids_are_replaced_consistently_within_one_upload(tmp_path):
    """Two files of one series keep sharing their (new) series and study UIDs; no original UID is kept."""
    data, _ = identified_dataset(tmp_path / "export", per_class=2)
    first = next(data.rglob("*.dcm"))
    ds = pydicom.dcmread(first)
    twin = first.with_name("second.dcm")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.InstanceNumber = 2
    ds.save_as(twin, enforce_file_format=True)
    original = {f: pydicom.dcmread(f) for f in (first, twin)}
    staged = stage_upload(_uploads(data))
    by_series: dict[str, list[pydicom.Dataset]] = {}
    for path in staged.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        by_series.setdefault(ds.SeriesInstanceUID, []).append(ds)
    assert sorted(len(v) for v in by_series.values()) == [1, 1, 1, 2]
    pair = next(v for v in by_series.values() if len(v) == 2)
    assert len(pair) == 2 and pair[0].SeriesInstanceUID == pair[1].SeriesInstanceUID
    assert pair[0].StudyInstanceUID == pair[1].StudyInstanceUID and pair[0].SOPInstanceUID != pair[1].SOPInstanceUID
    uids = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
    old = {str(d.get(k)) for d in original.values() for k in uids}
    new = {str(d.get(k)) for d in pair for k in uids}
    assert not old & new


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_png_upload_grouped_by_a_file_name_pattern_groups_the_same_when_staged(tmp_path):
    data = tmp_path / "QzfamPNGx set"
    n = 0
    for label in ("normal", "lesion"):
        (data / label).mkdir(parents=True)
        for patient in range(3):
            for k in range(patient + 1):  # 1, 2 and 3 images per patient
                (data / label / f"Qzfam{patient}x_{k}.png").write_bytes(_png(n))
                n += 1
    pattern = "<patient>_<n>.png"
    staged = stage_upload(_uploads(data), pattern)
    assert _grouping(staged) == _grouping(data, pattern)
    assert index_dataset([staged], min_per_class=2).report.patients == {"normal": 3, "lesion": 3}
    assert not leaks([staged], {"Qzfam0x", "Qzfam1x", "Qzfam2x", "QzfamPNGx"})
    assert _images(staged) == _images(data)
    # without the pattern each file is its own patient, staged as original
    alone = stage_upload(_uploads(data))
    assert alone != staged and _grouping(alone) == _grouping(data) and _grouping(alone)[0] == {"normal": 6, "lesion": 6}


def test_the_same_upload_reuses_its_folder_and_another_pattern_restages(tmp_path):
    data = tmp_path / "set"
    for label in ("normal", "lesion"):
        (data / label).mkdir(parents=True)
        for k in range(2):
            (data / label / f"a{k}_{k}.png").write_bytes(_png(k + len(label)))
    first = stage_upload(_uploads(data), "<patient>_<n>.png")
    assert stage_upload(list(reversed(_uploads(data))), "<patient>_<n>.png") == first
    assert stage_upload(_uploads(data), "<patient>_<n>.png ") == first  # spaces around it do not count
    assert stage_upload(_uploads(data), "a<patient>_<n>.png") != first
    assert stage_upload(_uploads(data)) != first


def test_a_zip_upload_is_staged_de_identified(tmp_path):
    data, texts = identified_dataset(tmp_path / "QZPID1X77", per_class=4)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(data.rglob("*.dcm")):
            zf.writestr(f"QZPID1X77/{p.relative_to(data).as_posix()}", p.read_bytes())
    staged = stage_upload([Upload("Qzfam1x_Qzgiv1x.zip", buf.getvalue())])
    assert not leaks([staged], identifier_forms(texts))
    assert not list(staged.rglob("*.zip"))
    assert _grouping(staged) == _grouping(data) and _images(staged) == _images(data)


def test_a_file_that_is_no_image_is_not_kept(tmp_path):
    data = tmp_path / "set"
    for label in ("normal", "lesion"):
        (data / label).mkdir(parents=True)
        (data / label / "x_1.png").write_bytes(_png(len(label)))
    (data / "patients.csv").write_text("QZPID0X77,Qzfam0x^Qzgiv0x\n")
    staged = stage_upload(_uploads(data))
    assert not list(staged.rglob("*.csv")) and not leaks([staged], {"QZPID0X77", "Qzfam0x"})


def test_the_train_page_stages_an_upload_de_identified_and_restages_when_the_pattern_changes(tmp_path, isolated):
    from streamlit.testing.v1 import AppTest

    data, texts = identified_dataset(tmp_path / "QZPID2X77", per_class=5)
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=120).run()
    assert any("stored de-identified" in c.value and "file and folder names replaced" in c.value
               and "DICOM identifying attributes" in c.value and "burned into the pixels" in c.value
               for c in at.caption)
    files = [(u.name, u.data, "application/dicom") for u in _uploads(data)]
    at.number_input(key="train.min").set_value(2)
    at.file_uploader(key="train.folder").set_value(files).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("pneumonia" in str(df.value) for df in at.dataframe)
    assert any("DICOM PatientID" in m.value for m in at.markdown)
    uploads = isolated["jobs"] / "uploads"
    assert len([p for p in uploads.iterdir() if not p.name.startswith(".")]) == 1
    at.text_input(key="train.pattern").set_value("<patient>_<n>.dcm").run()
    assert not at.exception and len([p for p in uploads.iterdir() if not p.name.startswith(".")]) == 2
    assert not leaks([isolated["jobs"]], identifier_forms(texts))


def test_a_truncated_or_broken_dicom_file_is_staged_without_its_identifiers_or_not_at_all(tmp_path):
    data, texts = identified_dataset(tmp_path / "export", per_class=3)
    one = next(data.rglob("*.dcm"))
    for n in (140, 300, 900):
        (one.parent / f"Qzfam0x_cut{n}.dcm").write_bytes(one.read_bytes()[:n])
    (one.parent / "Qzfam0x_junk.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 64 + b"QZPID0X77")
    (one.parent / "Qzfam0x_named.png").write_bytes(b"\0" * 128 + b"DICM\x02\x00" + b"QZPID0X77")
    staged = stage_upload(_uploads(data))
    assert not leaks([staged], identifier_forms(texts))
    assert index_dataset([staged], min_per_class=2).report.patients == {"normal": 3, "pneumonia": 3}


def test_identifiers_inside_sequences_and_a_tiff_preamble_are_not_kept(tmp_path):
    """A kept sequence (AnatomicRegionSequence) loses the identifying and private attributes of its
    items; a DICOM file whose preamble makes it a TIFF too is still de-identified (its preamble emptied)."""
    data, texts = identified_dataset(tmp_path / "export", per_class=3)
    one = next(data.rglob("*.dcm"))
    ds = pydicom.dcmread(one)
    item = pydicom.Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "T-D3000", "SRT", "Chest"
    item.PersonName = "QZNESTED^QZNESTEDGIV"
    item.add_new((0x0029, 0x0010), "LO", "QZPRIVCREATOR")
    item.add_new((0x0029, 0x1001), "LO", "QZPRIVVALUE")
    ds.AnatomicRegionSequence = [item]
    ds.preamble = b"II*\x00" + b"QZPREAMBLE".ljust(124, b"\0")
    ds.save_as(one, enforce_file_format=True)
    staged = stage_upload(_uploads(data))
    forms = identifier_forms([*texts, "QZNESTED^QZNESTEDGIV", "QZPRIVCREATOR", "QZPRIVVALUE", "QZPREAMBLE"])
    assert not leaks([staged], forms)
    kept = [d for d in (pydicom.dcmread(p) for p in staged.rglob("*.dcm")) if "AnatomicRegionSequence" in d]
    assert len(kept) == 1 and kept[0].AnatomicRegionSequence[0].CodeMeaning == "Chest"
    assert _images(staged) == _images(data)


def test_text_metadata_of_png_and_jpeg_files_is_not_kept_and_their_pixels_are(tmp_path):
    from PIL.PngImagePlugin import PngInfo

    data = tmp_path / "set"
    rng = np.random.default_rng(0)
    for label in ("normal", "lesion"):
        (data / label).mkdir(parents=True)
        for k in range(2):
            img = Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8))
            info = PngInfo()
            info.add_text("Patient", "Qzfam0x^Qzgiv0x")
            info.add_itxt("Comment", "QZPID0X77", zip=True)
            img.save(data / label / f"p{k}_1.png", pnginfo=info)
            exif = Image.Exif()
            exif[0x013B] = "Qzdoc0x Artist"  # Artist
            img.save(data / label / f"p{k}_2.jpg", quality=95, comment=b"QZACC0X88", exif=exif.tobytes())
    assert leaks([data], {"Qzfam0x", "QZPID0X77", "QZACC0X88", "Qzdoc0x"})
    staged = stage_upload(_uploads(data))
    assert not leaks([staged], {"Qzfam0x", "QZPID0X77", "QZACC0X88", "Qzdoc0x"})
    assert len(list(staged.rglob("*.png"))) == 4 and len(list(staged.rglob("*.jpg"))) == 4
    assert _images(staged) == _images(data)


def test_mosaics_are_still_cut_into_slices_after_staging(tmp_path):
    """The private tags the readers need for geometry (Siemens (0019,100A) and the CSA image header,
    UIH (0065,1050)) survive de-identification; nothing else private does."""
    import gzip
    import shutil

    from tests.synth import write_mosaic, write_uih_mosaic

    tiles = np.arange(7 * 6 * 5, dtype=np.int16).reshape(7, 6, 5)
    data = tmp_path / "data"
    for label in ("normal", "lesion"):
        (data / label / "pat1").mkdir(parents=True)
    write_mosaic(data / "normal" / "pat1" / "siemens.dcm", tiles)
    write_uih_mosaic(data / "lesion" / "pat1" / "uih.dcm", tiles)
    dwi = Path(__import__("nibabel").__file__).parent / "nicom" / "tests" / "data" / "siemens_dwi_1000.dcm.gz"
    with gzip.open(dwi) as src, open(data / "normal" / "pat1" / "dwi.dcm", "wb") as dst:
        shutil.copyfileobj(src, dst)
    staged = stage_upload(_uploads(data))
    before = {s.pixels.shape for s in load([str(data)]).series}
    after = {s.pixels.shape for s in load([str(staged)]).series}
    assert before == after == {(7, 6, 5), (48, 128, 128)}
    kept = [e for p in staged.rglob("*.dcm") for e in pydicom.dcmread(p) if e.tag.is_private]
    assert {(e.tag.group, e.tag.element & 0xFF) for e in kept if e.tag.element >= 0x1000} <= {
        (0x0019, 0x0A), (0x0029, 0x10), (0x0065, 0x50)}


def _tiff_with_text(path: Path, pages: list[np.ndarray]) -> None:
    """A TIFF whose every text tag names the patient (PIL writes them as given)."""
    from PIL.TiffImagePlugin import ImageFileDirectory_v2

    tags = ImageFileDirectory_v2()
    for tag, text in ((270, "Qzfam0x^Qzgiv0x chest"), (315, "Qzdoc0x"), (269, "QZPID0X77"), (285, "QZACC0X88"),
                      (316, "Qzhost0x"), (305, "Qzsoft0x"), (306, "2024:01:02 03:04:05")):
        tags[tag] = text
    tags[700] = b"<x:xmpmeta>QZPID0X77</x:xmpmeta>"  # XMP
    images = [Image.fromarray(p) for p in pages]
    images[0].save(path, tiffinfo=tags, save_all=True, append_images=images[1:])


def test_text_of_tiff_files_is_not_kept_and_their_pixels_are(tmp_path):
    data = tmp_path / "set"
    rng = np.random.default_rng(1)
    for label in ("normal", "lesion"):
        (data / label).mkdir(parents=True)
        _tiff_with_text(data / label / "grey16.tif", [rng.integers(0, 4000, (20, 24), dtype=np.uint16)])
        _tiff_with_text(data / label / "rgb.tif", [rng.integers(0, 255, (16, 18, 3), dtype=np.uint8)])
        _tiff_with_text(data / label / "pages.tiff", [rng.integers(0, 255, (12, 10), dtype=np.uint8) for _ in range(3)])
    forms = {"Qzfam0x", "Qzgiv0x", "Qzdoc0x", "QZPID0X77", "QZACC0X88", "Qzhost0x", "Qzsoft0x", "2024:01:02"}
    assert leaks([data], forms)
    staged = stage_upload(_uploads(data))
    assert not leaks([staged], forms)
    assert len(list(staged.rglob("*.tif*"))) == 6
    originals = _images(data)
    assert len(originals) == 6 and _images(staged) == originals  # the same pixels, pages, shapes, types


def _nifti_with_text(voxels: np.ndarray) -> bytes:
    """A NIfTI-1 file (scaled int16) whose text fields and a header extension name the patient."""
    import nibabel as nib

    img = nib.Nifti1Image(voxels, np.diag([0.8, 0.8, 2.5, 1.0]))
    img.header["descrip"] = b"Qzfam0x^Qzgiv0x 19700101"
    img.header["aux_file"] = b"QZPID0X77"
    img.header["intent_name"] = b"QZACC0X88"
    img.header["db_name"] = b"Qzdoc0x"
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"PatientName=Qzfam0x^Qzgiv0x"))
    raw = bytearray(img.to_bytes())
    raw[112:120] = np.array([0.5, -100], "<f4").tobytes()  # scl_slope, scl_inter: kept as they are
    return bytes(raw)


def _gzip_named(raw: bytes, name: str) -> bytes:
    import gzip

    buf = io.BytesIO()
    with gzip.GzipFile(filename=name, mode="wb", fileobj=buf) as gz:  # the gzip header keeps the file name
        gz.write(raw)
    return buf.getvalue()


def test_text_fields_and_extensions_of_nifti_files_are_not_kept_and_their_voxels_are(tmp_path):
    import nibabel as nib

    data = tmp_path / "set"
    rng = np.random.default_rng(2)
    for label in ("normal", "lesion"):
        (data / label).mkdir(parents=True)
        raw = _nifti_with_text(rng.integers(-1000, 1000, (10, 12, 6)).astype(np.int16))
        (data / label / "a.nii.gz").write_bytes(_gzip_named(raw, "Qzfam0x_Qzgiv0x.nii"))
        (data / label / "b.nii").write_bytes(raw)
    forms = {"Qzfam0x", "Qzgiv0x", "QZPID0X77", "QZACC0X88", "Qzdoc0x", "19700101"}
    assert leaks([data], forms) and b"Qzfam0x" in (data / "normal" / "a.nii.gz").read_bytes()  # the gzip header
    staged = stage_upload(_uploads(data))
    assert not leaks([staged], forms)
    staged_files = sorted(staged.rglob("*.nii*"))
    assert len(staged_files) == 4
    for path in staged_files:
        img = nib.load(path)
        assert not img.header.extensions and img.header["descrip"].item() == b""
        assert (img.dataobj.slope, img.dataobj.inter) == (0.5, -100)  # the voxels keep their scaling
    originals = _images(data)
    assert len(originals) == 4 and _images(staged) == originals


def test_a_jpeg_keeps_no_text_after_its_first_scan_nor_after_its_end(tmp_path):
    from medui.training.scrub import jpeg_tail_without_text

    img = Image.fromarray(np.random.default_rng(3).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", progressive=True, quality=90)
    jpeg = buf.getvalue()
    sos = jpeg.index(b"\xff\xda", jpeg.index(b"\xff\xda") + 2)  # the second scan
    comment = b"QZPID0X77 Qzfam0x"
    hostile = jpeg[:sos] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + jpeg[sos:] + comment
    cleaned = jpeg_tail_without_text(hostile)
    assert b"QZPID0X77" not in cleaned and cleaned == jpeg
    data = tmp_path / "set"
    for label in ("normal", "lesion"):
        (data / label).mkdir(parents=True)
        (data / label / "x.jpg").write_bytes(hostile)
    staged = stage_upload(_uploads(data))
    assert not leaks([staged], {"QZPID0X77", "Qzfam0x"})
    originals = _images(data)
    assert len(originals) == 2 and _images(staged) == originals


def test_a_file_named_like_an_image_but_of_no_known_format_is_not_kept(tmp_path):
    data = tmp_path / "set"
    for label in ("normal", "lesion"):
        (data / label).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(data / label / "ok.png")
        (data / label / "list.png").write_bytes(b"Qzfam0x^Qzgiv0x, QZPID0X77\n")
    staged = stage_upload(_uploads(data))
    assert not leaks([staged], {"Qzfam0x", "QZPID0X77"}) and len(list(staged.rglob("*.png"))) == 2
